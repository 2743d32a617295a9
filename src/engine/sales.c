/*
 * sales.c — sale definitions, their state over time, pause/resume/close and added stock.
 *
 * A sale's state is derived, not stored: from the operator's flags (paused, closed), the clock
 * (opens_at, closes_at) and stock (sold out when no pool has a unit available). So opening and
 * closing on time need no write and cannot be missed by a crash.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

static const char *const state_names[] = {"scheduled", "open", "paused", "sold_out", "closed"};

const char *fg_sale_state_name(fg_sale_state_t st) {
    return state_names[st];
}

fg_sale_state_t fg_engine_sale_state(const fg_sale_t *s, int64_t now_ms) {
    if (s->def.closed || (s->def.closes_at_ms != 0 && now_ms >= s->def.closes_at_ms))
        return FG_SALE_CLOSED;
    if (s->def.paused) return FG_SALE_PAUSED;
    if (now_ms < s->def.opens_at_ms) return FG_SALE_SCHEDULED;
    for (int i = 0; i < s->def.pool_count; i++)
        if (fg_pool_available(s, i) > 0) return FG_SALE_OPEN;
    return FG_SALE_SOLD_OUT;
}

fg_sale_t *fg__sale_find(const fg_engine_t *e, const char *id) {
    uint64_t idx;
    if (strlen(id) > FG_ID_BYTES_MAX) return NULL;
    if (!fg_map_get(&e->sale_by_id, fg_hash_str(id, strlen(id)), &idx)) return NULL;
    fg_sale_t *s = e->sales[idx];
    return strcmp(s->def.id, id) == 0 ? s : NULL;
}

const fg_sale_t *fg_engine_sale_get(const fg_engine_t *e, const char *id) {
    return fg__sale_find(e, id);
}

int fg_engine_sale_count(const fg_engine_t *e) {
    return e->sale_count;
}
const fg_sale_t *fg_engine_sale_at(const fg_engine_t *e, int index) {
    return e->sales[index];
}

int fg_engine_sale_pool(const fg_sale_t *s, const char *sku, fg_mcode_t market) {
    for (int i = 0; i < s->def.pool_count; i++) {
        const fg_pool_def_t *p = &s->def.pools[i];
        if (strcmp(p->sku, sku) != 0) continue;
        for (int k = 0; k < p->market_count; k++)
            if (p->markets[k] == market) return i;
    }
    return -1;
}

/* Emits the sale's stored fields. Reserve a change before calling. */
void fg__sale_emit(fg_engine_t *e, fg_sale_t *s) {
    s->version++;
    if (e->restoring) return;
    fg_sale_row_t *copy = malloc(sizeof *copy);
    /* Out of memory after the state changed: the ledger would silently miss the change, so stop
     * here rather than acknowledge something that cannot be stored. */
    FG_ASSERT(copy != NULL);
    *copy = s->def;
    fg__emit(e, &(fg_change_t){.kind = FG_CH_SALE, .u.sale = copy});
}

static fg_err_t check_pools(fg_engine_t *e, const fg_sale_row_t *d) {
    if (d->pool_count < 1 || d->pool_count > FG_POOLS_PER_SALE_MAX)
        return fg__fail(e, FG_ERR_INVALID, "items: between 1 and %d", FG_POOLS_PER_SALE_MAX);
    for (int i = 0; i < d->pool_count; i++) {
        const fg_pool_def_t *p = &d->pools[i];
        if (fg_engine_sku_get(e, p->sku, NULL) == NULL)
            return fg__fail(e, FG_ERR_INVALID, "items[%d].sku: no SKU %s", i, p->sku);
        if (p->stock < 0 || p->stock > FG_STOCK_MAX)
            return fg__fail(e, FG_ERR_INVALID, "items[%d].stock: between 0 and %lld", i,
                            (long long)FG_STOCK_MAX);
        if (p->market_count < 1 || p->market_count > FG_MARKETS_PER_POOL_MAX)
            return fg__fail(e, FG_ERR_INVALID, "items[%d].markets: between 1 and %d", i,
                            FG_MARKETS_PER_POOL_MAX);
        for (int k = 0; k < p->market_count; k++) {
            char code[3];
            fg_mcode_str(p->markets[k], code);
            if (fg_engine_market_get(e, code) == NULL)
                return fg__fail(e, FG_ERR_INVALID, "items[%d].markets[%d]: no market %s", i, k,
                                code);
            for (int j = 0; j <= i; j++) {
                const fg_pool_def_t *q = &d->pools[j];
                if (strcmp(q->sku, p->sku) != 0) continue;
                for (int m = 0; m < (j == i ? k : q->market_count); m++)
                    if (q->markets[m] == p->markets[k])
                        return fg__fail(e, FG_ERR_INVALID,
                                        "items[%d].markets[%d]: %s already sells %s in %s", i, k,
                                        j == i ? "this item" : "another item", p->sku, code);
            }
        }
    }
    return FG_OK;
}

static fg_err_t check_sale(fg_engine_t *e, const fg_sale_row_t *d) {
    if (fg__sale_find(e, d->id) != NULL)
        return fg__fail(e, FG_ERR_INVALID, "id: a sale %s exists", d->id);
    if (e->sale_count >= FG_SALES_MAX)
        return fg__fail(e, FG_ERR_CAPACITY, "at most %d sales", FG_SALES_MAX);
    if (d->closes_at_ms != 0 && d->closes_at_ms <= d->opens_at_ms)
        return fg__fail(e, FG_ERR_INVALID, "closes_at: must be after opens_at");
    if (d->limit_per_buyer < 1 || d->limit_per_buyer > FG_LIMIT_PER_BUYER_MAX)
        return fg__fail(e, FG_ERR_INVALID, "limit_per_buyer: between 1 and %d",
                        FG_LIMIT_PER_BUYER_MAX);
    if (d->hold_ttl_s < FG_HOLD_TTL_S_MIN || d->hold_ttl_s > FG_HOLD_TTL_S_MAX)
        return fg__fail(e, FG_ERR_INVALID, "hold_ttl_s: between %d and %d", FG_HOLD_TTL_S_MIN,
                        FG_HOLD_TTL_S_MAX);
    return check_pools(e, d);
}

static fg_err_t add_sale(fg_engine_t *e, const fg_sale_row_t *def) {
    fg_sale_t *s = calloc(1, sizeof *s);
    if (s == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    s->def = *def;
    s->index = (uint32_t)e->sale_count;
    if (fg_map_put(&e->sale_by_id, fg_hash_str(def->id, strlen(def->id)), s->index) != 0) {
        free(s);
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    }
    e->sales[e->sale_count++] = s;
    fg__sale_emit(e, s);
    return FG_OK;
}

fg_err_t fg_engine_sale_create(fg_engine_t *e, const fg_sale_row_t *def, int64_t now_ms) {
    fg_err_t err = check_sale(e, def);
    if (err != FG_OK) return err;
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_sale_row_t d = *def;
    d.created_at_ms = now_ms;
    d.paused = false;
    d.closed = false;
    return add_sale(e, &d);
}

fg_err_t fg_engine_restore_sale(fg_engine_t *e, const fg_sale_row_t *row) {
    if (fg__sale_find(e, row->id) != NULL)
        return fg__fail(e, FG_ERR_INVALID, "sale %s twice", row->id);
    if (e->sale_count >= FG_SALES_MAX) return fg__fail(e, FG_ERR_CAPACITY, "too many sales");
    return add_sale(e, row);
}

/* Applies an operator's flag change; closing is final. */
static fg_err_t set_flags(fg_engine_t *e, const char *id, int paused, bool close) {
    fg_sale_t *s = fg__sale_find(e, id);
    if (s == NULL) return fg__fail(e, FG_ERR_NOT_FOUND, "no sale %s", id);
    if (s->def.closed) return fg__fail(e, FG_ERR_SALE_NOT_OPEN, "sale %s is closed", id);
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    if (paused >= 0) s->def.paused = paused != 0;
    if (close) s->def.closed = true;
    fg__sale_emit(e, s);
    return FG_OK;
}

fg_err_t fg_engine_sale_pause(fg_engine_t *e, const char *id, int64_t now_ms) {
    return set_flags(e, id, 1, false);
}

fg_err_t fg_engine_sale_resume(fg_engine_t *e, const char *id, int64_t now_ms) {
    return set_flags(e, id, 0, false);
}

fg_err_t fg_engine_sale_close(fg_engine_t *e, const char *id, int64_t now_ms) {
    return set_flags(e, id, -1, true);
}

fg_err_t fg_engine_sale_add_stock(fg_engine_t *e, const char *id, const char *sku,
                                  const char *market, int64_t add, int64_t now_ms) {
    fg_sale_t *s = fg__sale_find(e, id);
    if (s == NULL) return fg__fail(e, FG_ERR_NOT_FOUND, "no sale %s", id);
    if (add < 1 || add > FG_STOCK_MAX)
        return fg__fail(e, FG_ERR_INVALID, "add: between 1 and %lld", (long long)FG_STOCK_MAX);
    int pool = -1, matches = 0;
    for (int i = 0; i < s->def.pool_count; i++) {
        if (strcmp(s->def.pools[i].sku, sku) != 0) continue;
        if (market != NULL && fg_engine_sale_pool(s, sku, fg_mcode(market)) != i) continue;
        pool = i;
        matches++;
    }
    if (matches == 0)
        return fg__fail(e, FG_ERR_INVALID, "sku: %s is not sold in sale %s%s%s", sku, id,
                        market ? " in " : "", market ? market : "");
    if (matches > 1)
        return fg__fail(e, FG_ERR_INVALID, "market: %s has several items; name the market", sku);
    if (s->def.pools[pool].stock + add > FG_STOCK_MAX)
        return fg__fail(e, FG_ERR_INVALID, "add: stock would pass %lld", (long long)FG_STOCK_MAX);
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    s->def.pools[pool].stock += add;
    FG_INVARIANT("I1", fg_pool_available(s, pool) >= 0);
    fg__sale_emit(e, s);
    return FG_OK;
}

const fg_offer_t *fg__sellable(fg_engine_t *e, const fg_sale_t *s, int pool, const char *sku,
                               fg_mcode_t market) {
    char code[3];
    fg_mcode_str(market, code);
    const fg_offer_t *o = fg_engine_offer_get(e, sku, code);
    if (o != NULL && o->blocked) {
        fg__detail(e, "%s", o->reason);
        return NULL;
    }
    if (o == NULL || pool < 0) {
        fg__detail(e, "%s is not offered in %s", sku, code);
        return NULL;
    }
    return o;
}
