/*
 * engine_internal.h — the engine's state, shared by its modules (engine.c, catalog.c, sales.c,
 * buyers.c, holds.c, idem.c, check.c). Nothing outside src/engine/ includes this.
 */
#ifndef FG_ENGINE_INTERNAL_H
#define FG_ENGINE_INTERNAL_H

#include "engine/engine.h"
#include "util/map.h"
#include "util/pack.h"

/* A buyer in memory: 20 bytes. The token is checked against the first half of its BLAKE2b-256
 * hash (128 bits are far beyond guessing; the ledger keeps all 32 bytes). */
#define FG__TOKEN_HASH_KEPT 16
typedef struct {
    uint8_t token_hash[FG__TOKEN_HASH_KEPT];
    fg_mcode_t market;
    bool present;
} fg__buyer_t;
_Static_assert(sizeof(fg__buyer_t) == 20, "a buyer stays small: a million of them are in memory");

typedef struct fg__idem {
    fg_idem_row_t row;
    bool committed;
    uint64_t hash;
    struct fg__idem *next_in_bucket;
    struct fg__idem *next_fifo;
    bool body_apart; /* row.body was replaced and has its own allocation (restore) */
    char text[];     /* row.key and, unless body_apart, row.body: one allocation per record */
} fg__idem_t;

typedef struct {
    void *p;
    bool is_product;
} fg__retired_t;

/* Rows of the answer store below rowid were all created at or before ms (idem.c). */
typedef struct {
    int64_t ms, rowid;
} fg__idem_mark_t;

#define FG_HOLD_SLAB_COUNT 4096 /* holds per slab allocation */

struct fg_engine {
    /* catalog: current objects; replaced ones are retired until fg_engine_free */
    fg_market_t *markets[FG_MARKETS_MAX];
    int market_count;
    fg_map_t market_by_code; /* mcode -> index */
    fg_product_t *products[FG_PRODUCTS_MAX];
    int product_count;
    fg_map_t product_by_id; /* hash(id) -> index */
    fg_map_t sku_by_id;     /* hash(sku) -> product index << 16 | sku index */
    fg_offer_t **offers;
    int offer_count, offer_cap;
    fg_map_t offer_by_key; /* hash(sku "/" market) -> index */
    fg__retired_t *retired;
    size_t retired_count, retired_cap;

    fg_sale_t *sales[FG_SALES_MAX];
    int sale_count;
    fg_map_t sale_by_id; /* hash(id) -> index */

    fg__buyer_t *buyers; /* index id - 1 */
    uint64_t buyer_cap;
    uint64_t buyer_count;
    fg_pack_t email_seen; /* 64-bit keyed hashes of the emails: see buyers.c */
    fg_map_t counters;    /* fg__counter_key -> held << 32 | bought */

    fg_hold_t **hold_slabs;
    size_t hold_slab_count, hold_slab_cap;
    uint64_t hold_count; /* holds allocated */
    fg_map_t hold_by_id; /* id -> fg_hold_t* */
    fg_hold_t **heap;    /* active holds by expires_at_ms */
    size_t heap_len, heap_cap;

    fg_map_t order_by_id;  /* id -> fg_order_t* */
    fg_map_t buyer_orders; /* buyer id -> newest fg_order_t* */
    uint64_t order_count;

    /* Stored answers. Kept whole in memory while in flight, or when there is no answer store;
     * once committed to an answer store only a slot of idem_stored remains (see idem.c). */
    fg_map_t idem_by_key; /* hash(scope, key) -> fg__idem_t* chain */
    /* the last key hashed (or hinted, fg_engine_idem_hint): lookup and store of one command
     * hash it once, and not at all when its HTTP thread already did */
    bool idem_memo_set;
    uint64_t idem_memo_scope, idem_memo_hash;
    char idem_memo_key[FG_IDEM_KEY_BYTES_MAX + 1];
    fg__idem_t *idem_head, *idem_tail;
    fg_pack_t idem_stored; /* top bits of hash(scope, key) | ledger row id */
    fg__idem_mark_t *idem_marks;
    size_t idem_mark_len, idem_mark_cap;
    int64_t idem_newest_ms;  /* newest answer in idem_stored */
    int64_t idem_horizon_ms; /* answers created before this are forgotten */
    int64_t idem_swept_ms;   /* last sweep of idem_stored */
    fg_answer_fetch_fn answer_fetch;
    void *answer_ctx;
    fg_idem_row_t fetched; /* the last answer read back; key and body below */
    char fetched_key[FG_IDEM_KEY_BYTES_MAX + 1];
    char *fetched_body;
    fg_map_t webhooks; /* digest prefix -> t_s */
    int64_t webhooks_pruned_ms;
    int64_t ledger_pruned_ms; /* last FG_CH_PRUNE */

    fg_change_t *changes;
    size_t change_count, change_cap;
    bool restoring;

    uint64_t next_hold_id, next_order_id, next_buyer_id;
    char detail[256];
};

/* Sets the detail text and yields err. A macro, so that callers (and the static analyzer, which
 * does not look into other files) see that a failure returns exactly err, never FG_OK. */
#define fg__fail(e, err, ...) (fg__detail((e), __VA_ARGS__), (err))
void fg__detail(fg_engine_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fg__emit(fg_engine_t *e, const fg_change_t *c);
/* Frees a stored-answer record (idem.c). */
void fg__idem_free(fg__idem_t *r);
FG_MUST_USE bool fg__reserve_changes(fg_engine_t *e, size_t n);
FG_MUST_USE bool fg__retire(fg_engine_t *e, void *p, bool is_product);

uint64_t fg__counter_key(uint32_t sale_index, uint64_t buyer_id);
void fg__counter_get(const fg_engine_t *e, uint32_t sale_index, uint64_t buyer_id, uint32_t *held,
                     uint32_t *bought);
void fg__counter_add(fg_engine_t *e, uint32_t sale_index, uint64_t buyer_id, int32_t d_held,
                     int32_t d_bought);
FG_MUST_USE bool fg__counter_touch(fg_engine_t *e, uint32_t sale_index, uint64_t buyer_id);

/* The sale's current offer for (sku, market) if sellable there: the pool covers the market and
 * the catalog offers it unblocked. Otherwise NULL with e->detail naming why. */
const fg_offer_t *fg__sellable(fg_engine_t *e, const fg_sale_t *s, int pool, const char *sku,
                               fg_mcode_t market);
fg_sale_t *fg__sale_find(const fg_engine_t *e, const char *id);
void fg__sale_emit(fg_engine_t *e, fg_sale_t *s);

void fg__hold_emit(fg_engine_t *e, const fg_hold_t *h);
void fg__order_emit(fg_engine_t *e, const fg_order_t *o);

#endif
