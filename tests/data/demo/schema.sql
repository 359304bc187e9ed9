-- Demo schema "shop" for scripts/demo (loaded into the SOURCE server, database `shop` selected).
-- Mixed types on purpose: utf8mb4 text with emoji and accents, DATETIME(6), DECIMAL, JSON,
-- BLOB, ENUM, TIMESTAMP, BIGINT UNSIGNED (values up to 2^64-1), DOUBLE, NULLs, a composite
-- primary key, sparse primary keys, secondary and unique indexes. No foreign keys.
-- Rows come from load.sql.

CREATE TABLE customers (
  id         INT            NOT NULL AUTO_INCREMENT,
  first_name VARCHAR(64)    NOT NULL,
  last_name  VARCHAR(64)    NOT NULL,
  email      VARCHAR(191)   NULL,
  country    CHAR(2)        NOT NULL,
  created    DATETIME(6)    NOT NULL,
  balance    DECIMAL(12,2)  NULL,
  notes      TEXT           NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uk_customers_email (email),
  KEY idx_customers_created (created),
  KEY idx_customers_name (last_name, first_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE products (
  id         BIGINT UNSIGNED NOT NULL,
  sku        CHAR(12)        NOT NULL,
  name       VARCHAR(200)    NOT NULL,
  attrs      JSON            NULL,
  thumbnail  BLOB            NULL,
  status     ENUM('draft','active','discontinued') NOT NULL DEFAULT 'active',
  price      DECIMAL(10,2)   NOT NULL,
  stock      SMALLINT        NOT NULL DEFAULT 0,
  updated_at TIMESTAMP       NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_products_sku (sku),
  KEY idx_products_status (status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE orders (
  id          BIGINT         NOT NULL,
  customer_id INT            NOT NULL,
  status      VARCHAR(16)    NOT NULL,
  total       DECIMAL(14,2)  NOT NULL,
  currency    CHAR(3)        NOT NULL DEFAULT 'EUR',
  placed_at   DATETIME(6)    NOT NULL,
  shipped_on  DATE           NULL,
  gift        TINYINT(1)     NOT NULL DEFAULT 0,
  note        VARCHAR(255)   NULL,
  PRIMARY KEY (id),
  KEY idx_orders_customer (customer_id),
  KEY idx_orders_placed (placed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE order_items (
  order_id    BIGINT            NOT NULL,
  line_no     SMALLINT UNSIGNED NOT NULL,
  product_id  BIGINT UNSIGNED   NOT NULL,
  qty         INT               NOT NULL,
  unit_price  DECIMAL(10,2)     NOT NULL,
  weight_kg   DOUBLE            NULL,
  PRIMARY KEY (order_id, line_no),
  KEY idx_order_items_product (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
