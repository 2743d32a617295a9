/*
 * check.c — a full scan of the engine's state that checks the invariants from scratch.
 *
 * The hot paths assert each change locally; this recomputes every counter from the holds and
 * orders themselves, so a counter that drifted is caught. Tests call fg_engine_check after
 * every step, which aborts on a broken invariant; the server runs the same scan once after
 * restoring from the ledger as fg_engine_verify, which reports it: rows that each pass their own
 * checks can still disagree with each other, and such a ledger is refused, not served.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

typedef struct {
    int64_t held[FG_POOLS_PER_SALE_MAX];
    int64_t sold[FG_POOLS_PER_SALE_MAX];
} pool_sums_t;

/* The first broken rule the scan met. */
typedef struct {
    const char *label; /* "I1".."I6", or "state" for the engine's own structure */
    const char *expr;
    int line;
} violation_t;

/* Ends the scan at the first broken rule, noting which. */
#define VERIFY(vio, label_, expr_)                                                                 \
    do {                                                                                           \
        if (!(expr_)) {                                                                            \
            (vio)->label = (label_);                                                               \
            (vio)->expr = #expr_;                                                                  \
            (vio)->line = __LINE__;                                                                \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

static bool check_hold(const fg_engine_t *e, const fg_hold_t *h, pool_sums_t *sums,
                       fg_map_t *per_buyer, uint64_t *active, violation_t *vio) {
    VERIFY(vio, "state", h->sale_index < (uint32_t)e->sale_count);
    const fg_sale_t *s = e->sales[h->sale_index];
    VERIFY(vio, "state", h->pool_index < s->def.pool_count);
    const fg_order_t *o = h->order_id ? fg_engine_order_get(e, 0, h->order_id) : NULL;
    /* I4: a hold and its order name each other, and a hold still held has none. */
    VERIFY(vio, "I4", h->order_id == 0 || (o != NULL && o->row.hold_id == h->id));
    VERIFY(vio, "I4", h->state != FG_HOLD_HELD || h->order_id == 0);
    /* I6: an order, paid or not yet, is of its hold's sale and pool, in a market the pool
     * sells in. */
    VERIFY(vio, "I6",
           o == NULL || (strcmp(o->row.sale_id, s->def.id) == 0 &&
                         fg_engine_sale_pool(s, o->row.sku, o->row.market) == h->pool_index));
    bool pending = o != NULL && o->row.state == FG_ORDER_PENDING_PAYMENT;
    bool paid = o != NULL && o->row.state == FG_ORDER_PAID;
    bool is_active = h->state == FG_HOLD_HELD || (h->state == FG_HOLD_ORDERED && pending);
    VERIFY(vio, "I4", is_active == (h->heap_pos >= 0));
    VERIFY(vio, "I4", h->state != FG_HOLD_ORDERED || o != NULL);
    int64_t q = h->quantity;
    uint64_t key = fg__counter_key(h->sale_index, h->buyer_id);
    uint64_t v = 0;
    fg_map_get(per_buyer, key, &v);
    if (is_active) {
        sums[h->sale_index].held[h->pool_index] += q;
        v += (uint64_t)q << 32;
        (*active)++;
    }
    if (paid) {
        VERIFY(vio, "I4", h->state == FG_HOLD_ORDERED);
        sums[h->sale_index].sold[h->pool_index] += q;
        v += (uint64_t)q;
    }
    FG_ASSERT(fg_map_put(per_buyer, key, v) == 0);
    return true;
}

static bool scan(const fg_engine_t *e, pool_sums_t *sums, fg_map_t *per_buyer, violation_t *vio) {
    uint64_t active = 0;
    for (uint64_t i = 0; i < e->hold_count; i++)
        if (!check_hold(e, &e->hold_slabs[i / FG_HOLD_SLAB_COUNT][i % FG_HOLD_SLAB_COUNT], sums,
                        per_buyer, &active, vio))
            return false;
    VERIFY(vio, "I4", active == e->heap_len);
    for (int si = 0; si < e->sale_count; si++) {
        const fg_sale_t *s = e->sales[si];
        for (int p = 0; p < s->def.pool_count; p++) {
            VERIFY(vio, "I1", s->held[p] == sums[si].held[p]);
            VERIFY(vio, "I1", s->sold[p] == sums[si].sold[p]);
            VERIFY(vio, "I1", s->held[p] >= 0 && s->sold[p] >= 0);
            VERIFY(vio, "I1", fg_pool_available(s, p) >= 0);
        }
    }
    uint64_t key, want;
    for (size_t it = 0; fg_map_next(per_buyer, &it, &key, &want);) {
        uint64_t have = 0;
        fg_map_get(&e->counters, key, &have);
        VERIFY(vio, "I2", want == have);
        uint32_t sale_index = (uint32_t)(key >> 40) - 1;
        int64_t total = (int64_t)(have >> 32) + (int64_t)(uint32_t)have;
        VERIFY(vio, "I2", total <= e->sales[sale_index]->def.limit_per_buyer);
    }
    for (size_t i = 1; i < e->heap_len; i++)
        VERIFY(vio, "state", e->heap[(i - 1) / 2]->expires_at_ms <= e->heap[i]->expires_at_ms);
    return true;
}

static bool verify(const fg_engine_t *e, violation_t *vio) {
    pool_sums_t *sums = calloc((size_t)e->sale_count + 1, sizeof *sums);
    FG_ASSERT(sums != NULL);
    fg_map_t per_buyer;
    fg_map_init(&per_buyer);
    bool ok = scan(e, sums, &per_buyer, vio);
    fg_map_free(&per_buyer);
    free(sums);
    return ok;
}

void fg_engine_check(const fg_engine_t *e) {
    violation_t vio = {0};
    if (verify(e, &vio)) return;
    fprintf(stderr, "floodgate: invariant %s violated: %s (%s:%d)\n", vio.label, vio.expr, __FILE__,
            vio.line);
    abort();
}

int fg_engine_verify(const fg_engine_t *e, char *why, size_t whylen) {
    violation_t vio = {0};
    if (verify(e, &vio)) return 0;
    snprintf(why, whylen, "invariant %s violated: %s (check.c:%d)", vio.label, vio.expr, vio.line);
    return -1;
}
