/*
 * engine.c — catalog, sales, buyers, holds and orders in memory; see engine.h.
 *
 * Layout: the catalog is small (arrays of immutable objects plus hash indexes); buyers live in a
 * dense array indexed by id; holds come from a slab and are found by id through a hash map;
 * active holds also sit in a min-heap ordered by expiry, which fg_engine_tick drains. Per-buyer
 * limits (I2) are counted per (buyer, sale) in one map whose value packs held and bought.
 *
 * Every mutation appends a change record; when restoring from the ledger none is appended.
 */
#include "engine/engine.h"

#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

/* ---------------------------------------------------------------- basics */

const char *fg_engine_detail(const fg_engine_t *e) {
    return e->detail;
}

void fg__detail(fg_engine_t *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->detail, sizeof e->detail, fmt, ap);
    va_end(ap);
}

fg_engine_t *fg_engine_new(void) {
    fg_engine_t *e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    e->next_hold_id = 1;
    e->next_order_id = 1;
    e->next_buyer_id = 1;
    e->idem_horizon_ms = INT64_MIN;
    e->idem_newest_ms = INT64_MIN;
    return e;
}

void fg_engine_free(fg_engine_t *e) {
    if (e == NULL) return;
    fg_engine_discard_changes(e);
    free(e->changes);
    for (int i = 0; i < e->market_count; i++)
        free(e->markets[i]);
    for (int i = 0; i < e->product_count; i++) {
        fg_product_free(e->products[i]);
        free(e->products[i]);
    }
    for (int i = 0; i < e->offer_count; i++)
        free(e->offers[i]);
    free(e->offers);
    for (size_t i = 0; i < e->retired_count; i++) {
        if (e->retired[i].is_product) fg_product_free(e->retired[i].p);
        free(e->retired[i].p);
    }
    free(e->retired);
    for (int i = 0; i < e->sale_count; i++)
        free(e->sales[i]);
    free(e->buyers);
    for (size_t i = 0; i < e->hold_slab_count; i++)
        free(e->hold_slabs[i]);
    free(e->hold_slabs);
    free(e->heap);
    uint64_t id, val;
    for (size_t it = 0; fg_map_next(&e->order_by_id, &it, &id, &val);) {
        fg_order_t *o = (fg_order_t *)(uintptr_t)val;
        free((char *)o->row.shipping_json);
        free(o);
    }
    for (fg__idem_t *r = e->idem_head; r != NULL;) {
        fg__idem_t *next = r->next_fifo;
        fg__idem_free(r);
        r = next;
    }
    free(e->fetched_body);
    fg_pack_free(&e->email_seen);
    fg_pack_free(&e->idem_stored);
    free(e->idem_marks);
    fg_map_t *maps[] = {&e->market_by_code, &e->product_by_id, &e->sku_by_id,  &e->offer_by_key,
                        &e->sale_by_id,     &e->counters,      &e->hold_by_id, &e->order_by_id,
                        &e->buyer_orders,   &e->idem_by_key,   &e->webhooks};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
        fg_map_free(maps[i]);
    free(e);
}

void fg_engine_set_restoring(fg_engine_t *e, bool restoring) {
    e->restoring = restoring;
}

/* Appends a change record; false when memory ran out (the caller undoes nothing: it checks
 * capacity with fg__reserve_changes before changing state). */
void fg__emit(fg_engine_t *e, const fg_change_t *c) {
    if (e->restoring) {
        fg_change_t tmp = *c;
        fg_change_release(&tmp);
        return;
    }
    FG_ASSERT(e->change_count < e->change_cap); /* reserved before state changed */
    e->changes[e->change_count++] = *c;
}

bool fg__reserve_changes(fg_engine_t *e, size_t n) {
    if (e->restoring || e->change_count + n <= e->change_cap) return true;
    size_t cap = e->change_cap ? e->change_cap : 256;
    while (cap < e->change_count + n)
        cap *= 2;
    fg_change_t *c = realloc(e->changes, cap * sizeof *c);
    if (c == NULL) return false;
    e->changes = c;
    e->change_cap = cap;
    return true;
}

size_t fg_engine_take_changes(fg_engine_t *e, fg_change_t **out) {
    size_t n = e->change_count;
    *out = n ? e->changes : NULL;
    if (n) {
        e->changes = NULL;
        e->change_cap = 0;
        e->change_count = 0;
    }
    return n;
}

size_t fg_engine_pending_changes(const fg_engine_t *e) {
    return e->change_count;
}

void fg_engine_discard_changes(fg_engine_t *e) {
    for (size_t i = 0; i < e->change_count; i++)
        fg_change_release(&e->changes[i]);
    e->change_count = 0;
}

bool fg__retire(fg_engine_t *e, void *p, bool is_product) {
    if (e->retired_count == e->retired_cap) {
        size_t cap = e->retired_cap ? e->retired_cap * 2 : 16;
        fg__retired_t *r = realloc(e->retired, cap * sizeof *r);
        if (r == NULL) return false;
        e->retired = r;
        e->retired_cap = cap;
    }
    e->retired[e->retired_count].p = p;
    e->retired[e->retired_count].is_product = is_product;
    e->retired_count++;
    return true;
}

/* ---------------------------------------------------------------- counters (I2) */

uint64_t fg__counter_key(uint32_t sale_index, uint64_t buyer_id) {
    return ((uint64_t)(sale_index + 1) << 40) | buyer_id;
}

void fg__counter_get(const fg_engine_t *e, uint32_t sale_index, uint64_t buyer_id, uint32_t *held,
                     uint32_t *bought) {
    uint64_t v = 0;
    fg_map_get(&e->counters, fg__counter_key(sale_index, buyer_id), &v);
    *held = (uint32_t)(v >> 32);
    *bought = (uint32_t)v;
}

/* Adjusts a buyer's counters for a sale. The map entry exists: fg__counter_touch made it. */
void fg__counter_add(fg_engine_t *e, uint32_t sale_index, uint64_t buyer_id, int32_t d_held,
                     int32_t d_bought) {
    uint32_t held, bought;
    fg__counter_get(e, sale_index, buyer_id, &held, &bought);
    int64_t h = (int64_t)held + d_held;
    int64_t b = (int64_t)bought + d_bought;
    FG_ASSERT(h >= 0 && b >= 0);
    const fg_sale_t *s = e->sales[sale_index];
    FG_INVARIANT("I2", h + b <= s->def.limit_per_buyer || d_held <= 0);
    uint64_t v = ((uint64_t)h << 32) | (uint64_t)b;
    /* Replacing an existing key never allocates. */
    FG_ASSERT(fg_map_get(&e->counters, fg__counter_key(sale_index, buyer_id), NULL));
    int rc = fg_map_put(&e->counters, fg__counter_key(sale_index, buyer_id), v);
    FG_ASSERT(rc == 0);
}

/* Makes sure the (buyer, sale) entry exists; false when memory ran out. */
bool fg__counter_touch(fg_engine_t *e, uint32_t sale_index, uint64_t buyer_id) {
    uint64_t key = fg__counter_key(sale_index, buyer_id);
    if (fg_map_get(&e->counters, key, NULL)) return true;
    if (fg_map_put(&e->counters, key, 0) != 0) return false;
    e->sales[sale_index]->buyers_total++;
    return true;
}
