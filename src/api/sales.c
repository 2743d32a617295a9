/*
 * sales.c — sales: the operator's create, pause/resume/close, stock, stats and export; the
 * buyers' view and event stream.
 */
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "util/clock.h"

static void exec_sale(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    const fg_sale_t *s = fg_engine_sale_get(e, p->id);
    if (s == NULL) {
        fg_cmd_problem(cmd, 404, "not_found", "no such sale");
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg__render_sale(&b, e, s, now_ms, true);
    fg__ok(cmd, 200, &b);
}

/* Copies the sale id from the path; 404 when it cannot be one. */
static bool sale_id(const char *part, fg_api_cmd_t *p, fg_api_answer_t *ans) {
    if (!fg__valid_id(part)) {
        fg_api_problem(ans, 404, "not_found", "no such sale");
        return false;
    }
    snprintf(p->id, sizeof p->id, "%s", part);
    return true;
}

fg_answer_kind_t fg__h_sale(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                            fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_sale);
    return sale_id(parts[2], p, ans) ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

fg_answer_kind_t fg__h_sale_events(fg_api_t *api, const fg_api_request_t *rq,
                                   const char *const *parts, fg_api_slot_t *slot,
                                   fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, NULL); /* a stream: no command runs */
    if (!sale_id(parts[2], p, ans)) return FG_ANSWER_NOW;
    uint64_t last = 0;
    if (rq->last_event_id != NULL) {
        char *end = NULL;
        unsigned long long v = strtoull(rq->last_event_id, &end, 10);
        if (end == rq->last_event_id || *end != '\0' || strlen(rq->last_event_id) > 19) {
            fg_api_problem(ans, 400, "invalid_field", "Last-Event-ID: a decimal event id");
            return FG_ANSWER_NOW;
        }
        last = v;
    }
    if (api->metrics && atomic_load(&api->metrics->streams) >= FG_SSE_CLIENTS_MAX) {
        fg_api_problem(ans, 503, "overloaded", "too many event streams; retry");
        return FG_ANSWER_NOW;
    }
    ans->stream = fg_events_subscribe(api->events, p->id, last);
    if (ans->stream == NULL) {
        fg_api_problem(ans, 404, "not_found", "no such sale");
        return FG_ANSWER_NOW;
    }
    ans->status = 200;
    ans->content_type = "text/event-stream";
    return FG_ANSWER_STREAM;
}

/* ---------------------------------------------------------------- create */

static void exec_create(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_err_t err = fg_engine_sale_create(e, p->u.sale, now_ms);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg__render_sale(&b, e, fg_engine_sale_get(e, p->u.sale->id), now_ms, true);
    fg__ok(cmd, 201, &b);
}

static bool time_field(json_t *obj, const char *key, bool required, int64_t *out,
                       fg_api_answer_t *ans) {
    char text[64];
    if (!fg__str_field(obj, key, key, required, 40, text, sizeof text, ans)) return false;
    if (text[0] == '\0') return true;
    if (fg_clock_parse_rfc3339(text, out) != 0) {
        fg_api_problem(ans, 400, "invalid_field", "%s: an RFC 3339 time", key);
        return false;
    }
    return true;
}

static bool parse_item(json_t *item, int i, fg_pool_def_t *pool, fg_api_answer_t *ans) {
    static const char *const keys[] = {"sku", "stock", "markets", NULL};
    char path[48], prefix[32];
    snprintf(prefix, sizeof prefix, "items[%d].", i);
    if (!json_is_object(item)) {
        fg_api_problem(ans, 400, "invalid_field", "items[%d]: must be an object", i);
        return false;
    }
    snprintf(path, sizeof path, "items[%d].sku", i);
    if (!fg__only_keys(item, keys, prefix, ans) ||
        !fg__str_field(item, "sku", path, true, FG_ID_BYTES_MAX, pool->sku, sizeof pool->sku, ans))
        return false;
    snprintf(path, sizeof path, "items[%d].stock", i);
    if (!fg__int_field(item, "stock", path, true, 0, FG_STOCK_MAX, &pool->stock, ans)) return false;
    json_t *markets = json_object_get(item, "markets");
    size_t n = json_array_size(markets);
    if (!json_is_array(markets) || n < 1 || n > FG_MARKETS_PER_POOL_MAX) {
        fg_api_problem(ans, 400, "invalid_field", "items[%d].markets: 1 to %d market codes", i,
                       FG_MARKETS_PER_POOL_MAX);
        return false;
    }
    for (size_t k = 0; k < n; k++) {
        const char *m = json_string_value(json_array_get(markets, k));
        if (m == NULL || !fg__valid_market(m)) {
            fg_api_problem(ans, 400, "invalid_field", "items[%d].markets[%zu]: a market code", i,
                           k);
            return false;
        }
        pool->markets[k] = fg_mcode(m);
    }
    pool->market_count = (int)n;
    return true;
}

static bool parse_sale(json_t *body, fg_sale_row_t *d, fg_api_answer_t *ans) {
    static const char *const keys[] = {
        "id", "name", "opens_at", "closes_at", "limit_per_buyer", "hold_ttl_s", "items", NULL};
    int64_t limit = 0, ttl = 0;
    if (!fg__only_keys(body, keys, "", ans) ||
        !fg__str_field(body, "id", "id", true, FG_ID_BYTES_MAX, d->id, sizeof d->id, ans))
        return false;
    if (!fg__valid_id(d->id)) {
        fg_api_problem(ans, 400, "invalid_field", "id: 1-64 of A-Z a-z 0-9 . _ -");
        return false;
    }
    if (!fg__str_field(body, "name", "name", true, FG_NAME_BYTES_MAX, d->name, sizeof d->name,
                       ans) ||
        !time_field(body, "opens_at", true, &d->opens_at_ms, ans) ||
        !time_field(body, "closes_at", false, &d->closes_at_ms, ans) ||
        !fg__int_field(body, "limit_per_buyer", "limit_per_buyer", true, 1, FG_LIMIT_PER_BUYER_MAX,
                       &limit, ans) ||
        !fg__int_field(body, "hold_ttl_s", "hold_ttl_s", true, FG_HOLD_TTL_S_MIN, FG_HOLD_TTL_S_MAX,
                       &ttl, ans))
        return false;
    d->limit_per_buyer = (int32_t)limit;
    d->hold_ttl_s = (int32_t)ttl;
    json_t *items = json_object_get(body, "items");
    size_t n = json_array_size(items);
    if (!json_is_array(items) || n < 1 || n > FG_POOLS_PER_SALE_MAX) {
        fg_api_problem(ans, 400, "invalid_field", "items: 1 to %d items", FG_POOLS_PER_SALE_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (!parse_item(json_array_get(items, i), (int)i, &d->pools[i], ans)) return false;
    d->pool_count = (int)n;
    return true;
}

fg_answer_kind_t fg__h_admin_sales(fg_api_t *api, const fg_api_request_t *rq,
                                   const char *const *parts, fg_api_slot_t *slot,
                                   fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_create);
    if (!fg__auth_admin(api, rq, ans) || !fg__idem(rq, &slot->cmd, FG_IDEM_SCOPE_ADMIN, ans))
        return FG_ANSWER_NOW;
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    p->u.sale = calloc(1, sizeof *p->u.sale);
    p->kind = FG_OWN_SALE;
    bool ok = p->u.sale != NULL && parse_sale(body, p->u.sale, ans);
    if (p->u.sale == NULL) fg_api_problem(ans, 503, "overloaded", "out of memory");
    json_decref(body);
    return ok ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

/* ---------------------------------------------------------------- pause, resume, close, stock */

static void answer_sale(fg_engine_t *e, fg_cmd_t *cmd, const char *id, int64_t now_ms) {
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg__render_sale(&b, e, fg_engine_sale_get(e, id), now_ms, true);
    fg__ok(cmd, 200, &b);
}

static void exec_action(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_err_t err = p->u.action == FG_ACT_PAUSE    ? fg_engine_sale_pause(e, p->id, now_ms)
                   : p->u.action == FG_ACT_RESUME ? fg_engine_sale_resume(e, p->id, now_ms)
                                                  : fg_engine_sale_close(e, p->id, now_ms);
    if (err != FG_OK)
        fg__engine_err(cmd, e, err);
    else
        answer_sale(e, cmd, p->id, now_ms);
}

/* An operator call on /admin/v1/sales/{id}/...: auth, idempotency key, sale id. */
static bool admin_sale_call(fg_api_t *api, const fg_api_request_t *rq, const char *part,
                            fg_api_slot_t *slot, fg_api_answer_t *ans) {
    return fg__auth_admin(api, rq, ans) && fg__idem(rq, &slot->cmd, FG_IDEM_SCOPE_ADMIN, ans) &&
           sale_id(part, fg__params(slot), ans);
}

fg_answer_kind_t fg__h_admin_sale_action(fg_api_t *api, const fg_api_request_t *rq,
                                         const char *const *parts, fg_api_slot_t *slot,
                                         fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_action);
    if (!admin_sale_call(api, rq, parts[3], slot, ans)) return FG_ANSWER_NOW;
    p->u.action = strcmp(parts[4], "pause") == 0    ? FG_ACT_PAUSE
                  : strcmp(parts[4], "resume") == 0 ? FG_ACT_RESUME
                                                    : FG_ACT_CLOSE;
    if (rq->body_len > 0) { /* an empty object is allowed */
        static const char *const none[] = {NULL};
        json_t *body = fg__parse_body(rq, ans);
        bool ok = body != NULL && fg__only_keys(body, none, "", ans);
        json_decref(body);
        if (!ok) return FG_ANSWER_NOW;
    }
    return FG_ANSWER_LATER;
}

static void exec_stock(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_stock_params_t *st = &p->u.stock;
    fg_err_t err = fg_engine_sale_add_stock(e, p->id, st->sku, st->has_market ? st->market : NULL,
                                            st->add, now_ms);
    if (err != FG_OK)
        fg__engine_err(cmd, e, err);
    else
        answer_sale(e, cmd, p->id, now_ms);
}

fg_answer_kind_t fg__h_admin_stock(fg_api_t *api, const fg_api_request_t *rq,
                                   const char *const *parts, fg_api_slot_t *slot,
                                   fg_api_answer_t *ans) {
    static const char *const keys[] = {"sku", "add", "market", NULL};
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_stock);
    if (!admin_sale_call(api, rq, parts[3], slot, ans)) return FG_ANSWER_NOW;
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    fg_stock_params_t *st = &p->u.stock;
    bool ok =
        fg__only_keys(body, keys, "", ans) &&
        fg__str_field(body, "sku", "sku", true, FG_ID_BYTES_MAX, st->sku, sizeof st->sku, ans) &&
        fg__int_field(body, "add", "add", true, 1, FG_STOCK_MAX, &st->add, ans) &&
        fg__str_field(body, "market", "market", false, 2, st->market, sizeof st->market, ans);
    json_decref(body);
    if (ok && st->market[0] != '\0') {
        st->has_market = true;
        if (!fg__valid_market(st->market)) {
            fg_api_problem(ans, 400, "invalid_field", "market: a market code");
            ok = false;
        }
    }
    return ok ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

/* ---------------------------------------------------------------- stats, export */

static void exec_stats(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    const fg_sale_t *s = fg_engine_sale_get(e, p->id);
    if (s == NULL) {
        fg_cmd_problem(cmd, 404, "not_found", "no such sale");
        return;
    }
    int64_t stock = 0, held = 0, sold = 0;
    for (int i = 0; i < s->def.pool_count; i++) {
        stock += s->def.pools[i].stock;
        held += s->held[i];
        sold += s->sold[i];
    }
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg_buf_str(&b, "{\"id\":");
    fg_buf_json_str(&b, s->def.id);
    fg_buf_printf(&b,
                  ",\"state\":\"%s\",\"stock\":%lld,\"available\":%lld,\"held\":%lld,\"sold\":%lld,"
                  "\"holds_total\":%llu,\"orders_total\":%llu,\"buyers_total\":%llu,"
                  "\"expired_total\":%llu,\"released_total\":%llu,\"items\":[",
                  fg_sale_state_name(fg_engine_sale_state(s, now_ms)), (long long)stock,
                  (long long)(stock - held - sold), (long long)held, (long long)sold,
                  (unsigned long long)s->holds_total, (unsigned long long)s->orders_total,
                  (unsigned long long)s->buyers_total, (unsigned long long)s->expired_total,
                  (unsigned long long)s->released_total);
    for (int i = 0; i < s->def.pool_count; i++) {
        fg_buf_str(&b, i ? ",{\"sku\":" : "{\"sku\":");
        fg_buf_json_str(&b, s->def.pools[i].sku);
        fg_buf_str(&b, ",\"markets\":");
        fg__render_markets(&b, &s->def.pools[i]);
        fg_buf_printf(&b, ",\"stock\":%lld,\"available\":%lld,\"held\":%lld,\"sold\":%lld}",
                      (long long)s->def.pools[i].stock, (long long)fg_pool_available(s, i),
                      (long long)s->held[i], (long long)s->sold[i]);
    }
    fg_buf_str(&b, "]}");
    fg__ok(cmd, 200, &b);
}

fg_answer_kind_t fg__h_admin_stats(fg_api_t *api, const fg_api_request_t *rq,
                                   const char *const *parts, fg_api_slot_t *slot,
                                   fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_stats);
    if (!fg__auth_admin(api, rq, ans) || !sale_id(parts[3], p, ans)) return FG_ANSWER_NOW;
    return FG_ANSWER_LATER;
}

fg_answer_kind_t fg__h_admin_export(fg_api_t *api, const fg_api_request_t *rq,
                                    const char *const *parts, fg_api_slot_t *slot,
                                    fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, NULL); /* a stream: no command runs */
    if (!fg__auth_admin(api, rq, ans) || !sale_id(parts[3], p, ans)) return FG_ANSWER_NOW;
    char format[16] = "ndjson";
    bool given = fg__query_param(rq->query, "format", format, sizeof format);
    if (given && strcmp(format, "ndjson") != 0 && strcmp(format, "csv") != 0) {
        fg_api_problem(ans, 400, "invalid_field", "format: ndjson or csv");
        return FG_ANSWER_NOW;
    }
    bool csv = strcmp(format, "csv") == 0;
    bool no_sale = false;
    ans->stream = fg_export_open(api->data_dir, p->id, csv, &no_sale);
    if (ans->stream == NULL) {
        if (no_sale)
            fg_api_problem(ans, 404, "not_found", "no such sale");
        else
            fg_api_problem(ans, 503, "overloaded", "the ledger cannot be read now; retry");
        return FG_ANSWER_NOW;
    }
    ans->status = 200;
    ans->content_type = csv ? "text/csv; charset=utf-8" : "application/x-ndjson";
    return FG_ANSWER_STREAM;
}
