/*
 * render.c — JSON answers for markets, products, offers, sales, holds and orders.
 *
 * Runs on the writer thread (it reads the engine). Writes with fg_buf directly rather than
 * building jansson trees: these are on the hot path (a hold's answer is rendered once per hold).
 */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "engine/payment.h"

static const char *const hold_states[] = {"held", "ordered", "released", "expired"};
static const char *const order_states[] = {"pending_payment", "paid", "cancelled"};

void fg__render_market(fg_buf_t *b, const fg_market_t *m) {
    fg_buf_str(b, "{\"code\":");
    fg_buf_json_str(b, m->code);
    fg_buf_json_key(b, "name", true);
    fg_buf_json_str(b, m->name);
    fg_buf_json_key(b, "currency", true);
    fg_buf_json_str(b, m->currency);
    fg_buf_str(b, "}");
}

void fg__render_product_head(fg_buf_t *b, const fg_product_t *p) {
    fg_buf_str(b, "{\"id\":");
    fg_buf_json_str(b, p->id);
    fg_buf_json_key(b, "name", true);
    fg_buf_json_str(b, p->name);
    fg_buf_json_key(b, "specs", true);
    fg_buf_str(b, p->specs_json);
}

void fg__render_product(fg_buf_t *b, const fg_product_t *p) {
    fg__render_product_head(b, p);
    fg_buf_str(b, ",\"skus\":[");
    for (int i = 0; i < p->sku_count; i++) {
        fg_buf_str(b, i ? ",{\"id\":" : "{\"id\":");
        fg_buf_json_str(b, p->skus[i].id);
        fg_buf_json_key(b, "name", true);
        fg_buf_json_str(b, p->skus[i].name);
        fg_buf_json_key(b, "attributes", true);
        fg_buf_str(b, p->skus[i].attributes_json);
        fg_buf_str(b, "}");
    }
    fg_buf_str(b, "]}");
}

void fg__render_offer(fg_buf_t *b, const fg_engine_t *e, const fg_offer_t *o) {
    fg_buf_str(b, "{\"sku\":");
    fg_buf_json_str(b, o->sku);
    fg_buf_json_key(b, "market", true);
    fg_buf_json_str(b, o->market);
    if (o->blocked) {
        fg_buf_str(b, ",\"offered\":false,\"reason\":");
        fg_buf_json_str(b, o->reason);
    } else {
        const fg_market_t *m = fg_engine_market_get(e, o->market);
        fg_buf_printf(
            b, ",\"offered\":true,\"price_minor\":%lld,\"currency\":", (long long)o->price_minor);
        fg_buf_json_str(b, m ? m->currency : "");
    }
    fg_buf_str(b, "}");
}

/* True when `sku` may be bought in `market` (and in `sale`, when given: it has stock there). */
static bool sellable(const fg_engine_t *e, const fg_sale_t *sale, const char *sku,
                     const char *market, const fg_offer_t **offer) {
    const fg_offer_t *o = fg_engine_offer_get(e, sku, market);
    if (o == NULL || o->blocked) return false;
    if (sale != NULL) {
        int pool = fg_engine_sale_pool(sale, sku, fg_mcode(market));
        if (pool < 0 || fg_pool_available(sale, pool) <= 0) return false;
    }
    *offer = o;
    return true;
}

static void render_alt(fg_buf_t *b, const fg_engine_t *e, const fg_product_t *p, const fg_sku_t *s,
                       const fg_offer_t *o, int n) {
    const fg_market_t *m = fg_engine_market_get(e, o->market);
    fg_buf_str(b, n ? ",{\"sku\":" : "{\"sku\":");
    fg_buf_json_str(b, s->id);
    fg_buf_json_key(b, "product", true);
    fg_buf_json_str(b, p->id);
    fg_buf_json_key(b, "name", true);
    fg_buf_json_str(b, s->name);
    fg_buf_printf(b, ",\"price_minor\":%lld,\"currency\":", (long long)o->price_minor);
    fg_buf_json_str(b, m ? m->currency : "");
    fg_buf_str(b, "}");
}

void fg__render_alternatives(fg_buf_t *b, const fg_engine_t *e, const fg_sale_t *sale,
                             const char *product_id, const char *exclude_sku, const char *market) {
    int n = 0;
    fg_buf_str(b, "[");
    /* Two passes: the same product's other SKUs first, then any other product's. */
    for (int pass = 0; pass < 2 && n < FG_ALTERNATIVES_MAX; pass++) {
        for (int i = 0; i < fg_engine_product_count(e) && n < FG_ALTERNATIVES_MAX; i++) {
            const fg_product_t *p = fg_engine_product_at(e, i);
            bool same = product_id != NULL && strcmp(p->id, product_id) == 0;
            if (same != (pass == 0)) continue;
            for (int k = 0; k < p->sku_count && n < FG_ALTERNATIVES_MAX; k++) {
                const fg_offer_t *o = NULL;
                if (strcmp(p->skus[k].id, exclude_sku) == 0) continue;
                if (!sellable(e, sale, p->skus[k].id, market, &o)) continue;
                render_alt(b, e, p, &p->skus[k], o, n++);
            }
        }
    }
    fg_buf_str(b, "]");
}

void fg__render_markets(fg_buf_t *b, const fg_pool_def_t *pool) {
    fg_buf_str(b, "[");
    for (int k = 0; k < pool->market_count; k++) {
        char code[3];
        fg_mcode_str(pool->markets[k], code);
        if (k) fg_buf_str(b, ",");
        fg_buf_json_str(b, code);
    }
    fg_buf_str(b, "]");
}

/* full: the public sale view with its settings; else the compact event view. */
void fg__render_sale(fg_buf_t *b, const fg_engine_t *e, const fg_sale_t *s, int64_t now_ms,
                     bool full) {
    fg_buf_str(b, "{\"id\":");
    fg_buf_json_str(b, s->def.id);
    if (full) {
        fg_buf_json_key(b, "name", true);
        fg_buf_json_str(b, s->def.name);
    }
    fg_buf_json_key(b, "state", true);
    fg_buf_json_str(b, fg_sale_state_name(fg_engine_sale_state(s, now_ms)));
    if (full) {
        fg_buf_json_key(b, "opens_at", true);
        fg_buf_json_time(b, s->def.opens_at_ms);
        fg_buf_json_key(b, "closes_at", true);
        if (s->def.closes_at_ms)
            fg_buf_json_time(b, s->def.closes_at_ms);
        else
            fg_buf_str(b, "null");
        fg_buf_printf(b, ",\"limit_per_buyer\":%d,\"hold_ttl_s\":%d", s->def.limit_per_buyer,
                      s->def.hold_ttl_s);
    }
    fg_buf_str(b, ",\"items\":[");
    for (int i = 0; i < s->def.pool_count; i++) {
        fg_buf_str(b, i ? ",{\"sku\":" : "{\"sku\":");
        fg_buf_json_str(b, s->def.pools[i].sku);
        fg_buf_str(b, ",\"markets\":");
        fg__render_markets(b, &s->def.pools[i]);
        if (full) fg_buf_printf(b, ",\"stock\":%lld", (long long)s->def.pools[i].stock);
        fg_buf_printf(b, ",\"available\":%lld}", (long long)fg_pool_available(s, i));
    }
    fg_buf_str(b, "]}");
}

/* A hold's answer at its longest: names, punctuation and market (110 bytes), three numbers, two
 * quoted ids (plain: no escapes), the longest state name, two quoted times. */
#define HOLD_VIEW_BYTES_MAX 512
_Static_assert(110 + 3 * FG_BUF_I64_BYTES_MAX + 2 * (FG_ID_BYTES_MAX + 2) + 8 +
                       2 * FG_BUF_JSON_TIME_BYTES <=
                   HOLD_VIEW_BYTES_MAX,
               "a hold's answer fits its reservation");

void fg__render_hold_view(fg_buf_t *b, const fg_hold_view_t *v) {
    /* No printf and no strlen of constants: this is every hold's answer. One allocation for
     * the longest answer, so that no piece below grows the buffer. */
    fg_buf_reserve(b, HOLD_VIEW_BYTES_MAX);
    FG_BUF_LIT(b, "{\"id\":\"h_");
    fg_buf_i64(b, (int64_t)v->id);
    FG_BUF_LIT(b, "\",\"sale_id\":");
    fg_buf_json_str(b, v->sale_id);
    FG_BUF_LIT(b, ",\"sku\":");
    fg_buf_json_str(b, v->sku);
    FG_BUF_LIT(b, ",\"market\":\"");
    fg_buf_add(b, v->market, 2);
    FG_BUF_LIT(b, "\",\"quantity\":");
    fg_buf_i64(b, v->quantity);
    FG_BUF_LIT(b, ",\"state\":\"");
    fg_buf_str(b, hold_states[v->state]);
    FG_BUF_LIT(b, "\",\"created_at\":");
    fg_buf_json_time(b, v->created_at_ms);
    FG_BUF_LIT(b, ",\"expires_at\":");
    fg_buf_json_time(b, v->expires_at_ms);
    if (v->order_id) {
        FG_BUF_LIT(b, ",\"order_id\":\"o_");
        fg_buf_i64(b, (int64_t)v->order_id);
        FG_BUF_LIT(b, "\"");
    }
    FG_BUF_LIT(b, "}");
}

void fg__hold_view(const fg_engine_t *e, const fg_hold_t *h, fg_hold_view_t *v) {
    const fg_sale_t *s = fg_engine_sale_at(e, (int)h->sale_index);
    v->id = h->id;
    v->sale_id = s->def.id;
    v->sku = s->def.pools[h->pool_index].sku;
    fg_mcode_str(h->market, v->market);
    v->quantity = h->quantity;
    v->state = h->state;
    v->created_at_ms = h->created_at_ms;
    v->expires_at_ms = h->expires_at_ms;
    v->order_id = h->order_id;
}

void fg__render_hold(fg_buf_t *b, const fg_engine_t *e, const fg_hold_t *h) {
    fg_hold_view_t v;
    fg__hold_view(e, h, &v);
    fg__render_hold_view(b, &v);
}

void fg__render_order(fg_buf_t *b, const fg_order_row_t *o, bool with_buyer, const char *email) {
    char market[3];
    fg_mcode_str(o->market, market);
    fg_buf_printf(b, "{\"id\":\"o_%llu\",\"hold_id\":\"h_%llu\",", (unsigned long long)o->id,
                  (unsigned long long)o->hold_id);
    if (with_buyer) {
        fg_buf_printf(b, "\"buyer_id\":\"b_%llu\",\"email\":", (unsigned long long)o->buyer_id);
        fg_buf_json_str(b, email ? email : "");
        fg_buf_str(b, ",");
    }
    fg_buf_str(b, "\"sale_id\":");
    fg_buf_json_str(b, o->sale_id);
    fg_buf_json_key(b, "sku", true);
    fg_buf_json_str(b, o->sku);
    fg_buf_printf(b,
                  ",\"market\":\"%s\",\"quantity\":%d,\"state\":\"%s\",\"total_minor\":%lld,"
                  "\"currency\":\"%s\",\"payment\":{\"method\":\"%s\"},\"shipping\":",
                  market, o->quantity, order_states[o->state], (long long)o->total_minor,
                  o->currency, fg_payment_provider_of((fg_pay_method_t)o->method)->name);
    fg_buf_str(b, o->shipping_json);
    fg_buf_json_key(b, "created_at", true);
    fg_buf_json_time(b, o->created_at_ms);
    fg_buf_json_key(b, "updated_at", true);
    fg_buf_json_time(b, o->updated_at_ms);
    fg_buf_str(b, "}");
}
