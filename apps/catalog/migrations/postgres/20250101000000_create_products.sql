-- The catalog's one table. Prices are exact: NUMERIC(10, 2) holds up to
-- 99,999,999.99, the limit the API validates against.
CREATE TABLE IF NOT EXISTS products (
    id          UUID           PRIMARY KEY,
    name        VARCHAR(200)   NOT NULL CHECK (length(btrim(name)) > 0),
    description VARCHAR(2000)  NOT NULL DEFAULT '',
    price       NUMERIC(10, 2) NOT NULL CHECK (price >= 0),
    created_at  TIMESTAMPTZ    NOT NULL,
    updated_at  TIMESTAMPTZ    NOT NULL
);
