/*
 * engine_internal.h — the engine's state, shared by its modules (engine.c, catalog.c, sales.c,
 * buyers.c, holds.c, idem.c, check.c). Nothing outside src/engine/ includes this.
 */
#ifndef FG_ENGINE_INTERNAL_H
#define FG_ENGINE_INTERNAL_H

#include "engine/engine.h"
#include "util/map.h"

typedef struct {
    uint8_t token_hash[32];
    uint8_t email_hash[16];
    fg_mcode_t market;
    bool present;
} fg__buyer_t;

typedef struct fg__idem {
    fg_idem_row_t row;
    bool committed;
    uint64_t hash;
    struct fg__idem *next_in_bucket;
    struct fg__idem *next_fifo;
} fg__idem_t;

typedef struct {
    void *p;
    bool is_product;
} fg__retired_t;

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
    fg_map_t email_seen; /* email hash, probed: see buyers.c */
    fg_map_t counters;   /* fg__counter_key -> held << 32 | bought */

    fg_hold_t **hold_slabs;
    size_t hold_slab_count, hold_slab_cap;
    uint64_t hold_count; /* holds allocated */
    fg_map_t hold_by_id; /* id -> fg_hold_t* */
    fg_hold_t **heap;    /* active holds by expires_at_ms */
    size_t heap_len, heap_cap;

    fg_map_t order_by_id;  /* id -> fg_order_t* */
    fg_map_t buyer_orders; /* buyer id -> newest fg_order_t* */
    uint64_t order_count;

    fg_map_t idem_by_key; /* hash(scope, key) -> fg__idem_t* chain */
    fg__idem_t *idem_head, *idem_tail;
    fg_map_t webhooks; /* digest prefix -> t_s */
    int64_t webhooks_pruned_ms;
    int64_t ledger_pruned_ms; /* last FG_CH_PRUNE */

    fg_change_t *changes;
    size_t change_count, change_cap;
    bool restoring;

    uint64_t next_hold_id, next_order_id, next_buyer_id;
    char detail[256];
};

/* Sets the detail text and returns err. */
fg_err_t fg__fail(fg_engine_t *e, fg_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fg__emit(fg_engine_t *e, const fg_change_t *c);
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
