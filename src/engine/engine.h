/*
 * engine.h — the sale engine: all mutable sale state, in memory, changed by one writer.
 *
 * The engine is a deterministic state machine. Time is an argument (`now_ms`), never read from
 * a clock, so the same calls give the same state; tests drive it with a fake clock. Each change
 * of state appends change records (types.h) that the writer hands to the ledger as one batch;
 * fg_engine_take_changes moves them out.
 *
 * Threads: one thread at a time (the writer); nothing here locks. Pointers returned by getters
 * live until the next call that changes state, except catalog objects and sale definitions,
 * which live until fg_engine_free.
 *
 * Invariants, asserted where state changes (and fully by fg_engine_check):
 *   I1 for every pool: available + held + sold == stock, each >= 0
 *   I2 for every buyer and sale: held + bought <= limit
 *   I4 a hold ends once; its units return to available once
 *   I6 an order ships only to a market where its SKU is offered in that sale
 * I3 (durability) and I5 (idempotency) are kept by the writer and the ledger, with the
 * idempotency records stored here.
 */
#ifndef FG_ENGINE_H
#define FG_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/types.h"
#include "util/check.h"

typedef struct fg_engine fg_engine_t;

typedef enum {
    FG_OK = 0,
    FG_ERR_NOT_FOUND,       /* 404 not_found */
    FG_ERR_INVALID,         /* 400 invalid_field; fg_engine_detail names the field */
    FG_ERR_SOLD_OUT,        /* 409 sold_out */
    FG_ERR_SALE_NOT_OPEN,   /* 409 sale_not_open */
    FG_ERR_LIMIT_REACHED,   /* 403 limit_reached */
    FG_ERR_NOT_OFFERED,     /* 403 not_offered_in_market */
    FG_ERR_HOLD_EXPIRED,    /* 409 hold_expired */
    FG_ERR_HOLD_NOT_ACTIVE, /* 409 hold_not_active */
    FG_ERR_BUYER_EXISTS,    /* 409 buyer_exists */
    FG_ERR_UNAUTHORIZED,    /* 401 unauthorized */
    FG_ERR_CAPACITY,        /* 503 overloaded: an object limit or memory ran out */
} fg_err_t;

/* A sale as the engine holds it. Read-only for callers. */
typedef struct {
    fg_sale_row_t def; /* stock, paused, closed change in place */
    uint32_t index;
    int64_t held[FG_POOLS_PER_SALE_MAX]; /* units in active holds (incl. pending payment) */
    int64_t sold[FG_POOLS_PER_SALE_MAX]; /* units in paid orders */
    uint64_t holds_total;                /* holds ever placed */
    uint64_t orders_total;               /* orders ever placed */
    uint64_t buyers_total;               /* distinct buyers who placed a hold */
    uint64_t expired_total;
    uint64_t released_total;
    uint64_t version; /* bumps on every change of stock or state */
} fg_sale_t;

typedef struct {
    uint64_t id;
    uint64_t buyer_id;
    uint32_t sale_index;
    uint16_t pool_index;
    fg_mcode_t market;
    int32_t quantity;
    uint8_t state;    /* fg_hold_state_t */
    int32_t heap_pos; /* position in the expiry heap, -1 when not in it */
    int64_t created_at_ms;
    int64_t expires_at_ms;
    int64_t ended_at_ms;
    uint64_t order_id;
} fg_hold_t;

typedef struct fg_order {
    fg_order_row_t row;             /* row.shipping_json owned here */
    struct fg_order *next_of_buyer; /* newest first */
} fg_order_t;

static inline int64_t fg_pool_available(const fg_sale_t *s, int pool) {
    return s->def.pools[pool].stock - s->held[pool] - s->sold[pool];
}

fg_engine_t *fg_engine_new(void);
void fg_engine_free(fg_engine_t *e);

/* The text explaining the last error (for problem+json `detail`); valid until the next call. */
const char *fg_engine_detail(const fg_engine_t *e);

/* Moves the pending change records out; the caller releases each (fg_change_release) and frees
 * the array. Returns the count; *out is NULL when zero. */
size_t fg_engine_take_changes(fg_engine_t *e, fg_change_t **out);
size_t fg_engine_pending_changes(const fg_engine_t *e);
/* Drops pending change records (used when a batch is abandoned before commit). */
void fg_engine_discard_changes(fg_engine_t *e);

/* While restoring from the ledger, calls record no changes. */
void fg_engine_set_restoring(fg_engine_t *e, bool restoring);

/* ---- catalog ---- */
FG_MUST_USE fg_err_t fg_engine_market_put(fg_engine_t *e, const fg_market_t *m, bool *created);
const fg_market_t *fg_engine_market_get(const fg_engine_t *e, const char *code);
int fg_engine_market_count(const fg_engine_t *e);
const fg_market_t *fg_engine_market_at(const fg_engine_t *e, int i);

/* Takes ownership of *p (and its strings) on FG_OK; on error the caller still owns it. */
FG_MUST_USE fg_err_t fg_engine_product_put(fg_engine_t *e, fg_product_t *p, bool *created);
const fg_product_t *fg_engine_product_get(const fg_engine_t *e, const char *id);
int fg_engine_product_count(const fg_engine_t *e);
const fg_product_t *fg_engine_product_at(const fg_engine_t *e, int i);
/* The SKU and its product, or NULL. */
const fg_sku_t *fg_engine_sku_get(const fg_engine_t *e, const char *sku,
                                  const fg_product_t **product);

/* The SKU and market must exist. */
FG_MUST_USE fg_err_t fg_engine_offer_put(fg_engine_t *e, const fg_offer_t *o, bool *created);
const fg_offer_t *fg_engine_offer_get(const fg_engine_t *e, const char *sku, const char *market);

/* ---- sales ---- */
/* Validates the definition (ids, SKUs and markets exist, no SKU twice in one market, limits). */
FG_MUST_USE fg_err_t fg_engine_sale_create(fg_engine_t *e, const fg_sale_row_t *def,
                                           int64_t now_ms);
const fg_sale_t *fg_engine_sale_get(const fg_engine_t *e, const char *id);
int fg_engine_sale_count(const fg_engine_t *e);
const fg_sale_t *fg_engine_sale_at(const fg_engine_t *e, int index);
fg_sale_state_t fg_engine_sale_state(const fg_sale_t *s, int64_t now_ms);
const char *fg_sale_state_name(fg_sale_state_t st);
FG_MUST_USE fg_err_t fg_engine_sale_pause(fg_engine_t *e, const char *id, int64_t now_ms);
FG_MUST_USE fg_err_t fg_engine_sale_resume(fg_engine_t *e, const char *id, int64_t now_ms);
FG_MUST_USE fg_err_t fg_engine_sale_close(fg_engine_t *e, const char *id, int64_t now_ms);
/* Adds units to the pool of `sku` (in `market` when the SKU has several pools; else may be
 * NULL). */
FG_MUST_USE fg_err_t fg_engine_sale_add_stock(fg_engine_t *e, const char *id, const char *sku,
                                              const char *market, int64_t add, int64_t now_ms);
/* The pool that sells `sku` in `market`, or -1. */
int fg_engine_sale_pool(const fg_sale_t *s, const char *sku, fg_mcode_t market);

/* ---- buyers ---- */
/* `email` is normalized by the caller. Sets *id. */
FG_MUST_USE fg_err_t fg_engine_buyer_register(fg_engine_t *e, const char *email, const char *market,
                                              const uint8_t token_hash[32], int64_t now_ms,
                                              uint64_t *id);
/* Compares in constant time. FG_OK or FG_ERR_UNAUTHORIZED. */
FG_MUST_USE fg_err_t fg_engine_buyer_auth(const fg_engine_t *e, uint64_t id,
                                          const uint8_t secret_hash[32]);
/* The buyer's market, or 0 when there is no such buyer. */
fg_mcode_t fg_engine_buyer_market(const fg_engine_t *e, uint64_t id);
uint64_t fg_engine_buyer_count(const fg_engine_t *e);

/* ---- holds and orders ---- */
FG_MUST_USE fg_err_t fg_engine_hold(fg_engine_t *e, uint64_t buyer_id, const char *sale_id,
                                    const char *sku, fg_mcode_t market, int32_t quantity,
                                    int64_t now_ms, const fg_hold_t **out);
FG_MUST_USE fg_err_t fg_engine_hold_release(fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id,
                                            int64_t now_ms, const fg_hold_t **out);
/* The buyer's hold, or NULL (also when it belongs to someone else). */
const fg_hold_t *fg_engine_hold_get(const fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id);
/* `shipping_json` is copied; `ship_country` must be the hold's market and offered there. */
FG_MUST_USE fg_err_t fg_engine_order(fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id,
                                     const char *shipping_json, const char *ship_country,
                                     fg_pay_method_t method, int64_t now_ms,
                                     const fg_order_t **out);
/* A payment provider's verdict on a pending order. Paid twice is FG_OK (no change). */
FG_MUST_USE fg_err_t fg_engine_payment(fg_engine_t *e, uint64_t order_id, bool succeeded,
                                       int64_t now_ms, const fg_order_t **out);
/* The buyer's order (buyer_id 0: any buyer's, for operators), or NULL. */
const fg_order_t *fg_engine_order_get(const fg_engine_t *e, uint64_t buyer_id, uint64_t order_id);
/* The buyer's newest order, then ->next_of_buyer. */
const fg_order_t *fg_engine_buyer_orders(const fg_engine_t *e, uint64_t buyer_id);

/* Ends every hold whose time has come (expired; a pending order is cancelled). Returns how many
 * holds ended. */
int fg_engine_tick(fg_engine_t *e, int64_t now_ms);
/* The earliest expiry among active holds, or INT64_MAX. */
int64_t fg_engine_next_expiry_ms(const fg_engine_t *e);

/* ---- idempotency (I5) ---- */
typedef enum {
    FG_IDEM_NEW,       /* not seen: run the request */
    FG_IDEM_REPLAY,    /* seen, same request, committed: answer *rec */
    FG_IDEM_IN_FLIGHT, /* seen, its batch not committed yet: 409 */
    FG_IDEM_MISMATCH,  /* seen with another request: 422 */
    FG_IDEM_UNKNOWN,   /* the answer store could not be read: cannot tell, 503 */
} fg_idem_result_t;

/* *rec (for REPLAY and MISMATCH) stays valid until the next lookup or commit. */
fg_idem_result_t fg_engine_idem_lookup(fg_engine_t *e, uint64_t scope, const char *key,
                                       const uint8_t fingerprint[32], const fg_idem_row_t **rec);
/* Stores an answer, uncommitted until fg_engine_idem_committed. Copies key and body. */
FG_MUST_USE fg_err_t fg_engine_idem_store(fg_engine_t *e, uint64_t scope, const char *key,
                                          const uint8_t fingerprint[32], int status,
                                          const char *body, int64_t now_ms,
                                          const fg_idem_row_t **rec);
/* Marks rec committed. When an answer store is set and the ledger gave rec its row id, the
 * answer leaves memory: only the key's hash and the row id stay, and a replay reads it back. */
void fg_engine_idem_committed(fg_engine_t *e, const fg_idem_row_t *rec);

/* Where committed answers are read back from (the ledger; fg_engine_load sets it). Fills row by
 * its ledger row id: row->key points at key, row->body at *body (malloc'd, freed by the engine).
 * 1 found, 0 no such row, -1 error. Called on the engine's thread. */
typedef int (*fg_answer_fetch_fn)(void *ctx, int64_t rowid, fg_idem_row_t *row,
                                  char key[FG_IDEM_KEY_BYTES_MAX + 1], char **body);
void fg_engine_set_answer_store(fg_engine_t *e, fg_answer_fetch_fn fetch, void *ctx);
/* Forgets answers older than FG_IDEM_TTL_MS. */
void fg_engine_idem_expire(fg_engine_t *e, int64_t now_ms);
/* The hash keys are indexed by; any thread (the HTTP layer marks the keys it sends on). */
uint64_t fg_engine_idem_hash(uint64_t scope, const char *key);
/* Tells the engine the hash of (scope, key) already computed (fg_engine_idem_hash, on another
 * thread), so that the next lookup and store of that key do not hash it again. */
void fg_engine_idem_hint(fg_engine_t *e, uint64_t scope, const char *key, uint64_t hash);
/* Calls fn with the hash of every key the engine knows an answer of, in flight or stored. For
 * a stored answer only the top FG_PACK_TAG_BITS bits are kept; the rest are zero. */
void fg_engine_idem_each_hash(const fg_engine_t *e, void (*fn)(void *ctx, uint64_t hash),
                              void *ctx);

/* ---- webhook replay window ---- */
/* FG_OK and records the signature (a change) when unseen; FG_ERR_UNAUTHORIZED when seen. */
FG_MUST_USE fg_err_t fg_engine_webhook_use(fg_engine_t *e, const uint8_t digest[32], int64_t t_s,
                                           int64_t now_ms);

/* ---- restore from the ledger (no change records) ---- */
FG_MUST_USE fg_err_t fg_engine_restore_sale(fg_engine_t *e, const fg_sale_row_t *row);
FG_MUST_USE fg_err_t fg_engine_restore_buyer(fg_engine_t *e, const fg_buyer_row_t *row);
FG_MUST_USE fg_err_t fg_engine_restore_hold(fg_engine_t *e, const fg_hold_row_t *row);
/* Takes ownership of row->shipping_json (cast away const; allocated with malloc). */
FG_MUST_USE fg_err_t fg_engine_restore_order(fg_engine_t *e, const fg_order_row_t *row);
FG_MUST_USE fg_err_t fg_engine_restore_idem(fg_engine_t *e, const fg_idem_row_t *row);
FG_MUST_USE fg_err_t fg_engine_restore_webhook(fg_engine_t *e, const fg_webhook_row_t *row);
/* Market, product and offer restore through the ordinary put calls while restoring. */

/* ---- checks and stats ---- */
/* Scans everything and asserts I1, I2, I4 (counters agree with holds), I6. For tests. */
void fg_engine_check(const fg_engine_t *e);
/* The same scan, reporting instead of aborting: 0, or -1 with the broken invariant named in
 * why. For state that came from outside (the ledger at start), which is refused, not served. */
FG_MUST_USE int fg_engine_verify(const fg_engine_t *e, char *why, size_t whylen);
uint64_t fg_engine_active_holds(const fg_engine_t *e);
uint64_t fg_engine_order_count(const fg_engine_t *e);

#endif
