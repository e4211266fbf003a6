-- Seed data of the nself sample shop: 20,000 users, 2,000 products, 200,000 orders
-- with about 400,000 order items, 50,000 payments and a handful of carts.
--
--     psql -v ON_ERROR_STOP=1 -d <database> -f seed.sql      (after schema.sql)
--
-- Deterministic: every value is computed from generate_series numbers through
-- hashint8extended(), the stable integer hash PostgreSQL also uses for hash
-- partitioning, so every environment and every PostgreSQL version gets exactly the
-- same rows. No random(), no now().
--
--     h(x, salt) = hashint8extended(x, salt) & 2147483647      -- 0 .. 2^31-1
--
-- Idempotent: users, products and carts are each filled only while empty, orders
-- with their items and payments only while orders is empty. The guards are checked
-- once, before any row is produced, so a second run costs milliseconds plus the final
-- ANALYZE. Everything runs in one transaction: an interrupted seed leaves no
-- half-filled tables behind.
--
-- Ids are inserted explicitly and each sequence is then set to the largest seeded id,
-- only when rows were inserted, so rows created later through the API never collide
-- with seeded ones and a re-run never moves a sequence the running API is using.
--
-- Needs no superuser rights: run it as the owner of the shop's tables.

BEGIN;

SET LOCAL statement_timeout = 0;
SET LOCAL synchronous_commit = off;
SET LOCAL work_mem = '64MB';

-- Users ------------------------------------------------------------------------------

WITH seeded AS (
    INSERT INTO users (id, email, name, created_at, last_login)
    SELECT u.id,
           lower(u.first_name) || '.' || lower(u.last_name) || '.' || u.id
               || '@example.test',
           u.first_name || ' ' || u.last_name,
           u.created_at,
           -- One user in eight has never logged in.
           CASE
               WHEN (hashint8extended(u.id, 14) & 2147483647) % 8 = 0 THEN NULL
               ELSE u.created_at
                    + ((hashint8extended(u.id, 15) & 2147483647) % (200 * 86400))
                      * interval '1 second'
           END
    FROM (
        SELECT g AS id,
               (ARRAY['Ada', 'Ben', 'Chloe', 'Dmitri', 'Elena', 'Farid', 'Grace',
                      'Hiro', 'Ines', 'Jonas', 'Kemal', 'Lena', 'Marco', 'Nadia',
                      'Oskar', 'Priya', 'Quinn', 'Rosa', 'Samir', 'Tara', 'Uma',
                      'Viktor', 'Wen', 'Yusuf'])
                   [1 + (hashint8extended(g, 11) & 2147483647) % 24] AS first_name,
               (ARRAY['Almeida', 'Berg', 'Costa', 'Dubois', 'Eriksen', 'Fischer',
                      'Garcia', 'Haddad', 'Ivanova', 'Jensen', 'Kowalski', 'Lopez',
                      'Moreau', 'Novak', 'Okafor', 'Petrov', 'Quispe', 'Rossi',
                      'Sato', 'Tanaka', 'Urbina', 'Varga', 'Weber', 'Yilmaz'])
                   [1 + (hashint8extended(g, 12) & 2147483647) % 24] AS last_name,
               timestamptz '2023-01-01 00:00:00+00'
                   + ((hashint8extended(g, 13) & 2147483647) % (365 * 86400))
                     * interval '1 second' AS created_at
        FROM generate_series(1, 20000) AS g
    ) AS u
    WHERE NOT EXISTS (SELECT 1 FROM users)
    ORDER BY u.id
    RETURNING id
)
-- setval is strict: when nothing was inserted max(id) is NULL and the sequence
-- stays where it is.
SELECT setval(pg_get_serial_sequence('users', 'id'), max(id)) AS users_seq
FROM seeded;

-- Products ---------------------------------------------------------------------------

WITH seeded AS (
    INSERT INTO products (id, sku, name, price, stock, created_at)
    SELECT g,
           'SKU-' || lpad(g::text, 6, '0'),
           (ARRAY['Sturdy', 'Compact', 'Classic', 'Quiet', 'Rapid', 'Golden',
                  'Nordic', 'Vintage', 'Modular', 'Bright', 'Silent', 'Rugged',
                  'Gentle', 'Smart', 'Tiny', 'Grand'])
               [1 + (hashint8extended(g, 21) & 2147483647) % 16]
           || ' '
           || (ARRAY['Kettle', 'Lamp', 'Backpack', 'Chair', 'Notebook', 'Headset',
                     'Blender', 'Jacket', 'Mug', 'Tent', 'Keyboard', 'Scarf',
                     'Speaker', 'Bottle', 'Desk', 'Umbrella'])
               [1 + (hashint8extended(g, 22) & 2147483647) % 16]
           || ' ' || g,
           -- 1.00 .. 499.99
           (100 + (hashint8extended(g, 23) & 2147483647) % 49900) / 100.0,
           (hashint8extended(g, 24) & 2147483647) % 1000,
           timestamptz '2023-01-01 00:00:00+00' + g * interval '1 hour'
    FROM generate_series(1, 2000) AS g
    WHERE NOT EXISTS (SELECT 1 FROM products)
    ORDER BY g
    RETURNING id
)
SELECT setval(pg_get_serial_sequence('products', 'id'), max(id)) AS products_seq
FROM seeded;

-- Orders, their items and payments --------------------------------------------------
--
-- Seeded together, and only while orders is empty (order_items and payments cannot
-- hold rows then: both reference orders).
--
-- Order o has 1 to 3 lines (2 on average, about 400,000 in all); line k buys 1 to 3
-- units of product 1 + h(4o+k) % 2000 at that product's price, and the order total is
-- computed in the same statement from exactly those lines. Every fourth order
-- (o % 4 = 0) is paid or shipped and has one captured payment for its full total
-- (50,000 payments, payment id = o / 4); of the rest one in fifteen is cancelled and
-- the others are pending, i.e. payable through the API.
--
-- Checking foreign keys row by row would be two thirds of the seed's run time (about
-- a million single-row lookups), so the block drops the foreign keys of these three
-- tables, loads, and adds the very same constraints back, which validates them all in
-- one pass. It runs inside the seed's transaction: if anything fails, the constraints
-- come back with the rollback.

DO $seed$
DECLARE
    fk_tables text[];
    fk_names  text[];
    fk_defs   text[];
BEGIN
    IF EXISTS (SELECT 1 FROM orders) THEN
        RAISE NOTICE 'orders is not empty: orders, order_items and payments left as they are';
        RETURN;
    END IF;

    SELECT array_agg(c.conrelid::regclass::text ORDER BY c.oid),
           array_agg(c.conname::text ORDER BY c.oid),
           array_agg(pg_get_constraintdef(c.oid) ORDER BY c.oid)
      INTO fk_tables, fk_names, fk_defs
      FROM pg_constraint AS c
     WHERE c.contype = 'f'
       AND c.conrelid IN ('orders'::regclass, 'order_items'::regclass,
                          'payments'::regclass);

    FOR i IN 1 .. coalesce(array_length(fk_names, 1), 0) LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk_tables[i], fk_names[i]);
    END LOOP;

    WITH lines AS MATERIALIZED (
        SELECT row_number() OVER (ORDER BY o, k) AS id,
               o AS order_id,
               1 + (hashint8extended(o * 4 + k, 31) & 2147483647) % 2000 AS product_id,
               1 + (hashint8extended(o * 4 + k, 32) & 2147483647) % 3 AS quantity
        FROM generate_series(1, 200000) AS o
        CROSS JOIN generate_series(1, 3) AS k
        WHERE k <= 1 + (hashint8extended(o, 30) & 2147483647) % 3
    ),
    priced AS MATERIALIZED (
        SELECT l.id, l.order_id, l.product_id, l.quantity, p.price
        FROM lines AS l
        JOIN products AS p ON p.id = l.product_id
    ),
    new_orders AS (
        INSERT INTO orders (id, user_id, status, total, created_at)
        SELECT t.order_id,
               1 + (hashint8extended(t.order_id, 33) & 2147483647) % 20000,
               CASE
                   WHEN t.order_id % 4 = 0 THEN
                       CASE
                           WHEN (hashint8extended(t.order_id, 34) & 2147483647) % 3 = 0
                               THEN 'shipped'
                           ELSE 'paid'
                       END
                   WHEN (hashint8extended(t.order_id, 34) & 2147483647) % 15 = 0
                       THEN 'cancelled'
                   ELSE 'pending'
               END,
               t.total,
               timestamptz '2024-01-01 00:00:00+00'
                   + ((hashint8extended(t.order_id, 35) & 2147483647) % (365 * 86400))
                     * interval '1 second'
        FROM (
            SELECT order_id, sum(price * quantity) AS total
            FROM priced
            GROUP BY order_id
        ) AS t
        ORDER BY t.order_id
    )
    INSERT INTO order_items (id, order_id, product_id, quantity, price)
    SELECT id, order_id, product_id, quantity, price
    FROM priced
    ORDER BY id;

    INSERT INTO payments (id, order_id, amount, status, created_at)
    SELECT o.id / 4,
           o.id,
           o.total,
           'captured',
           o.created_at
               + (60 + (hashint8extended(o.id, 41) & 2147483647) % 3600)
                 * interval '1 second'
    FROM orders AS o
    WHERE o.id % 4 = 0
    ORDER BY o.id;

    FOR i IN 1 .. coalesce(array_length(fk_names, 1), 0) LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s',
                       fk_tables[i], fk_names[i], fk_defs[i]);
    END LOOP;

    -- The three tables were empty and stay locked until commit, so their largest ids
    -- are exactly the seeded ones.
    PERFORM setval(pg_get_serial_sequence('orders', 'id'), max(id)) FROM orders;
    PERFORM setval(pg_get_serial_sequence('order_items', 'id'), max(id))
       FROM order_items;
    PERFORM setval(pg_get_serial_sequence('payments', 'id'), max(id)) FROM payments;
END
$seed$;

-- Carts ------------------------------------------------------------------------------
--
-- Two lines each for users 1 to 10, so that a checkout from a real cart can be tried
-- right after seeding.

WITH seeded AS (
    INSERT INTO carts (id, user_id, product_id, quantity, added_at)
    SELECT (u - 1) * 2 + k,
           u,
           1 + (hashint8extended(u * 4 + k, 51) & 2147483647) % 2000,
           1 + (hashint8extended(u * 4 + k, 52) & 2147483647) % 3,
           timestamptz '2025-01-01 00:00:00+00' + (u * 4 + k) * interval '1 minute'
    FROM generate_series(1, 10) AS u
    CROSS JOIN generate_series(1, 2) AS k
    WHERE NOT EXISTS (SELECT 1 FROM carts)
    ORDER BY 1
    RETURNING id
)
SELECT setval(pg_get_serial_sequence('carts', 'id'), max(id)) AS carts_seq
FROM seeded;

COMMIT;

-- Fresh statistics, so that the planner (and whoever reads its plans) sees the real
-- sizes straight away instead of waiting for autovacuum.
ANALYZE users, products, orders, order_items, carts, payments;
