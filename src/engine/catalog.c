/*
 * catalog.c — markets, products with their SKUs, and offers (a SKU in a market: a price, or
 * blocked with a reason).
 *
 * Catalog objects are immutable once published. A PUT publishes a new object and retires the
 * old one (kept until the engine is freed), so change records and readers may hold pointers to
 * them without copies. The catalog is small and changes rarely; this trades a little memory for
 * no copying on the hot path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

/* ---------------------------------------------------------------- markets */

fg_err_t fg_engine_market_put(fg_engine_t *e, const fg_market_t *m, bool *created) {
    fg_mcode_t code = fg_mcode(m->code);
    uint64_t idx = 0;
    bool exists = fg_map_get(&e->market_by_code, code, &idx);
    if (!exists && e->market_count >= FG_MARKETS_MAX)
        return fg__fail(e, FG_ERR_CAPACITY, "at most %d markets", FG_MARKETS_MAX);
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_market_t *copy = malloc(sizeof *copy);
    if (copy == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    *copy = *m;
    if (exists) {
        if (!fg__retire(e, e->markets[idx], false)) {
            free(copy);
            return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        }
        e->markets[idx] = copy;
    } else {
        if (fg_map_put(&e->market_by_code, code, (uint64_t)e->market_count) != 0) {
            free(copy);
            return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        }
        e->markets[e->market_count++] = copy;
    }
    *created = !exists;
    fg__emit(e, &(fg_change_t){.kind = FG_CH_MARKET, .u.market = copy});
    return FG_OK;
}

const fg_market_t *fg_engine_market_get(const fg_engine_t *e, const char *code) {
    if (strlen(code) != 2) return NULL;
    uint64_t idx;
    if (!fg_map_get(&e->market_by_code, fg_mcode(code), &idx)) return NULL;
    return e->markets[idx];
}

int fg_engine_market_count(const fg_engine_t *e) {
    return e->market_count;
}
const fg_market_t *fg_engine_market_at(const fg_engine_t *e, int i) {
    return e->markets[i];
}

/* ---------------------------------------------------------------- products */

/* True when some sale sells this SKU: such a SKU cannot leave its product. */
static bool sku_in_sale(const fg_engine_t *e, const char *sku) {
    for (int i = 0; i < e->sale_count; i++)
        for (int k = 0; k < e->sales[i]->def.pool_count; k++)
            if (strcmp(e->sales[i]->def.pools[k].sku, sku) == 0) return true;
    return false;
}

static bool product_has_sku(const fg_product_t *p, const char *sku) {
    for (int i = 0; i < p->sku_count; i++)
        if (strcmp(p->skus[i].id, sku) == 0) return true;
    return false;
}

/* Checks that the new SKU set takes no SKU of another product and drops none that is on sale. */
static fg_err_t check_product_skus(fg_engine_t *e, const fg_product_t *p, const fg_product_t *old) {
    if (p->sku_count < 1 || p->sku_count > FG_SKUS_PER_PRODUCT_MAX)
        return fg__fail(e, FG_ERR_INVALID, "skus: between 1 and %d", FG_SKUS_PER_PRODUCT_MAX);
    for (int i = 0; i < p->sku_count; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(p->skus[i].id, p->skus[j].id) == 0)
                return fg__fail(e, FG_ERR_INVALID, "skus[%d].id: %s appears twice", i,
                                p->skus[i].id);
        const fg_product_t *owner = NULL;
        if (fg_engine_sku_get(e, p->skus[i].id, &owner) != NULL && strcmp(owner->id, p->id) != 0)
            return fg__fail(e, FG_ERR_INVALID, "skus[%d].id: %s belongs to product %s", i,
                            p->skus[i].id, owner->id);
    }
    if (old != NULL)
        for (int i = 0; i < old->sku_count; i++)
            if (!product_has_sku(p, old->skus[i].id) && sku_in_sale(e, old->skus[i].id))
                return fg__fail(e, FG_ERR_INVALID, "skus: %s is in a sale and cannot be removed",
                                old->skus[i].id);
    return FG_OK;
}

static int index_skus(fg_engine_t *e, const fg_product_t *p, int pidx) {
    for (int i = 0; i < p->sku_count; i++) {
        uint64_t h = fg_hash_str(p->skus[i].id, strlen(p->skus[i].id));
        if (fg_map_put(&e->sku_by_id, h, ((uint64_t)pidx << 16) | (uint64_t)i) != 0) return -1;
    }
    return 0;
}

fg_err_t fg_engine_product_put(fg_engine_t *e, fg_product_t *p, bool *created) {
    uint64_t h = fg_hash_str(p->id, strlen(p->id));
    uint64_t idx = 0;
    bool exists = fg_map_get(&e->product_by_id, h, &idx);
    const fg_product_t *old = exists ? e->products[idx] : NULL;
    if (!exists && e->product_count >= FG_PRODUCTS_MAX)
        return fg__fail(e, FG_ERR_CAPACITY, "at most %d products", FG_PRODUCTS_MAX);
    fg_err_t err = check_product_skus(e, p, old);
    if (err != FG_OK) return err;
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_product_t *copy = malloc(sizeof *copy);
    if (copy == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    *copy = *p;
    int pidx = exists ? (int)idx : e->product_count;
    if ((exists && !fg__retire(e, e->products[idx], true)) ||
        (!exists && fg_map_put(&e->product_by_id, h, (uint64_t)pidx) != 0)) {
        free(copy);
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    }
    if (old != NULL)
        for (int i = 0; i < old->sku_count; i++)
            fg_map_del(&e->sku_by_id, fg_hash_str(old->skus[i].id, strlen(old->skus[i].id)));
    e->products[pidx] = copy;
    if (!exists) e->product_count++;
    /* The index grows by at most FG_SKUS_PER_PRODUCT_MAX entries; running out of memory here
     * would leave the catalog half-indexed, which is a state we refuse to continue in. */
    FG_ASSERT(index_skus(e, copy, pidx) == 0);
    memset(p, 0, sizeof *p); /* ownership moved */
    *created = !exists;
    fg__emit(e, &(fg_change_t){.kind = FG_CH_PRODUCT, .u.product = copy});
    return FG_OK;
}

const fg_product_t *fg_engine_product_get(const fg_engine_t *e, const char *id) {
    uint64_t idx;
    if (!fg_map_get(&e->product_by_id, fg_hash_str(id, strlen(id)), &idx)) return NULL;
    return strcmp(e->products[idx]->id, id) == 0 ? e->products[idx] : NULL;
}

int fg_engine_product_count(const fg_engine_t *e) {
    return e->product_count;
}
const fg_product_t *fg_engine_product_at(const fg_engine_t *e, int i) {
    return e->products[i];
}

const fg_sku_t *fg_engine_sku_get(const fg_engine_t *e, const char *sku,
                                  const fg_product_t **product) {
    uint64_t v;
    if (!fg_map_get(&e->sku_by_id, fg_hash_str(sku, strlen(sku)), &v)) return NULL;
    const fg_product_t *p = e->products[v >> 16];
    const fg_sku_t *s = &p->skus[v & 0xffff];
    if (strcmp(s->id, sku) != 0) return NULL;
    if (product) *product = p;
    return s;
}

/* ---------------------------------------------------------------- offers */

/* hash("<sku>/<market>"); callers have checked both lengths. No snprintf: every hold asks. */
static uint64_t offer_key(const char *sku, const char *market) {
    char tmp[FG_ID_BYTES_MAX + 8];
    size_t n = strlen(sku), m = strlen(market);
    FG_ASSERT(n <= FG_ID_BYTES_MAX && m <= 2);
    memcpy(tmp, sku, n);
    tmp[n] = '/';
    memcpy(tmp + n + 1, market, m);
    return fg_hash_str(tmp, n + 1 + m);
}

fg_err_t fg_engine_offer_put(fg_engine_t *e, const fg_offer_t *o, bool *created) {
    if (fg_engine_sku_get(e, o->sku, NULL) == NULL)
        return fg__fail(e, FG_ERR_NOT_FOUND, "no SKU %s", o->sku);
    if (fg_engine_market_get(e, o->market) == NULL)
        return fg__fail(e, FG_ERR_NOT_FOUND, "no market %s", o->market);
    uint64_t key = offer_key(o->sku, o->market);
    uint64_t idx = 0;
    bool exists = fg_map_get(&e->offer_by_key, key, &idx);
    if (!exists && e->offer_count >= FG_SKUS_MAX * 4)
        return fg__fail(e, FG_ERR_CAPACITY, "too many offers");
    if (!exists && e->offer_count == e->offer_cap) {
        int cap = e->offer_cap ? e->offer_cap * 2 : 64;
        fg_offer_t **a = realloc(e->offers, (size_t)cap * sizeof *a);
        if (a == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        e->offers = a;
        e->offer_cap = cap;
    }
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_offer_t *copy = malloc(sizeof *copy);
    if (copy == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    *copy = *o;
    if (exists) {
        if (!fg__retire(e, e->offers[idx], false)) {
            free(copy);
            return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        }
        e->offers[idx] = copy;
    } else {
        if (fg_map_put(&e->offer_by_key, key, (uint64_t)e->offer_count) != 0) {
            free(copy);
            return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        }
        e->offers[e->offer_count++] = copy;
    }
    if (created) *created = !exists;
    fg__emit(e, &(fg_change_t){.kind = FG_CH_OFFER, .u.offer = copy});
    return FG_OK;
}

const fg_offer_t *fg_engine_offer_get(const fg_engine_t *e, const char *sku, const char *market) {
    uint64_t idx;
    if (strlen(sku) > FG_ID_BYTES_MAX || strlen(market) != 2) return NULL;
    if (!fg_map_get(&e->offer_by_key, offer_key(sku, market), &idx)) return NULL;
    const fg_offer_t *o = e->offers[idx];
    return strcmp(o->sku, sku) == 0 && strcmp(o->market, market) == 0 ? o : NULL;
}
