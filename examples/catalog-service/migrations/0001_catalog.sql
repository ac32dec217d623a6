-- The catalog service's own schema. Rows arrive from the monolith's
-- `products` table by CDC (title → name, price_cents → price, no
-- internal_notes); ids are the monolith's, so no sequence here.
CREATE TABLE catalog_items (
    id           BIGINT PRIMARY KEY,
    sku          TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    description  TEXT,
    price        BIGINT NOT NULL CHECK (price >= 0),   -- in cents, as the monolith's price_cents
    updated_at   TIMESTAMPTZ NOT NULL
);
