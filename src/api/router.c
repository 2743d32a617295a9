/*
 * router.c — matches a request's method and path to its handler, and owns the API object.
 *
 * Paths are split on '/' into at most FG_PATH_PARTS_MAX segments and compared with a table of
 * patterns where "*" matches one segment. A known path with the wrong method is 405 with Allow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

#define FG_PATH_PARTS_MAX 8

typedef struct {
    const char *pattern[FG_PATH_PARTS_MAX]; /* NULL-terminated segments */
    fg_method_t method;
    fg_route_t route;
    fg_handler_fn fn;
} route_def_t;

static const route_def_t routes[] = {
    {{"healthz"}, FG_GET, FG_R_HEALTHZ, fg__h_healthz},
    {{"readyz"}, FG_GET, FG_R_READYZ, fg__h_readyz},
    {{"metrics"}, FG_GET, FG_R_METRICS, fg__h_metrics},
    {{"v1", "markets"}, FG_GET, FG_R_MARKETS, fg__h_markets},
    {{"v1", "products"}, FG_GET, FG_R_PRODUCTS, fg__h_products},
    {{"v1", "products", "*"}, FG_GET, FG_R_PRODUCT, fg__h_product},
    {{"v1", "sales", "*"}, FG_GET, FG_R_SALE, fg__h_sale},
    {{"v1", "sales", "*", "events"}, FG_GET, FG_R_SALE_EVENTS, fg__h_sale_events},
    {{"v1", "sales", "*", "holds"}, FG_POST, FG_R_HOLDS, fg__h_holds},
    {{"v1", "buyers"}, FG_POST, FG_R_BUYERS, fg__h_buyers},
    {{"v1", "holds", "*"}, FG_GET, FG_R_HOLD, fg__h_hold},
    {{"v1", "holds", "*"}, FG_DELETE, FG_R_HOLD, fg__h_hold},
    {{"v1", "holds", "*", "order"}, FG_POST, FG_R_HOLD_ORDER, fg__h_hold_order},
    {{"v1", "payments", "webhook"}, FG_POST, FG_R_WEBHOOK, fg__h_webhook},
    {{"v1", "orders", "*"}, FG_GET, FG_R_ORDER, fg__h_order},
    {{"v1", "me", "orders"}, FG_GET, FG_R_ME_ORDERS, fg__h_me_orders},
    {{"admin", "v1", "markets", "*"}, FG_PUT, FG_R_ADMIN_MARKET, fg__h_admin_market},
    {{"admin", "v1", "products", "*"}, FG_PUT, FG_R_ADMIN_PRODUCT, fg__h_admin_product},
    {{"admin", "v1", "skus", "*", "offers", "*"}, FG_PUT, FG_R_ADMIN_OFFER, fg__h_admin_offer},
    {{"admin", "v1", "sales"}, FG_POST, FG_R_ADMIN_SALES, fg__h_admin_sales},
    {{"admin", "v1", "sales", "*", "pause"},
     FG_POST,
     FG_R_ADMIN_SALE_ACTION,
     fg__h_admin_sale_action},
    {{"admin", "v1", "sales", "*", "resume"},
     FG_POST,
     FG_R_ADMIN_SALE_ACTION,
     fg__h_admin_sale_action},
    {{"admin", "v1", "sales", "*", "close"},
     FG_POST,
     FG_R_ADMIN_SALE_ACTION,
     fg__h_admin_sale_action},
    {{"admin", "v1", "sales", "*", "stock"}, FG_POST, FG_R_ADMIN_STOCK, fg__h_admin_stock},
    {{"admin", "v1", "sales", "*", "stats"}, FG_GET, FG_R_ADMIN_STATS, fg__h_admin_stats},
    {{"admin", "v1", "sales", "*", "orders"}, FG_GET, FG_R_ADMIN_EXPORT, fg__h_admin_export},
};

static const char *const method_names[] = {"GET", "PUT", "POST", "DELETE", "OTHER"};

/* Splits path into segments in buf; returns the count, or -1 when there are too many. */
static int split(const char *path, char *buf, size_t cap, const char **parts) {
    size_t n = strlen(path);
    if (n >= cap || path[0] != '/') return -1;
    memcpy(buf, path + 1, n);
    int count = 0;
    char *p = buf;
    if (*p == '\0') return 0;
    for (;;) {
        if (count == FG_PATH_PARTS_MAX) return -1;
        parts[count++] = p;
        char *slash = strchr(p, '/');
        if (slash == NULL) break;
        *slash = '\0';
        p = slash + 1;
    }
    if (count > 0 && parts[count - 1][0] == '\0') count--; /* a trailing slash */
    return count;
}

static bool matches(const route_def_t *r, const char *const *parts, int count) {
    int i = 0;
    for (; i < FG_PATH_PARTS_MAX && r->pattern[i] != NULL; i++) {
        if (i >= count) return false;
        if (strcmp(r->pattern[i], "*") != 0 && strcmp(r->pattern[i], parts[i]) != 0) return false;
        if (parts[i][0] == '\0') return false;
    }
    return i == count;
}

fg_answer_kind_t fg_api_handle(fg_api_t *api, const fg_api_request_t *rq, fg_api_slot_t *slot,
                               fg_api_answer_t *ans, fg_route_t *route) {
    char buf[FG_URL_BYTES_MAX + 1];
    const char *parts[FG_PATH_PARTS_MAX] = {0};
    int count = split(rq->path, buf, sizeof buf, parts);
    *route = FG_R_UNKNOWN;
    char allow[64] = "";
    for (size_t i = 0; count >= 0 && i < sizeof routes / sizeof routes[0]; i++) {
        if (!matches(&routes[i], parts, count)) continue;
        *route = routes[i].route;
        if (routes[i].method == rq->method) return routes[i].fn(api, rq, parts, slot, ans);
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "",
                 method_names[routes[i].method]);
    }
    if (allow[0] != '\0') {
        static _Thread_local char allow_copy[64];
        memcpy(allow_copy, allow, sizeof allow);
        fg_api_problem(ans, 405, "method_not_allowed", "%s %s is not allowed; use %s",
                       method_names[rq->method], rq->path, allow);
        ans->allow = allow_copy;
        return FG_ANSWER_NOW;
    }
    fg_api_problem(ans, 404, "not_found", "no such path");
    return FG_ANSWER_NOW;
}

bool fg_api_submit(fg_api_t *api, fg_api_slot_t *slot) {
    return fg_writer_submit(api->writer, &slot->cmd);
}

fg_api_t *fg_api_new(const fg_api_config_t *cfg) {
    fg_api_t *api = calloc(1, sizeof *api);
    if (api == NULL) return NULL;
    snprintf(api->data_dir, sizeof api->data_dir, "%s", cfg->data_dir);
    memcpy(api->admin_token_hash, cfg->admin_token_hash, 32);
    snprintf(api->webhook_secret, sizeof api->webhook_secret, "%s", cfg->webhook_secret);
    api->rate_limit_per_s = cfg->rate_limit_per_s;
    pthread_mutex_init(&api->rate_mu, NULL);
    fg_map_init(&api->rate_buckets);
    api->events = fg_events_new();
    api->gate = fg__gate_new();
    if (api->events == NULL || api->gate == NULL) {
        fg_events_free(api->events);
        fg__gate_free(api->gate);
        free(api);
        return NULL;
    }
    return api;
}

void fg_api_set_writer(fg_api_t *api, fg_writer_t *writer) {
    api->writer = writer;
}
void fg_api_set_metrics(fg_api_t *api, fg_http_metrics_t *m) {
    api->metrics = m;
}

void fg_api_free(fg_api_t *api) {
    if (api == NULL) return;
    fg_events_free(api->events);
    fg__gate_free(api->gate);
    fg_map_free(&api->rate_buckets);
    pthread_mutex_destroy(&api->rate_mu);
    free(api);
}

void fg_api_shutdown_streams(fg_api_t *api) {
    fg_events_shutdown(api->events);
}

void fg_api_on_sale_change(void *ctx, const fg_engine_t *e, const fg_sale_t *s, int64_t now_ms) {
    fg_api_t *api = ctx;
    if (s == NULL) {
        fg__gate_loaded(api->gate, e);
        return;
    }
    fg__gate_publish(api->gate, e, s, now_ms);
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg__render_sale(&b, e, s, now_ms, false);
    if (!b.overflow) fg_events_publish(api->events, s->def.id, b.data);
    fg_buf_free(&b);
}

ssize_t fg_api_stream_read(fg_api_stream_t *s, char *buf, size_t max, fg_stream_park_fn park,
                           fg_stream_park_fn unpark, void *ctx) {
    return s->read(s, buf, max, park, unpark, ctx);
}

void fg_api_stream_free(fg_api_stream_t *s) {
    if (s != NULL) s->free(s);
}
