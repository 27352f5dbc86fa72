//! The storage layout of Microsoft.Extensions.Caching.StackExchangeRedis, and
//! the server-side scripts that read it in one round trip.
//!
//! One HASH per entry at `instance_name + key`:
//!
//! | field    | value                                                            |
//! |----------|------------------------------------------------------------------|
//! | `absexp` | absolute expiration, UTC `DateTimeOffset` ticks (100 ns since 0001-01-01), or `-1` |
//! | `sldexp` | sliding expiration, `TimeSpan` ticks, or `-1`                    |
//! | `data`   | the value's bytes                                                |
//!
//! The key's TTL is the entry's next deadline: `min(sliding, absexp - now)`.
//! The .NET provider sets it in whole seconds with `EXPIRE`; we set it in
//! milliseconds with `PEXPIRE`, which it reads the same way. Both read with
//! `HMGET` and renew a sliding entry after the read; where that provider
//! renews with a plain `EXPIRE` computed from the fields it read, the cache
//! runs [`REFRESH_SCRIPT`], which computes the TTL from the fields the key
//! holds when it runs.
//!
//! Strata adds one field, `ver`: a random version token written with every
//! entry, so that a version-checked write ([`SET_IF_VERSION_SCRIPT`]) lands
//! only if nothing wrote or removed the key since the read. A removal leaves a
//! tombstone (a hash with `ver` only) instead of deleting the key. Stamp
//! records ([`NEXT_STAMP_SCRIPT`]) are entries in the same layout whose `data`
//! is a decimal number.
//!
//! Public for tools that read or write entries directly (an inspector, a
//! migration script); the cache itself is the way to use them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// .NET ticks (100 ns units since 0001-01-01T00:00:00Z) of the Unix epoch.
pub const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
/// How the layout says "not set".
pub const NOT_SET: i64 = -1;

/// The hash field of the absolute expiration.
pub const ABSOLUTE_FIELD: &str = "absexp";
/// The hash field of the sliding expiration.
pub const SLIDING_FIELD: &str = "sldexp";
/// The hash field of the value.
pub const DATA_FIELD: &str = "data";
/// The hash field of the entry's version token (Strata only; .NET readers
/// ignore it). A tombstone is a hash holding only this field.
pub const VERSION_FIELD: &str = "ver";

/// The largest value Redis accepts in one bulk string (`proto-max-bulk-len`).
pub const MAX_VALUE_LEN: usize = 512 * 1024 * 1024;

/// `DateTimeOffset.UtcTicks` of `at`.
pub fn ticks_of(at: SystemTime) -> i64 {
    let since_epoch = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos() / 100).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos() / 100).unwrap_or(i128::MAX),
    };
    i64::try_from(i128::from(UNIX_EPOCH_TICKS) + since_epoch).unwrap_or(i64::MAX)
}

/// `TimeSpan.Ticks` of `d`.
pub fn timespan_ticks(d: Duration) -> i64 {
    i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX)
}

/// A TTL in whole milliseconds, rounded up so that an entry never expires
/// before its deadline; at least 1 (`PEXPIRE 0` would delete at once).
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

// Lua numbers are doubles: ticks near 6.4e17 lose 7 bits (13 us), far below the
// millisecond precision we promise. `string.format('%d')` keeps large TTLs out
// of exponent notation, which PEXPIRE would reject. The caller passes its own
// clock, as the .NET provider does, since absexp was computed on a client clock.

/// Renews the sliding expiration of an entry without reading its value.
/// `KEYS[1]` is the entry, `ARGV[1]` the caller's time in .NET ticks. The
/// TTL comes from the fields the key holds as the script runs, so a renewal
/// sent after a read never outlives the entry's absolute expiration, never
/// applies to an entry that replaced the one read, never renews a tombstone
/// and never creates a key. A key of another type is left alone.
pub const REFRESH_SCRIPT: &str = r"
local v = redis.pcall('HMGET', KEYS[1], 'absexp', 'sldexp')
if v.err then return 0 end
local sld = tonumber(v[2])
if sld ~= nil and sld > 0 then
  local ttl = sld
  local abs = tonumber(v[1])
  if abs ~= nil and abs > 0 then
    local left = abs - tonumber(ARGV[1])
    if left < ttl then ttl = left end
  end
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(ttl / 10000)))
  end
end
return 0
";

/// Lua shared by the scripts that write an entry: `store(key, fields, ttl)`
/// makes `key` a hash of exactly `fields` (name, value, ...) that expires
/// after `ttl` milliseconds (`''`: never); `store_entry` writes an entry in
/// the layout, or a tombstone (the version alone) when `absexp` is `''`. It overwrites and then drops
/// fields instead of deleting the key first: on a cluster, a script may not
/// touch a key that is missing from a slot being migrated, and a key it
/// deleted itself counts as missing. A key of another type is deleted.
macro_rules! store_lua {
    () => {
        r"
local function store(key, fields, ttl)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', key) end
  redis.call('HSET', key, unpack(fields))
  local keep = {}
  for i = 1, #fields, 2 do keep[fields[i]] = true end
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if not keep[f] then redis.call('HDEL', key, f) end
  end
  if ttl ~= '' then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
local function store_entry(key, ver, absexp, sldexp, data, ttl)
  if absexp == '' then
    store(key, {'ver', ver}, ttl)
  else
    store(key, {'absexp', absexp, 'sldexp', sldexp, 'data', data, 'ver', ver}, ttl)
  end
end
"
    };
}

/// Stores an entry, or a tombstone, whatever the key held: what `set` and
/// `remove` do as one `MULTI`/`EXEC` transaction on a single server. On a
/// cluster they run this script instead, because a slot redirection (`MOVED`
/// during a failover, `ASK` during a migration) aborts a transaction as a
/// whole, and the client follows redirections of single commands only.
/// `KEYS[1]` is the entry; `ARGV[1]` the new version, `ARGV[2]` `absexp`,
/// `ARGV[3]` `sldexp`, `ARGV[4]` the value, `ARGV[5]` the TTL in
/// milliseconds (`''`: none). With `ARGV[2]` empty it writes a tombstone.
pub const WRITE_SCRIPT: &str = concat!(
    store_lua!(),
    r"
store_entry(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"
);

/// Stores an entry only if the key's version is still the expected one.
/// `KEYS[1]` is the entry; `ARGV[1]` the expected version (`''`: the key must
/// not exist), `ARGV[2]` the new version, `ARGV[3]` `absexp`, `ARGV[4]`
/// `sldexp`, `ARGV[5]` the value, `ARGV[6]` the TTL in milliseconds (`''`:
/// none). With `ARGV[3]` empty it writes a tombstone (the version alone)
/// instead: what a failed version-checked write leaves. Returns 1 when
/// stored, 0 when the version changed (a key of another type has none).
pub const SET_IF_VERSION_SCRIPT: &str = concat!(
    store_lua!(),
    r"
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif redis.pcall('HGET', KEYS[1], 'ver') ~= ARGV[1] then
  return 0
end
store_entry(KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"
);

/// Advances a stamp record: the new stamp is `max(old + 1, server time in
/// µs)`, written as the entry's `data` in decimal, with no logical expiry and
/// `ARGV[1]` as the TTL in milliseconds (`''`: none). Returns the stamp as a
/// string. A key whose `data` is not a number is left alone with a `NOTSTAMP`
/// error. Lua numbers are doubles: microseconds since 1970 stay exact until
/// the year 2255.
pub const NEXT_STAMP_SCRIPT: &str = concat!(
    store_lua!(),
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local raw = redis.call('HGET', KEYS[1], 'data')
local cur = 0
if raw then
  cur = tonumber(raw)
  if cur == nil then return redis.error_reply('NOTSTAMP the key holds a value that is not a stamp') end
end
local stamp = string.format('%d', math.max(cur + 1, now))
store(KEYS[1], {'absexp', '-1', 'sldexp', '-1', 'data', stamp, 'ver', stamp}, ARGV[1])
return stamp
"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_match_dotnet() {
        assert_eq!(ticks_of(UNIX_EPOCH), 621_355_968_000_000_000);
        // DateTimeOffset(2024-01-01T00:00:00Z).UtcTicks
        let new_year = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(ticks_of(new_year), 638_396_640_000_000_000);
        // TimeSpan.FromMinutes(20).Ticks
        assert_eq!(timespan_ticks(Duration::from_secs(1200)), 12_000_000_000);
    }

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::from_micros(250_001)), 251);
        assert_eq!(ttl_millis(Duration::from_millis(250)), 250);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
    }
}
