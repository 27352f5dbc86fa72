-- The catalog's one table. SQLite has no exact decimal type, so the price is
-- stored as its canonical text ("19.99") and parsed into a Decimal on read;
-- ids are lower-case hyphenated UUID text, whose sort order is the UUID's.
-- Timestamps are RFC 3339 text in UTC.
CREATE TABLE IF NOT EXISTS products (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(trim(name)) > 0 AND length(name) <= 200),
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    price       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
