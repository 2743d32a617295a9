/*
 * catalog.c — markets, products and offers: the operator's PUTs and the buyers' reads.
 */
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "util/check.h"

/* ---------------------------------------------------------------- reads */

static void exec_markets(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg_buf_str(&b, "{\"markets\":[");
    for (int i = 0; i < fg_engine_market_count(e); i++) {
        if (i) fg_buf_str(&b, ",");
        fg__render_market(&b, fg_engine_market_at(e, i));
    }
    fg_buf_str(&b, "]}");
    fg__ok(cmd, 200, &b);
}

fg_answer_kind_t fg__h_markets(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                               fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg__cmd_init(api, slot, exec_markets);
    return FG_ANSWER_LATER;
}

/* Renders a product's SKUs offered in `market` only; false when none is. */
static bool render_offered(fg_buf_t *b, const fg_engine_t *e, const fg_product_t *p,
                           const char *market, bool comma) {
    const fg_market_t *m = fg_engine_market_get(e, market);
    int n = 0;
    for (int i = 0; i < p->sku_count; i++) {
        const fg_offer_t *o = fg_engine_offer_get(e, p->skus[i].id, market);
        if (o == NULL || o->blocked) continue;
        if (n == 0) {
            if (comma) fg_buf_str(b, ",");
            fg__render_product_head(b, p);
            fg_buf_str(b, ",\"skus\":[");
        }
        fg_buf_str(b, n++ ? ",{\"id\":" : "{\"id\":");
        fg_buf_json_str(b, p->skus[i].id);
        fg_buf_json_key(b, "name", true);
        fg_buf_json_str(b, p->skus[i].name);
        fg_buf_json_key(b, "attributes", true);
        fg_buf_str(b, p->skus[i].attributes_json);
        fg_buf_printf(b, ",\"price_minor\":%lld,\"currency\":\"%s\"}", (long long)o->price_minor,
                      m->currency);
    }
    if (n) fg_buf_str(b, "]}");
    return n > 0;
}

static void exec_products(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    if (fg_engine_market_get(e, p->id2) == NULL) {
        fg_cmd_problem(cmd, 400, "invalid_field", "market: no such market");
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 8 << 20);
    fg_buf_printf(&b, "{\"market\":\"%s\",\"products\":[", p->id2);
    bool any = false;
    for (int i = 0; i < fg_engine_product_count(e); i++)
        any |= render_offered(&b, e, fg_engine_product_at(e, i), p->id2, any);
    fg_buf_str(&b, "]}");
    fg__ok(cmd, 200, &b);
}

/* Reads ?market=XX into p->id2; false with a 400 when absent or malformed. */
static bool market_query(const fg_api_request_t *rq, fg_api_cmd_t *p, fg_api_answer_t *ans) {
    if (!fg__query_param(rq->query, "market", p->id2, sizeof p->id2) || !fg__valid_market(p->id2)) {
        fg_api_problem(ans, 400, "invalid_field", "market: a query parameter like ?market=DE");
        return false;
    }
    return true;
}

fg_answer_kind_t fg__h_products(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                                fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_products);
    return market_query(rq, p, ans) ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

static void render_product_sku(fg_buf_t *b, const fg_engine_t *e, const fg_product_t *p,
                               const fg_sku_t *s, const char *market) {
    const fg_offer_t *o = fg_engine_offer_get(e, s->id, market);
    fg_buf_str(b, "{\"id\":");
    fg_buf_json_str(b, s->id);
    fg_buf_json_key(b, "name", true);
    fg_buf_json_str(b, s->name);
    fg_buf_json_key(b, "attributes", true);
    fg_buf_str(b, s->attributes_json);
    if (o != NULL && !o->blocked) {
        fg_buf_printf(b, ",\"offered\":true,\"price_minor\":%lld,\"currency\":\"%s\"}",
                      (long long)o->price_minor, fg_engine_market_get(e, market)->currency);
        return;
    }
    fg_buf_str(b, ",\"offered\":false,\"reason\":");
    if (o != NULL)
        fg_buf_json_str(b, o->reason);
    else
        fg_buf_printf(b, "\"not offered in %s\"", market);
    fg_buf_str(b, ",\"alternatives\":");
    fg__render_alternatives(b, e, NULL, p->id, s->id, market);
    fg_buf_str(b, "}");
}

static void exec_product(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    const fg_product_t *prod = fg_engine_product_get(e, p->id);
    if (prod == NULL) {
        fg_cmd_problem(cmd, 404, "not_found", "no such product");
        return;
    }
    if (fg_engine_market_get(e, p->id2) == NULL) {
        fg_cmd_problem(cmd, 400, "invalid_field", "market: no such market");
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg__render_product_head(&b, prod);
    fg_buf_printf(&b, ",\"market\":\"%s\",\"skus\":[", p->id2);
    for (int i = 0; i < prod->sku_count; i++) {
        if (i) fg_buf_str(&b, ",");
        render_product_sku(&b, e, prod, &prod->skus[i], p->id2);
    }
    fg_buf_str(&b, "]}");
    fg__ok(cmd, 200, &b);
}

fg_answer_kind_t fg__h_product(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                               fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_product);
    if (!fg__valid_id(parts[2])) {
        fg_api_problem(ans, 404, "not_found", "no such product");
        return FG_ANSWER_NOW;
    }
    snprintf(p->id, sizeof p->id, "%s", parts[2]);
    return market_query(rq, p, ans) ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

/* ---------------------------------------------------------------- operator writes */

static void exec_admin_market(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    bool created = false;
    fg_err_t err = fg_engine_market_put(e, &p->u.market, &created);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg__render_market(&b, fg_engine_market_get(e, p->u.market.code));
    fg__ok(cmd, created ? 201 : 200, &b);
}

fg_answer_kind_t fg__h_admin_market(fg_api_t *api, const fg_api_request_t *rq,
                                    const char *const *parts, fg_api_slot_t *slot,
                                    fg_api_answer_t *ans) {
    static const char *const keys[] = {"name", "currency", NULL};
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_admin_market);
    if (!fg__auth_admin(api, rq, ans)) return FG_ANSWER_NOW;
    if (!fg__valid_market(parts[3])) {
        fg_api_problem(ans, 400, "invalid_field", "code: two upper-case letters (ISO 3166-1)");
        return FG_ANSWER_NOW;
    }
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    fg_market_t *m = &p->u.market;
    memcpy(m->code, parts[3], 3);
    bool ok =
        fg__only_keys(body, keys, "", ans) &&
        fg__str_field(body, "name", "name", true, FG_NAME_BYTES_MAX, m->name, sizeof m->name,
                      ans) &&
        fg__str_field(body, "currency", "currency", true, 3, m->currency, sizeof m->currency, ans);
    json_decref(body);
    if (ok && !fg__valid_currency(m->currency)) {
        fg_api_problem(ans, 400, "invalid_field", "currency: three upper-case letters (ISO 4217)");
        ok = false;
    }
    return ok ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

static void exec_admin_product(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    bool created = false;
    fg_err_t err = fg_engine_product_put(e, &p->u.product, &created);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    p->kind = FG_OWN_NONE; /* the engine owns it now */
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg__render_product(&b, fg_engine_product_get(e, p->id));
    fg__ok(cmd, created ? 201 : 200, &b);
}

/* A JSON object field serialized compactly (at most FG_JSON_DOC_BYTES_MAX); "{}" when absent. */
static char *object_field(json_t *obj, const char *key, const char *path, fg_api_answer_t *ans) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL) return strdup("{}");
    if (!json_is_object(v)) {
        fg_api_problem(ans, 400, "invalid_field", "%s: must be an object", path);
        return NULL;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (s != NULL && strlen(s) > FG_JSON_DOC_BYTES_MAX) {
        free(s);
        fg_api_problem(ans, 400, "invalid_field", "%s: at most %d bytes", path,
                       FG_JSON_DOC_BYTES_MAX);
        return NULL;
    }
    if (s == NULL) fg_api_problem(ans, 503, "overloaded", "out of memory");
    return s;
}

/* sku is an element of prod->skus, which parse_product's caller frees with fg_product_free. gcc
 * 12's analyzer loses a string stored into an element of that array at a computed index and
 * reports it leaked; it is not. */
FG_ANALYZER_OFF("-Wanalyzer-malloc-leak")
static bool parse_sku(json_t *item, int i, fg_sku_t *sku, fg_api_answer_t *ans) {
    static const char *const keys[] = {"id", "name", "attributes", NULL};
    char path[48], prefix[32];
    snprintf(prefix, sizeof prefix, "skus[%d].", i);
    if (!json_is_object(item)) {
        fg_api_problem(ans, 400, "invalid_field", "skus[%d]: must be an object", i);
        return false;
    }
    if (!fg__only_keys(item, keys, prefix, ans)) return false;
    snprintf(path, sizeof path, "skus[%d].id", i);
    if (!fg__str_field(item, "id", path, true, FG_ID_BYTES_MAX, sku->id, sizeof sku->id, ans))
        return false;
    if (!fg__valid_id(sku->id)) {
        fg_api_problem(ans, 400, "invalid_field", "%s: 1-64 of A-Z a-z 0-9 . _ -", path);
        return false;
    }
    snprintf(path, sizeof path, "skus[%d].name", i);
    if (!fg__str_field(item, "name", path, true, FG_NAME_BYTES_MAX, sku->name, sizeof sku->name,
                       ans))
        return false;
    snprintf(path, sizeof path, "skus[%d].attributes", i);
    sku->attributes_json = object_field(item, "attributes", path, ans);
    return sku->attributes_json != NULL;
}
FG_ANALYZER_ON

static bool parse_product(json_t *body, fg_product_t *prod, fg_api_answer_t *ans) {
    static const char *const keys[] = {"name", "specs", "skus", NULL};
    if (!fg__only_keys(body, keys, "", ans) ||
        !fg__str_field(body, "name", "name", true, FG_NAME_BYTES_MAX, prod->name, sizeof prod->name,
                       ans))
        return false;
    prod->specs_json = object_field(body, "specs", "specs", ans);
    if (prod->specs_json == NULL) return false;
    json_t *skus = json_object_get(body, "skus");
    if (!json_is_array(skus) || json_array_size(skus) < 1 ||
        json_array_size(skus) > FG_SKUS_PER_PRODUCT_MAX) {
        fg_api_problem(ans, 400, "invalid_field", "skus: an array of 1 to %d SKUs",
                       FG_SKUS_PER_PRODUCT_MAX);
        return false;
    }
    prod->skus = calloc(json_array_size(skus), sizeof *prod->skus);
    if (prod->skus == NULL) {
        fg_api_problem(ans, 503, "overloaded", "out of memory");
        return false;
    }
    for (size_t i = 0; i < json_array_size(skus); i++) {
        prod->sku_count = (int)i + 1; /* counts the partly filled one, so it is freed */
        if (!parse_sku(json_array_get(skus, i), (int)i, &prod->skus[i], ans)) return false;
    }
    return true;
}

fg_answer_kind_t fg__h_admin_product(fg_api_t *api, const fg_api_request_t *rq,
                                     const char *const *parts, fg_api_slot_t *slot,
                                     fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_admin_product);
    if (!fg__auth_admin(api, rq, ans)) return FG_ANSWER_NOW;
    if (!fg__valid_id(parts[3])) {
        fg_api_problem(ans, 400, "invalid_field", "id: 1-64 of A-Z a-z 0-9 . _ -");
        return FG_ANSWER_NOW;
    }
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    snprintf(p->id, sizeof p->id, "%s", parts[3]);
    memcpy(p->u.product.id, p->id, sizeof p->id);
    p->kind = FG_OWN_PRODUCT;
    bool ok = parse_product(body, &p->u.product, ans);
    json_decref(body);
    return ok ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

static void exec_admin_offer(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_err_t err = fg_engine_offer_put(e, &p->u.offer, NULL);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg__render_offer(&b, e, fg_engine_offer_get(e, p->u.offer.sku, p->u.offer.market));
    fg__ok(cmd, 200, &b);
}

fg_answer_kind_t fg__h_admin_offer(fg_api_t *api, const fg_api_request_t *rq,
                                   const char *const *parts, fg_api_slot_t *slot,
                                   fg_api_answer_t *ans) {
    static const char *const keys[] = {"price_minor", "blocked", NULL};
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_admin_offer);
    if (!fg__auth_admin(api, rq, ans)) return FG_ANSWER_NOW;
    if (!fg__valid_id(parts[3]) || !fg__valid_market(parts[5])) {
        fg_api_problem(ans, 404, "not_found", "no such SKU or market");
        return FG_ANSWER_NOW;
    }
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    fg_offer_t *o = &p->u.offer;
    snprintf(o->sku, sizeof o->sku, "%s", parts[3]);
    memcpy(o->market, parts[5], 3);
    bool has_price = json_object_get(body, "price_minor") != NULL;
    bool has_block = json_object_get(body, "blocked") != NULL;
    bool ok = fg__only_keys(body, keys, "", ans);
    if (ok && has_price == has_block) {
        fg_api_problem(ans, 400, "invalid_field", "price_minor or blocked: exactly one");
        ok = false;
    }
    if (ok && has_price)
        ok = fg__int_field(body, "price_minor", "price_minor", true, 0, FG_PRICE_MINOR_MAX,
                           &o->price_minor, ans);
    if (ok && has_block) {
        o->blocked = true;
        ok = fg__str_field(body, "blocked", "blocked", true, FG_REASON_BYTES_MAX, o->reason,
                           sizeof o->reason, ans);
    }
    json_decref(body);
    return ok ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}
