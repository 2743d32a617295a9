/*
 * ledger.h — floodgate's durable record on SQLite: one transaction per batch, read back at start.
 *
 * The database is DIR/floodgate.db in WAL mode with synchronous=FULL, so a commit that returns
 * is on disk (I3). The schema is versioned (table meta, key schema_version) and migrated forward
 * at open; a database from a newer floodgate is refused.
 *
 * Threads: a fg_ledger_t is used by one thread at a time (the commit thread; at start the main
 * thread). Exports open their own read-only connection and may run on any thread, concurrently
 * with commits (WAL readers see the last committed state).
 *
 * The ledger knows the shapes of engine/types.h but never calls the engine: loading hands rows
 * to a visitor.
 */
#ifndef FG_LEDGER_H
#define FG_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/types.h"
#include "util/check.h"

typedef struct fg_ledger fg_ledger_t;

#define FG_LEDGER_SCHEMA_VERSION 1

/* Opens or creates DIR/floodgate.db (DIR must exist), applies migrations. 0, or -1 with a
 * message in err. */
FG_MUST_USE int fg_ledger_open(const char *dir, fg_ledger_t **out, char *err, size_t errlen);
void fg_ledger_close(fg_ledger_t *l);

/* Why a commit (or a probe) failed, from SQLite's extended result code. The writer retries
 * after FG_LEDGER_EDISK and stops floodgate after FG_LEDGER_ESYNC (docs/reliability.md). */
enum {
    FG_LEDGER_EFAIL = -1, /* refused: a row broke a rule, the database stayed busy, ... */
    FG_LEDGER_EDISK = -2, /* the disk refused a read or write (I/O error, disk full) */
    FG_LEDGER_ESYNC = -3, /* an fsync failed: what the files hold on disk is unknown */
};

/* Applies every change in one transaction and commits it. 0 when committed (durable); a
 * negative FG_LEDGER_E* when not, with a message in err. The transaction is rolled back and
 * this connection sees none of it; after FG_LEDGER_ESYNC its pages may still sit in the log
 * file, and a later start may find the batch there, whole. */
FG_MUST_USE int fg_ledger_commit(fg_ledger_t *l, const fg_change_t *changes, size_t n, char *err,
                                 size_t errlen);

/* Proves that the disk takes a durable write again: stores now_ms in meta (key
 * ledger_probe_at_ms) in its own transaction, fsync included. 0, or a negative FG_LEDGER_E* as
 * for commit. The thread that commits, while no commit is in flight. */
FG_MUST_USE int fg_ledger_probe(fg_ledger_t *l, int64_t now_ms, char *err, size_t errlen);

/* Row callbacks for fg_ledger_load; each returns 0 to go on, non-zero to stop with an error.
 * Pointers are valid for the call only, except where noted. */
typedef struct {
    int (*market)(void *ctx, const fg_market_t *m);
    int (*product)(void *ctx, fg_product_t *p); /* the callee takes ownership of *p */
    int (*offer)(void *ctx, const fg_offer_t *o);
    int (*sale)(void *ctx, const fg_sale_row_t *s);
    int (*buyer)(void *ctx, const fg_buyer_row_t *b);
    int (*hold)(void *ctx, const fg_hold_row_t *h);
    /* o->shipping_json is malloc'd and owned by the callee */
    int (*order)(void *ctx, const fg_order_row_t *o);
    int (*idem)(void *ctx, const fg_idem_row_t *r);
    int (*webhook)(void *ctx, const fg_webhook_row_t *w);
} fg_ledger_visitor_t;

/* Reads everything back in this order: markets, products (with SKUs), offers, sales, buyers,
 * holds by id, orders by id, idempotency records created at or after idem_since_ms (in the
 * order written, with their row ids), webhook
 * signatures with t_s at or after webhook_since_s. Validates each row (lengths, codes, ranges)
 * and fails on a corrupt one. 0, or -1 with a message. */
FG_MUST_USE int fg_ledger_load(fg_ledger_t *l, const fg_ledger_visitor_t *v, void *ctx,
                               int64_t idem_since_ms, int64_t webhook_since_s, char *err,
                               size_t errlen);

/* Reads back the stored answer (idempotency row) with the given row id, as set in
 * fg_idem_row_t.ledger_rowid when it was committed. On its own read-only connection, for the
 * engine's thread only (one caller at a time), concurrently with commits. 1 found: row filled,
 * row->key points at key, row->body at *body (malloc'd, the caller frees it); 0 no such row
 * (pruned); -1 error (logged). */
FG_MUST_USE int fg_ledger_answer_get(fg_ledger_t *l, int64_t rowid, fg_idem_row_t *row,
                                     char key[FG_IDEM_KEY_BYTES_MAX + 1], char **body);

/* Small settings kept with the data (the admin token's hash, the webhook secret).
 * get: 1 found (copied, NUL-terminated, truncated to cap), 0 absent, -1 error. */
FG_MUST_USE int fg_ledger_meta_get(fg_ledger_t *l, const char *key, char *out, size_t cap);
FG_MUST_USE int fg_ledger_meta_set(fg_ledger_t *l, const char *key, const char *value);

/* ---- export of a sale's orders, on its own read-only connection ---- */
typedef struct fg_ledger_export fg_ledger_export_t;

typedef struct {
    fg_order_row_t order;               /* shipping_json valid until the next call */
    char email[FG_EMAIL_BYTES_MAX + 1]; /* the buyer's */
} fg_export_row_t;

/* Opens DIR/floodgate.db read-only and starts reading sale_id's orders by id. 0; -2 when the
 * ledger has no such sale; -1 on error (logged). */
FG_MUST_USE int fg_ledger_export_open(const char *dir, const char *sale_id,
                                      fg_ledger_export_t **out);
/* 1 with a row, 0 at the end, -1 on error. */
FG_MUST_USE int fg_ledger_export_next(fg_ledger_export_t *x, fg_export_row_t *row);
void fg_ledger_export_close(fg_ledger_export_t *x);

#endif
