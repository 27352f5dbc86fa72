-- wrk script: GET /products/{id} with an id drawn at random per request.
--
-- Usage: wrk ... -s random_id.lua URL -- IDS_FILE SEED
--   IDS_FILE  one product id per line (the ids the catalog seeded)
--   SEED      integer; each wrk thread seeds math.random with SEED + its
--             index, so a run is repeatable and threads do not draw the
--             same sequence.
--
-- Only ids that exist are drawn: a 404 would be a cached "no such product"
-- and measure the negative path, not the product path.

local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_index", counter)
end

local ids = {}

function init(args)
   local path, seed = args[1], tonumber(args[2] or "1")
   if path == nil then
      error("random_id.lua: pass the ids file after --")
   end
   for line in io.lines(path) do
      if line ~= "" then
         ids[#ids + 1] = line
      end
   end
   if #ids == 0 then
      error("random_id.lua: no ids in " .. path)
   end
   math.randomseed(seed + (thread_index or 0))
end

function request()
   return wrk.format("GET", "/products/" .. ids[math.random(#ids)])
end
