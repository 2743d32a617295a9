-- pgbench script (bench/compare): one reserve by a random buyer, the hot-row pattern. The
-- UPDATE takes the stock row's lock until COMMIT, so reserves of one sale run one at a time;
-- with synchronous_commit on, COMMIT returns after the WAL is flushed (fsync'd).
-- Buyers are drawn from 9e18, not 1e12: the rounds' cluster keeps every order (about 190,000),
-- and at 1e12 two draws of one buyer (a unique violation, which aborts pgbench) came up in
-- about one run in sixty.
\set buyer random(1, 9000000000000000000)
BEGIN;
UPDATE stock SET remaining = remaining - 1 WHERE sale = 1 AND remaining > 0;
INSERT INTO orders (sale, buyer) VALUES (1, :buyer);
COMMIT;
