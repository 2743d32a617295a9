/*
 * ops.c — /healthz, /readyz and /metrics.
 *
 * /metrics runs on the writer thread for the engine's gauges (stock left, holds, orders) and
 * reads the HTTP and writer counters, which are atomics, from there too.
 */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

fg_answer_kind_t fg__h_healthz(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                               fg_api_slot_t *slot, fg_api_answer_t *ans) {
    ans->status = 200;
    ans->body = strdup("{\"status\":\"ok\"}");
    ans->content_type = "application/json";
    return FG_ANSWER_NOW;
}

fg_answer_kind_t fg__h_readyz(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                              fg_api_slot_t *slot, fg_api_answer_t *ans) {
    if (api->writer == NULL || !atomic_load(&fg_writer_stats(api->writer)->ready)) {
        fg_api_problem(ans, 503, "overloaded", "the ledger is not loaded");
        return FG_ANSWER_NOW;
    }
    ans->status = 200;
    ans->body = strdup("{\"status\":\"ready\"}");
    ans->content_type = "application/json";
    return FG_ANSWER_NOW;
}

static void render_http(fg_buf_t *b, fg_http_metrics_t *m) {
    fg_buf_str(b, "# HELP floodgate_http_requests_total HTTP requests answered, by route and "
                  "status.\n# TYPE floodgate_http_requests_total counter\n");
    for (int r = 0; r < FG_R_COUNT; r++)
        for (int s = 0; s < FG_STATUS_SLOTS; s++) {
            uint64_t v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);
            if (v == 0) continue;
            int status = fg_status_of_slot(s);
            if (status)
                fg_buf_printf(b, "floodgate_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                              fg_route_name((fg_route_t)r), status, (unsigned long long)v);
            else
                fg_buf_printf(b,
                              "floodgate_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                              fg_route_name((fg_route_t)r), (unsigned long long)v);
        }
    fg_buf_printf(b,
                  "# HELP floodgate_parked_requests Requests waiting for their batch to commit.\n"
                  "# TYPE floodgate_parked_requests gauge\nfloodgate_parked_requests %lld\n",
                  (long long)atomic_load(&m->parked));
    fg_buf_printf(b,
                  "# HELP floodgate_event_streams Open event streams.\n"
                  "# TYPE floodgate_event_streams gauge\nfloodgate_event_streams %lld\n",
                  (long long)atomic_load(&m->streams));
    fg_buf_printf(b,
                  "# HELP floodgate_connections Open HTTP connections.\n"
                  "# TYPE floodgate_connections gauge\nfloodgate_connections %lld\n",
                  (long long)atomic_load(&m->connections));
    fg_hist_render(&m->request_seconds, "floodgate_request_seconds",
                   "Time from a request's arrival to its answer.", b);
}

static void render_engine(fg_buf_t *b, const fg_engine_t *e, int64_t now_ms) {
    fg_buf_printf(b,
                  "# HELP floodgate_holds_active Holds reserving units now.\n"
                  "# TYPE floodgate_holds_active gauge\nfloodgate_holds_active %llu\n",
                  (unsigned long long)fg_engine_active_holds(e));
    fg_buf_printf(b,
                  "# HELP floodgate_orders_total Orders placed.\n"
                  "# TYPE floodgate_orders_total counter\nfloodgate_orders_total %llu\n",
                  (unsigned long long)fg_engine_order_count(e));
    fg_buf_printf(b,
                  "# HELP floodgate_buyers Registered buyers.\n"
                  "# TYPE floodgate_buyers gauge\nfloodgate_buyers %llu\n",
                  (unsigned long long)fg_engine_buyer_count(e));
    fg_buf_str(b, "# HELP floodgate_sale_available Units available, by sale, SKU and item.\n"
                  "# TYPE floodgate_sale_available gauge\n");
    for (int i = 0; i < fg_engine_sale_count(e); i++) {
        const fg_sale_t *s = fg_engine_sale_at(e, i);
        for (int k = 0; k < s->def.pool_count; k++)
            fg_buf_printf(b, "floodgate_sale_available{sale=\"%s\",sku=\"%s\",pool=\"%d\"} %lld\n",
                          s->def.id, s->def.pools[k].sku, k, (long long)fg_pool_available(s, k));
    }
}

static void render_writer(fg_buf_t *b, fg_writer_stats_t *w) {
    fg_buf_printf(b,
                  "# HELP floodgate_batches_total Batches committed.\n"
                  "# TYPE floodgate_batches_total counter\nfloodgate_batches_total %llu\n",
                  (unsigned long long)atomic_load(&w->batches_total));
    fg_buf_printf(b,
                  "# HELP floodgate_commit_failures_total Batches the ledger failed to commit.\n"
                  "# TYPE floodgate_commit_failures_total counter\n"
                  "floodgate_commit_failures_total %llu\n",
                  (unsigned long long)atomic_load(&w->commit_failures_total));
    fg_buf_printf(b,
                  "# HELP floodgate_queue_depth Commands waiting for the writer.\n"
                  "# TYPE floodgate_queue_depth gauge\nfloodgate_queue_depth %lld\n",
                  (long long)atomic_load(&w->queue_depth));
    fg_hist_render(&w->batch_commands, "floodgate_batch_commands",
                   "Commands answered per committed batch.", b);
    fg_hist_render(&w->commit_seconds, "floodgate_commit_seconds",
                   "Ledger commit latency, fsync included.", b);
}

static void exec_metrics(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_buf_t b;
    fg_buf_init(&b, 4 << 20);
    if (p->api->metrics) render_http(&b, p->api->metrics);
    fg_buf_printf(&b,
                  "# HELP floodgate_holds_refused_early_total Holds refused sold_out by the HTTP "
                  "threads, without the writer.\n"
                  "# TYPE floodgate_holds_refused_early_total counter\n"
                  "floodgate_holds_refused_early_total %llu\n",
                  (unsigned long long)fg__gate_refused(p->api->gate));
    render_engine(&b, e, now_ms);
    render_writer(&b, fg_writer_stats(p->api->writer));
    fg__ok(cmd, 200, &b);
    cmd->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

fg_answer_kind_t fg__h_metrics(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                               fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg__cmd_init(api, slot, exec_metrics);
    return FG_ANSWER_LATER;
}
