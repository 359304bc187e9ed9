-- Demo data generator for the "shop" schema (schema.sql): 300,000 rows in a few seconds.
-- Pure SQL, MariaDB only: INSERT ... SELECT from the SEQUENCE engine's seq_1_to_N tables,
-- deterministic (the same rows on every run). Run with `shop` selected and a utf8mb4 client:
--   mariadb --default-character-set=utf8mb4 shop < load.sql
--   customers 20,000 · products 5,000 · orders 200,000 · order_items 75,000
-- Edge cases on purpose: emoji (4-byte), accents, CJK, quotes/backslashes/tabs/newlines, empty
-- strings next to NULLs, negative DECIMALs, BIGINT UNSIGNED up to 2^64-1, sparse and huge
-- BIGINT keys (the last orders sit near 2^62, so equal-width key ranges are very uneven),
-- DATETIME(6) microseconds, DOUBLEs that need 17 digits, binary BLOBs with 0x00 bytes.

SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;
SET SESSION time_zone = '+00:00';
SET SESSION unique_checks = 0;

INSERT INTO customers (id, first_name, last_name, email, country, created, balance, notes)
SELECT
  seq,
  CONCAT(ELT(1 + seq % 12, 'José', 'Zoë', 'Łukasz', 'François', 'Søren', 'Ærin', 'Björk',
                           'Małgorzata', 'Nguyễn', '美咲', 'Ana', 'Olúwáṣeun'),
         IF(seq % 50 = 0, ' 😀', '')),
  ELT(1 + (seq DIV 12) % 10, 'García', 'Müller', 'Ødegaard', 'Dvořák', 'Ñúñez', 'O''Brien',
                             'Smith', 'Kowalczyk', '佐藤', 'Çelik'),
  IF(seq % 17 = 0, NULL, CONCAT('customer', seq, '@example.com')),
  ELT(1 + seq % 6, 'ES', 'DE', 'NO', 'CZ', 'JP', 'US'),
  TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq * 1373 SECOND
                                 + INTERVAL (seq * 7919) % 1000000 MICROSECOND,
  IF(seq % 11 = 0, NULL, ROUND((seq * 7919 % 2000000) / 100 - 5000, 2)),
  CASE
    WHEN seq % 7 = 0 THEN NULL
    WHEN seq % 5 = 0 THEN 'VIP 🎉 — prefers café au lait ☕'
    WHEN seq % 3 = 0 THEN ''
    WHEN seq % 4 = 0 THEN CONCAT('line 1\nline 2\ttab, quote '' and backslash \\ #', seq)
    ELSE CONCAT('note #', seq)
  END
FROM seq_1_to_20000;

INSERT INTO products (id, sku, name, attrs, thumbnail, status, price, stock, updated_at)
SELECT
  CASE seq
    WHEN 4998 THEN CAST('9223372036854775807' AS UNSIGNED)
    WHEN 4999 THEN CAST('9223372036854775808' AS UNSIGNED)
    WHEN 5000 THEN CAST('18446744073709551615' AS UNSIGNED)
    ELSE seq * 3
  END,
  CONCAT('SKU-', LPAD(seq, 8, '0')),
  CONCAT(ELT(1 + seq % 8, 'Crème brûlée set', 'Smørrebrød board', 'Mug ☕', 'Rocket lamp 🚀',
                          'Ñandú plush', 'Tasse à café', 'Zahnbürste', 'Sushi 寿司 kit'),
         ' #', seq),
  IF(seq % 9 = 0, NULL,
     JSON_OBJECT('color', ELT(1 + seq % 4, 'red', 'grün', 'bleu', '黒'),
                 'size', ELT(1 + seq % 3, 'S', 'M', 'XL'),
                 'tags', JSON_ARRAY('demo', CONCAT('t', seq % 13)),
                 'dims', JSON_OBJECT('w', seq % 50, 'h', (seq * 7) % 30, 'unit', 'cm'),
                 'fragile', seq % 2,
                 'note', IF(seq % 4 = 0, NULL, 'quote " and emoji 🎁'))),
  CASE
    WHEN seq % 10 = 0 THEN NULL
    WHEN seq % 10 = 1 THEN REPEAT(UNHEX(SHA2(seq, 256)), 24)
    ELSE UNHEX(CONCAT(SHA2(seq, 256), '00FF00', SHA2(seq + 1, 256), MD5(seq)))
  END,
  ELT(1 + seq % 3, 'draft', 'active', 'discontinued'),
  ROUND(1 + (seq * 37 % 99999) / 100, 2),
  CAST(seq * 13 % 2000 AS SIGNED) - 100,
  TIMESTAMP'2023-03-26 00:30:00' + INTERVAL seq * 977 SECOND
FROM seq_1_to_5000;

INSERT INTO orders (id, customer_id, status, total, currency, placed_at, shipped_on, gift, note)
SELECT
  IF(seq > 199990, 4611686018427387904 + seq, seq * 5 + seq % 3),
  1 + (seq * 7919) % 20000,
  ELT(1 + seq % 5, 'new', 'paid', 'shipped', 'delivered', 'cancelled'),
  ROUND((seq * 7919 % 100000) / 100 + 0.99, 2),
  ELT(1 + seq % 4, 'EUR', 'USD', 'NOK', 'JPY'),
  TIMESTAMP'2021-06-01 00:00:00' + INTERVAL seq * 157 SECOND + INTERVAL seq % 1000000 MICROSECOND,
  IF(seq % 5 IN (2, 3), DATE('2021-06-01' + INTERVAL seq * 157 SECOND) + INTERVAL 1 + seq % 6 DAY, NULL),
  seq % 9 = 0,
  CASE
    WHEN seq % 23 = 0 THEN 'Bitte klingeln 🔔'
    WHEN seq % 31 = 0 THEN 'Entregar después de las 18h'
    WHEN seq % 37 = 0 THEN ''
    ELSE NULL
  END
FROM seq_1_to_200000;

-- Two lines for each of the first 37,500 orders (same id formula as above).
INSERT INTO order_items (order_id, line_no, product_id, qty, unit_price, weight_kg)
SELECT
  ((seq + 1) DIV 2) * 5 + ((seq + 1) DIV 2) % 3,
  2 - seq % 2,
  (1 + seq * 31 % 4997) * 3,
  1 + seq % 5,
  ROUND(0.5 + (seq * 53 % 50000) / 100, 2),
  IF(seq % 6 = 0, NULL, (seq % 1000) / 7e0)
FROM seq_1_to_75000;

SET SESSION unique_checks = 1;
ANALYZE TABLE customers, products, orders, order_items;
