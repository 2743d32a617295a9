-- PostgreSQL peer of bench/compare: one stock row per sale (the hot row) and one row per order,
-- with the per-buyer limit (one unit) as a unique constraint.
CREATE TABLE stock (
    sale      integer PRIMARY KEY,
    remaining bigint  NOT NULL CHECK (remaining >= 0)
);
CREATE TABLE orders (
    id         bigserial   PRIMARY KEY,
    sale       integer     NOT NULL REFERENCES stock (sale),
    buyer      bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sale, buyer)
);
-- Enough stock that no run sells out: every transaction is a durable reserve.
INSERT INTO stock VALUES (1, 1000000000000);
