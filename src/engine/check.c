/*
 * check.c — a full scan of the engine's state that asserts the invariants from scratch.
 *
 * The hot paths assert each change locally; this recomputes every counter from the holds and
 * orders themselves, so a counter that drifted is caught. Tests call it after every step; the
 * server calls it once after restoring from the ledger.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

typedef struct {
    int64_t held[FG_POOLS_PER_SALE_MAX];
    int64_t sold[FG_POOLS_PER_SALE_MAX];
} pool_sums_t;

static void check_hold(const fg_engine_t *e, const fg_hold_t *h, pool_sums_t *sums,
                       fg_map_t *per_buyer, uint64_t *active) {
    FG_ASSERT(h->sale_index < (uint32_t)e->sale_count);
    const fg_sale_t *s = e->sales[h->sale_index];
    FG_ASSERT(h->pool_index < s->def.pool_count);
    const fg_order_t *o = h->order_id ? fg_engine_order_get(e, 0, h->order_id) : NULL;
    bool pending = o != NULL && o->row.state == FG_ORDER_PENDING_PAYMENT;
    bool paid = o != NULL && o->row.state == FG_ORDER_PAID;
    bool is_active = h->state == FG_HOLD_HELD || (h->state == FG_HOLD_ORDERED && pending);
    FG_INVARIANT("I4", is_active == (h->heap_pos >= 0));
    FG_INVARIANT("I4", h->state != FG_HOLD_ORDERED || o != NULL);
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
        FG_INVARIANT("I4", h->state == FG_HOLD_ORDERED);
        sums[h->sale_index].sold[h->pool_index] += q;
        v += (uint64_t)q;
        /* I6: the order's market is one its pool sells in. */
        FG_INVARIANT("I6", fg_engine_sale_pool(s, o->row.sku, o->row.market) == h->pool_index);
    }
    FG_ASSERT(fg_map_put(per_buyer, key, v) == 0);
}

void fg_engine_check(const fg_engine_t *e) {
    pool_sums_t *sums = calloc((size_t)e->sale_count + 1, sizeof *sums);
    FG_ASSERT(sums != NULL);
    fg_map_t per_buyer;
    fg_map_init(&per_buyer);
    uint64_t active = 0;
    for (uint64_t i = 0; i < e->hold_count; i++)
        check_hold(e, &e->hold_slabs[i / FG_HOLD_SLAB_COUNT][i % FG_HOLD_SLAB_COUNT], sums,
                   &per_buyer, &active);
    FG_INVARIANT("I4", active == e->heap_len);
    for (int si = 0; si < e->sale_count; si++) {
        const fg_sale_t *s = e->sales[si];
        for (int p = 0; p < s->def.pool_count; p++) {
            FG_INVARIANT("I1", s->held[p] == sums[si].held[p]);
            FG_INVARIANT("I1", s->sold[p] == sums[si].sold[p]);
            FG_INVARIANT("I1", s->held[p] >= 0 && s->sold[p] >= 0);
            FG_INVARIANT("I1", fg_pool_available(s, p) >= 0);
        }
    }
    for (size_t i = 0; i < per_buyer.cap; i++) {
        if (per_buyer.slots[i].key == 0) continue;
        uint64_t want = per_buyer.slots[i].val, have = 0;
        fg_map_get(&e->counters, per_buyer.slots[i].key, &have);
        FG_INVARIANT("I2", want == have);
        uint32_t sale_index = (uint32_t)(per_buyer.slots[i].key >> 40) - 1;
        int64_t total = (int64_t)(have >> 32) + (int64_t)(uint32_t)have;
        FG_INVARIANT("I2", total <= e->sales[sale_index]->def.limit_per_buyer);
    }
    for (size_t i = 1; i < e->heap_len; i++)
        FG_ASSERT(e->heap[(i - 1) / 2]->expires_at_ms <= e->heap[i]->expires_at_ms);
    fg_map_free(&per_buyer);
    free(sums);
}
