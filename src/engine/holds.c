/*
 * holds.c — holds (a unit reserved for a buyer until it expires), orders made from them, payment
 * verdicts, and expiry.
 *
 * Units move between three counters per pool: available (derived), held and sold. A hold adds to
 * held; an instant order or a paid webhook order moves it to sold; release, expiry and a failed
 * or late payment take it from held. Each move happens in exactly one place below, and each
 * asserts I1 (no counter below zero, none above stock) and I2 (the buyer's limit).
 *
 * Active holds (held, or ordered with payment pending) sit in a min-heap by expiry time.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/payment.h"

/* ---------------------------------------------------------------- expiry heap */

static void heap_swap(fg_engine_t *e, size_t a, size_t b) {
    fg_hold_t *t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->heap[a]->heap_pos = (int32_t)a;
    e->heap[b]->heap_pos = (int32_t)b;
}

static void heap_up(fg_engine_t *e, size_t i) {
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (e->heap[parent]->expires_at_ms <= e->heap[i]->expires_at_ms) break;
        heap_swap(e, i, parent);
        i = parent;
    }
}

static void heap_down(fg_engine_t *e, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->heap_len && e->heap[l]->expires_at_ms < e->heap[m]->expires_at_ms) m = l;
        if (r < e->heap_len && e->heap[r]->expires_at_ms < e->heap[m]->expires_at_ms) m = r;
        if (m == i) return;
        heap_swap(e, i, m);
        i = m;
    }
}

static bool heap_reserve(fg_engine_t *e) {
    if (e->heap_len < e->heap_cap) return true;
    size_t cap = e->heap_cap ? e->heap_cap * 2 : 1024;
    fg_hold_t **h = realloc(e->heap, cap * sizeof *h);
    if (h == NULL) return false;
    e->heap = h;
    e->heap_cap = cap;
    return true;
}

static void heap_push(fg_engine_t *e, fg_hold_t *h) {
    FG_ASSERT(e->heap_len < e->heap_cap); /* heap_reserve came first */
    h->heap_pos = (int32_t)e->heap_len;
    e->heap[e->heap_len++] = h;
    heap_up(e, e->heap_len - 1);
}

static void heap_remove(fg_engine_t *e, fg_hold_t *h) {
    FG_ASSERT(h->heap_pos >= 0 && (size_t)h->heap_pos < e->heap_len);
    size_t i = (size_t)h->heap_pos;
    e->heap_len--;
    if (i != e->heap_len) {
        e->heap[i] = e->heap[e->heap_len];
        e->heap[i]->heap_pos = (int32_t)i;
        heap_down(e, i);
        heap_up(e, i);
    }
    h->heap_pos = -1;
}

int64_t fg_engine_next_expiry_ms(const fg_engine_t *e) {
    return e->heap_len ? e->heap[0]->expires_at_ms : INT64_MAX;
}

uint64_t fg_engine_active_holds(const fg_engine_t *e) {
    return e->heap_len;
}
uint64_t fg_engine_order_count(const fg_engine_t *e) {
    return e->order_count;
}

/* ---------------------------------------------------------------- records */

void fg__hold_emit(fg_engine_t *e, const fg_hold_t *h) {
    if (e->restoring) return;
    fg_change_t c = {.kind = FG_CH_HOLD};
    fg_hold_row_t *r = &c.u.hold;
    r->id = h->id;
    r->buyer_id = h->buyer_id;
    memcpy(r->sale_id, e->sales[h->sale_index]->def.id, sizeof r->sale_id);
    r->pool_index = h->pool_index;
    r->market = h->market;
    r->quantity = h->quantity;
    r->state = h->state;
    r->created_at_ms = h->created_at_ms;
    r->expires_at_ms = h->expires_at_ms;
    r->ended_at_ms = h->ended_at_ms;
    r->order_id = h->order_id;
    fg__emit(e, &c);
}

void fg__order_emit(fg_engine_t *e, const fg_order_t *o) {
    if (e->restoring) return;
    fg__emit(e, &(fg_change_t){.kind = FG_CH_ORDER, .u.order = o->row});
}

static fg_hold_t *hold_alloc(fg_engine_t *e) {
    size_t slab = e->hold_count / FG_HOLD_SLAB_COUNT;
    if (slab == e->hold_slab_count) {
        if (e->hold_slab_count == e->hold_slab_cap) {
            size_t cap = e->hold_slab_cap ? e->hold_slab_cap * 2 : 16;
            fg_hold_t **s = realloc(e->hold_slabs, cap * sizeof *s);
            if (s == NULL) return NULL;
            e->hold_slabs = s;
            e->hold_slab_cap = cap;
        }
        fg_hold_t *fresh = calloc(FG_HOLD_SLAB_COUNT, sizeof(fg_hold_t));
        if (fresh == NULL) return NULL;
        e->hold_slabs[slab] = fresh; /* owned by the engine; fg_engine_free frees it */
        e->hold_slab_count++;
    }
    return &e->hold_slabs[slab][e->hold_count % FG_HOLD_SLAB_COUNT];
}

/* Places a hold object (new or restored). Needs room in the map and the heap first. */
static fg_err_t hold_insert(fg_engine_t *e, const fg_hold_t *src, fg_hold_t **out) {
    if (e->hold_count >= FG_HOLDS_MAX)
        return fg__fail(e, FG_ERR_CAPACITY, "at most %d holds", FG_HOLDS_MAX);
    bool active =
        src->state == FG_HOLD_HELD || (src->state == FG_HOLD_ORDERED && src->ended_at_ms == 0);
    if (active && !heap_reserve(e)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_hold_t *h = hold_alloc(e);
    if (h == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    *h = *src;
    h->heap_pos = -1;
    if (fg_map_put(&e->hold_by_id, h->id, (uint64_t)(uintptr_t)h) != 0)
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    e->hold_count++;
    if (active) heap_push(e, h);
    if (h->id >= e->next_hold_id) e->next_hold_id = h->id + 1;
    *out = h;
    return FG_OK;
}

static fg_hold_t *hold_find(const fg_engine_t *e, uint64_t id) {
    uint64_t v;
    if (!fg_map_get(&e->hold_by_id, id, &v)) return NULL;
    return (fg_hold_t *)(uintptr_t)v;
}

const fg_hold_t *fg_engine_hold_get(const fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id) {
    fg_hold_t *h = hold_find(e, hold_id);
    return h != NULL && h->buyer_id == buyer_id ? h : NULL;
}

static fg_order_t *order_find(const fg_engine_t *e, uint64_t id) {
    uint64_t v;
    if (!fg_map_get(&e->order_by_id, id, &v)) return NULL;
    return (fg_order_t *)(uintptr_t)v;
}

const fg_order_t *fg_engine_order_get(const fg_engine_t *e, uint64_t buyer_id, uint64_t order_id) {
    fg_order_t *o = order_find(e, order_id);
    return o != NULL && (buyer_id == 0 || o->row.buyer_id == buyer_id) ? o : NULL;
}

const fg_order_t *fg_engine_buyer_orders(const fg_engine_t *e, uint64_t buyer_id) {
    uint64_t v;
    if (!fg_map_get(&e->buyer_orders, buyer_id, &v)) return NULL;
    return (const fg_order_t *)(uintptr_t)v;
}

/* ---------------------------------------------------------------- unit moves */

/* Units of an active hold go back to available (release, expiry, failed payment): I4. */
static void units_return(fg_engine_t *e, fg_hold_t *h, fg_hold_state_t end, int64_t now_ms) {
    fg_sale_t *s = e->sales[h->sale_index];
    FG_INVARIANT("I4", h->heap_pos >= 0);
    heap_remove(e, h);
    s->held[h->pool_index] -= h->quantity;
    FG_INVARIANT("I1", s->held[h->pool_index] >= 0);
    FG_INVARIANT("I1", fg_pool_available(s, h->pool_index) <= s->def.pools[h->pool_index].stock);
    fg__counter_add(e, h->sale_index, h->buyer_id, -h->quantity, 0);
    h->state = (uint8_t)end;
    h->ended_at_ms = now_ms;
    s->version++;
}

/* Units of an active hold become sold (instant order, paid webhook order). */
static void units_sell(fg_engine_t *e, fg_hold_t *h, int64_t now_ms) {
    fg_sale_t *s = e->sales[h->sale_index];
    FG_INVARIANT("I4", h->heap_pos >= 0);
    heap_remove(e, h);
    s->held[h->pool_index] -= h->quantity;
    s->sold[h->pool_index] += h->quantity;
    FG_INVARIANT("I1", s->held[h->pool_index] >= 0);
    FG_INVARIANT("I1", s->sold[h->pool_index] <= s->def.pools[h->pool_index].stock);
    fg__counter_add(e, h->sale_index, h->buyer_id, -h->quantity, h->quantity);
    if (h->ended_at_ms == 0) h->ended_at_ms = now_ms;
    s->version++;
}

/* Ends one active hold whose time came; a pending order on it is cancelled. */
static void expire_hold(fg_engine_t *e, fg_hold_t *h, int64_t now_ms) {
    fg_order_t *o = h->order_id ? order_find(e, h->order_id) : NULL;
    units_return(e, h, FG_HOLD_EXPIRED, now_ms);
    e->sales[h->sale_index]->expired_total++;
    fg__hold_emit(e, h);
    if (o != NULL) {
        FG_ASSERT(o->row.state == FG_ORDER_PENDING_PAYMENT);
        o->row.state = FG_ORDER_CANCELLED;
        o->row.updated_at_ms = now_ms;
        fg__order_emit(e, o);
    }
}

int fg_engine_tick(fg_engine_t *e, int64_t now_ms) {
    int n = 0;
    while (e->heap_len > 0 && e->heap[0]->expires_at_ms <= now_ms) {
        if (!fg__reserve_changes(e, 2)) break; /* try again next tick */
        expire_hold(e, e->heap[0], now_ms);
        n++;
    }
    return n;
}

/* Expires the hold first when its time has come, so every path sees it ended. */
static bool expire_if_due(fg_engine_t *e, fg_hold_t *h, int64_t now_ms) {
    if (h->heap_pos < 0 || h->expires_at_ms > now_ms) return false;
    if (!fg__reserve_changes(e, 2)) return false;
    expire_hold(e, h, now_ms);
    return true;
}

/* ---------------------------------------------------------------- holds */

/* Checks that a buyer may hold `quantity` of `sku` in `market` now; sets *pool. */
static fg_err_t check_hold(fg_engine_t *e, const fg_sale_t *s, uint64_t buyer_id, const char *sku,
                           fg_mcode_t market, int32_t quantity, int64_t now_ms, int *pool) {
    fg_mcode_t home = fg_engine_buyer_market(e, buyer_id);
    FG_ASSERT(home != 0); /* authenticated before */
    char code[3], home_code[3];
    fg_mcode_str(market, code);
    fg_mcode_str(home, home_code);
    if (quantity < 1 || quantity > FG_LIMIT_PER_BUYER_MAX)
        return fg__fail(e, FG_ERR_INVALID, "quantity: between 1 and %d", FG_LIMIT_PER_BUYER_MAX);
    if (market != home)
        return fg__fail(e, FG_ERR_INVALID, "market: must be your market %s, not %s", home_code,
                        code);
    bool in_sale = false;
    for (int i = 0; i < s->def.pool_count; i++)
        in_sale |= strcmp(s->def.pools[i].sku, sku) == 0;
    if (!in_sale)
        return fg__fail(e, FG_ERR_INVALID, "sku: %s is not sold in sale %s", sku, s->def.id);
    *pool = fg_engine_sale_pool(s, sku, market);
    if (fg__sellable(e, s, *pool, sku, market) == NULL) return FG_ERR_NOT_OFFERED;
    fg_sale_state_t st = fg_engine_sale_state(s, now_ms);
    if (st == FG_SALE_SOLD_OUT)
        return fg__fail(e, FG_ERR_SOLD_OUT, "sale %s is sold out", s->def.id);
    if (st != FG_SALE_OPEN)
        return fg__fail(e, FG_ERR_SALE_NOT_OPEN, "sale %s is %s", s->def.id,
                        fg_sale_state_name(st));
    uint32_t held, bought;
    fg__counter_get(e, s->index, buyer_id, &held, &bought);
    if ((int64_t)held + bought + quantity > s->def.limit_per_buyer)
        return fg__fail(e, FG_ERR_LIMIT_REACHED, "limit of %d per buyer: %u held, %u bought",
                        s->def.limit_per_buyer, held, bought);
    if (fg_pool_available(s, *pool) < quantity)
        return fg__fail(e, FG_ERR_SOLD_OUT, "%s is sold out in %s", sku, code);
    return FG_OK;
}

fg_err_t fg_engine_hold(fg_engine_t *e, uint64_t buyer_id, const char *sale_id, const char *sku,
                        fg_mcode_t market, int32_t quantity, int64_t now_ms,
                        const fg_hold_t **out) {
    fg_sale_t *s = fg__sale_find(e, sale_id);
    if (s == NULL) return fg__fail(e, FG_ERR_NOT_FOUND, "no sale %s", sale_id);
    int pool = -1;
    fg_err_t err = check_hold(e, s, buyer_id, sku, market, quantity, now_ms, &pool);
    if (err != FG_OK) return err;
    if (!fg__reserve_changes(e, 1) || !fg__counter_touch(e, s->index, buyer_id))
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_hold_t proto = {
        .id = e->next_hold_id,
        .buyer_id = buyer_id,
        .sale_index = s->index,
        .pool_index = (uint16_t)pool,
        .market = market,
        .quantity = quantity,
        .state = FG_HOLD_HELD,
        .created_at_ms = now_ms,
        .expires_at_ms = now_ms + (int64_t)s->def.hold_ttl_s * 1000,
    };
    fg_hold_t *h = NULL;
    err = hold_insert(e, &proto, &h);
    if (err != FG_OK) return err;
    s->held[pool] += quantity;
    FG_INVARIANT("I1", fg_pool_available(s, pool) >= 0);
    fg__counter_add(e, s->index, buyer_id, quantity, 0);
    s->holds_total++;
    s->version++;
    fg__hold_emit(e, h);
    *out = h;
    return FG_OK;
}

/* Finds the buyer's hold and brings its expiry up to date. */
static fg_err_t active_hold(fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id, int64_t now_ms,
                            fg_hold_t **out) {
    fg_hold_t *h = hold_find(e, hold_id);
    if (h == NULL || h->buyer_id != buyer_id)
        return fg__fail(e, FG_ERR_NOT_FOUND, "no hold h_%llu", (unsigned long long)hold_id);
    expire_if_due(e, h, now_ms);
    *out = h;
    if (h->state == FG_HOLD_EXPIRED) return fg__fail(e, FG_ERR_HOLD_EXPIRED, "hold expired");
    if (h->state != FG_HOLD_HELD)
        return fg__fail(e, FG_ERR_HOLD_NOT_ACTIVE, "hold is %s",
                        h->state == FG_HOLD_ORDERED ? "ordered" : "released");
    return FG_OK;
}

fg_err_t fg_engine_hold_release(fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id, int64_t now_ms,
                                const fg_hold_t **out) {
    fg_hold_t *h = NULL;
    fg_err_t err = active_hold(e, buyer_id, hold_id, now_ms, &h);
    if (err != FG_OK) return err;
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    units_return(e, h, FG_HOLD_RELEASED, now_ms);
    e->sales[h->sale_index]->released_total++;
    fg__hold_emit(e, h);
    *out = h;
    return FG_OK;
}

/* ---------------------------------------------------------------- orders */

static fg_err_t check_order(fg_engine_t *e, const fg_hold_t *h, const char *ship_country,
                            int64_t now_ms, const fg_offer_t **offer) {
    fg_sale_t *s = e->sales[h->sale_index];
    char code[3];
    fg_mcode_str(h->market, code);
    if (fg_engine_sale_state(s, now_ms) == FG_SALE_CLOSED)
        return fg__fail(e, FG_ERR_SALE_NOT_OPEN, "sale %s is closed", s->def.id);
    if (strcmp(ship_country, code) != 0)
        return fg__fail(e, FG_ERR_INVALID, "shipping.country: must be %s, the market of the hold",
                        code);
    const char *sku = s->def.pools[h->pool_index].sku;
    *offer = fg__sellable(e, s, fg_engine_sale_pool(s, sku, h->market), sku, h->market);
    if (*offer == NULL) return FG_ERR_NOT_OFFERED;
    return FG_OK;
}

static fg_err_t order_insert(fg_engine_t *e, fg_order_t *o) {
    uint64_t prev = 0;
    fg_map_get(&e->buyer_orders, o->row.buyer_id, &prev);
    if (fg_map_put(&e->order_by_id, o->row.id, (uint64_t)(uintptr_t)o) != 0)
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    if (fg_map_put(&e->buyer_orders, o->row.buyer_id, (uint64_t)(uintptr_t)o) != 0) {
        fg_map_del(&e->order_by_id, o->row.id);
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    }
    o->next_of_buyer = (fg_order_t *)(uintptr_t)prev;
    e->order_count++;
    if (o->row.id >= e->next_order_id) e->next_order_id = o->row.id + 1;
    return FG_OK;
}

static fg_order_t *order_new(fg_engine_t *e, const fg_hold_t *h, const fg_offer_t *offer,
                             const char *shipping_json, fg_pay_method_t method, int64_t now_ms) {
    fg_order_t *o = calloc(1, sizeof *o);
    char *ship = strdup(shipping_json);
    if (o == NULL || ship == NULL) {
        free(o);
        free(ship);
        return NULL;
    }
    const fg_sale_t *s = e->sales[h->sale_index];
    const fg_market_t *m = fg_engine_market_get(e, offer->market);
    FG_ASSERT(m != NULL);
    fg_order_row_t *r = &o->row;
    r->id = e->next_order_id;
    r->hold_id = h->id;
    r->buyer_id = h->buyer_id;
    memcpy(r->sale_id, s->def.id, sizeof r->sale_id);
    memcpy(r->sku, s->def.pools[h->pool_index].sku, sizeof r->sku);
    r->market = h->market;
    r->quantity = h->quantity;
    r->total_minor = offer->price_minor * h->quantity;
    memcpy(r->currency, m->currency, sizeof r->currency);
    r->state = (uint8_t)fg_payment_provider_of(method)->initial_state;
    r->method = (uint8_t)method;
    r->created_at_ms = r->updated_at_ms = now_ms;
    r->shipping_json = ship;
    return o;
}

fg_err_t fg_engine_order(fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id,
                         const char *shipping_json, const char *ship_country,
                         fg_pay_method_t method, int64_t now_ms, const fg_order_t **out) {
    fg_hold_t *h = NULL;
    fg_err_t err = active_hold(e, buyer_id, hold_id, now_ms, &h);
    if (err != FG_OK) return err;
    const fg_offer_t *offer = NULL;
    err = check_order(e, h, ship_country, now_ms, &offer);
    if (err != FG_OK) return err;
    if (!fg__reserve_changes(e, 2)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_order_t *o = order_new(e, h, offer, shipping_json, method, now_ms);
    if (o == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    err = order_insert(e, o);
    if (err != FG_OK) {
        free((char *)o->row.shipping_json);
        free(o);
        return err;
    }
    h->state = FG_HOLD_ORDERED;
    h->order_id = o->row.id;
    e->sales[h->sale_index]->orders_total++;
    if (o->row.state == FG_ORDER_PAID) { /* the provider paid at once */
        h->ended_at_ms = now_ms;
        units_sell(e, h, now_ms);
    }
    fg__hold_emit(e, h);
    fg__order_emit(e, o);
    *out = o;
    return FG_OK;
}

fg_err_t fg_engine_payment(fg_engine_t *e, uint64_t order_id, bool succeeded, int64_t now_ms,
                           const fg_order_t **out) {
    fg_order_t *o = order_find(e, order_id);
    if (o == NULL)
        return fg__fail(e, FG_ERR_NOT_FOUND, "no order o_%llu", (unsigned long long)order_id);
    *out = o;
    fg_hold_t *h = hold_find(e, o->row.hold_id);
    FG_ASSERT(h != NULL);
    expire_if_due(e, h, now_ms);
    if (o->row.state == FG_ORDER_PAID && succeeded) return FG_OK;
    if (o->row.state == FG_ORDER_CANCELLED && !succeeded) return FG_OK;
    if (o->row.state != FG_ORDER_PENDING_PAYMENT) {
        if (h->state == FG_HOLD_EXPIRED)
            return fg__fail(e, FG_ERR_HOLD_EXPIRED, "the hold expired before payment");
        return fg__fail(e, FG_ERR_HOLD_NOT_ACTIVE, "order is %s",
                        o->row.state == FG_ORDER_PAID ? "paid" : "cancelled");
    }
    if (!fg__reserve_changes(e, 2)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    if (succeeded) {
        units_sell(e, h, now_ms);
        o->row.state = FG_ORDER_PAID;
    } else {
        units_return(e, h, FG_HOLD_RELEASED, now_ms);
        e->sales[h->sale_index]->released_total++;
        o->row.state = FG_ORDER_CANCELLED;
    }
    o->row.updated_at_ms = now_ms;
    fg__hold_emit(e, h);
    fg__order_emit(e, o);
    return FG_OK;
}

/* ---------------------------------------------------------------- restore */

fg_err_t fg_engine_restore_hold(fg_engine_t *e, const fg_hold_row_t *row) {
    fg_sale_t *s = fg__sale_find(e, row->sale_id);
    if (s == NULL || row->pool_index >= s->def.pool_count || row->quantity < 1 ||
        row->state > FG_HOLD_EXPIRED || row->id == 0 || hold_find(e, row->id) != NULL ||
        fg_engine_buyer_market(e, row->buyer_id) == 0)
        return fg__fail(e, FG_ERR_INVALID, "hold %llu does not fit the ledger's sales/buyers",
                        (unsigned long long)row->id);
    if (!fg__counter_touch(e, s->index, row->buyer_id))
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_hold_t proto = {
        .id = row->id,
        .buyer_id = row->buyer_id,
        .sale_index = s->index,
        .pool_index = row->pool_index,
        .market = row->market,
        .quantity = row->quantity,
        .state = row->state,
        .created_at_ms = row->created_at_ms,
        .expires_at_ms = row->expires_at_ms,
        .ended_at_ms = row->ended_at_ms,
        .order_id = row->order_id,
    };
    /* An ordered hold's activity depends on its order's payment: restore it as active when it
     * has no end time (pending payment); restore_order settles paid ones. */
    fg_hold_t *h = NULL;
    fg_err_t err = hold_insert(e, &proto, &h);
    if (err != FG_OK) return err;
    s->holds_total++;
    if (h->state == FG_HOLD_EXPIRED) s->expired_total++;
    if (h->state == FG_HOLD_RELEASED) s->released_total++;
    if (h->heap_pos >= 0) {
        s->held[h->pool_index] += h->quantity;
        uint32_t held, bought;
        fg__counter_get(e, s->index, h->buyer_id, &held, &bought);
        if ((int64_t)held + bought + h->quantity > s->def.limit_per_buyer)
            return fg__fail(e, FG_ERR_INVALID, "hold %llu passes the buyer's limit (I2)",
                            (unsigned long long)row->id);
        fg__counter_add(e, s->index, h->buyer_id, h->quantity, 0);
        if (fg_pool_available(s, h->pool_index) < 0)
            return fg__fail(e, FG_ERR_INVALID, "hold %llu oversells its pool (I1)",
                            (unsigned long long)row->id);
    }
    return FG_OK;
}

fg_err_t fg_engine_restore_order(fg_engine_t *e, const fg_order_row_t *row) {
    fg_hold_t *h = hold_find(e, row->hold_id);
    if (h == NULL || h->order_id != row->id || h->buyer_id != row->buyer_id ||
        order_find(e, row->id) != NULL || row->state > FG_ORDER_CANCELLED)
        return fg__fail(e, FG_ERR_INVALID, "order %llu does not match its hold",
                        (unsigned long long)row->id);
    fg_sale_t *s = e->sales[h->sale_index];
    /* Every check comes before any change: a refused row stays with the caller. */
    if (row->state == FG_ORDER_CANCELLED && h->heap_pos >= 0)
        return fg__fail(e, FG_ERR_INVALID, "cancelled order %llu has an active hold",
                        (unsigned long long)row->id);
    /* A pending order keeps its hold's units until payment or expiry: an ended hold under it
     * would be sold or released a second time at payment (I4). */
    if (row->state == FG_ORDER_PENDING_PAYMENT && h->heap_pos < 0)
        return fg__fail(e, FG_ERR_INVALID, "pending order %llu has an ended hold",
                        (unsigned long long)row->id);
    if (row->state == FG_ORDER_PAID) {
        uint32_t held, bought;
        fg__counter_get(e, s->index, h->buyer_id, &held, &bought);
        int64_t held_after = (int64_t)held - (h->heap_pos >= 0 ? h->quantity : 0);
        int64_t avail_after = fg_pool_available(s, h->pool_index) +
                              (h->heap_pos >= 0 ? h->quantity : 0) - h->quantity;
        if (held_after + bought + h->quantity > s->def.limit_per_buyer || avail_after < 0)
            return fg__fail(e, FG_ERR_INVALID, "order %llu breaks I1 or I2",
                            (unsigned long long)row->id);
    }
    fg_order_t *o = calloc(1, sizeof *o);
    if (o == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    o->row = *row;
    fg_err_t err = order_insert(e, o);
    if (err != FG_OK) {
        free(o);
        return err;
    }
    s->orders_total++;
    if (row->state == FG_ORDER_PAID) {
        /* The hold row says ordered; its units are sold, not held. */
        if (h->heap_pos >= 0) {
            heap_remove(e, h);
            s->held[h->pool_index] -= h->quantity;
            fg__counter_add(e, s->index, h->buyer_id, -h->quantity, 0);
        }
        s->sold[h->pool_index] += h->quantity;
        fg__counter_add(e, s->index, h->buyer_id, 0, h->quantity);
    }
    return FG_OK;
}
