-- pgbench script (bench/compare): one reserve by a random buyer, the hot-row pattern. The
-- UPDATE takes the stock row's lock until COMMIT, so reserves of one sale run one at a time;
-- with synchronous_commit on, COMMIT returns after the WAL is flushed (fsync'd).
\set buyer random(1, 1000000000000)
BEGIN;
UPDATE stock SET remaining = remaining - 1 WHERE sale = 1 AND remaining > 0;
INSERT INTO orders (sale, buyer) VALUES (1, :buyer);
COMMIT;
