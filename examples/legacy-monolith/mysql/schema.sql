-- The monolith's one database, MySQL/MariaDB flavour: the same tables as
-- migrations/0001_schema.sql.
CREATE TABLE IF NOT EXISTS customers (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    email       VARCHAR(255) NOT NULL UNIQUE,
    name        VARCHAR(255) NOT NULL,
    created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS products (
    id              BIGINT AUTO_INCREMENT PRIMARY KEY,
    sku             VARCHAR(64) NOT NULL UNIQUE,
    title           VARCHAR(255) NOT NULL CHECK (title <> ''),
    description     TEXT,
    price_cents     BIGINT NOT NULL CHECK (price_cents >= 0),
    internal_notes  TEXT,
    updated_at      TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS inventory (
    product_id  BIGINT PRIMARY KEY,
    on_hand     INT NOT NULL CHECK (on_hand >= 0),
    reserved    INT NOT NULL DEFAULT 0,
    CONSTRAINT inventory_reserved CHECK (reserved >= 0 AND reserved <= on_hand),
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS orders (
    id           BIGINT AUTO_INCREMENT PRIMARY KEY,
    customer_id  BIGINT NOT NULL,
    status       VARCHAR(32) NOT NULL,
    total_cents  BIGINT NOT NULL,
    created_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY orders_customer (customer_id, id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS order_items (
    order_id          BIGINT NOT NULL,
    line_no           INT NOT NULL,
    product_id        BIGINT NOT NULL,
    quantity          INT NOT NULL CHECK (quantity > 0),
    unit_price_cents  BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS payments (
    id            BIGINT AUTO_INCREMENT PRIMARY KEY,
    order_id      BIGINT NOT NULL UNIQUE,
    amount_cents  BIGINT NOT NULL,
    method        VARCHAR(32) NOT NULL,
    status        VARCHAR(32) NOT NULL,
    created_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
