/*
 * tally.c — counting answers; see tally.h.
 */
#include "load/tally.h"

#include <string.h>

bool fgl_is_shed(int status) {
    return status == 429 || status == 503;
}

void fgl_tally_reset(fgl_tally_t *t) {
    memset(t, 0, sizeof *t);
    fgc_latency_init(&t->accepted);
    fgc_latency_init(&t->shed);
}

void fgl_tally_answer(fgl_tally_t *t, const fgl_answer_t *a) {
    int slot = a->status > 0 && a->status < FGL_STATUS_SLOTS ? a->status : 0;
    t->status[slot]++;
    if (a->timed_out) t->timeouts++;
    int64_t us = (a->end_ns - a->start_ns) / 1000;
    if (a->status >= 200 && a->status < 300) fgc_latency_add(&t->accepted, us);
    if (fgl_is_shed(a->status)) {
        fgc_latency_add(&t->shed, us);
        if (a->retry_after_s < 0) t->shed_without_retry_after++;
    }
}

uint64_t fgl_tally_count(const fgl_tally_t *t, int lo, int hi) {
    uint64_t n = 0;
    for (int s = lo < 0 ? 0 : lo; s < hi && s < FGL_STATUS_SLOTS; s++)
        n += t->status[s];
    return n;
}

void fgl_latency_json(const fgc_latency_t *h, fg_buf_t *out) {
    fg_buf_printf(out,
                  "{\"count\":%llu,\"p50_us\":%lld,\"p90_us\":%lld,\"p99_us\":%lld,"
                  "\"p999_us\":%lld,\"max_us\":%lld,\"mean_us\":%.0f}",
                  (unsigned long long)h->total, (long long)fgc_latency_quantile(h, 0.50),
                  (long long)fgc_latency_quantile(h, 0.90),
                  (long long)fgc_latency_quantile(h, 0.99),
                  (long long)fgc_latency_quantile(h, 0.999), (long long)h->max_us,
                  h->total ? h->sum_us / (double)h->total : 0.0);
}

void fgl_tally_json(const fgl_tally_t *t, fg_buf_t *out) {
    fg_buf_printf(out,
                  "{\"offered\":%llu,\"sent\":%llu,\"not_sent\":%llu,\"answered\":%llu,"
                  "\"no_answer\":%llu,\"timeouts\":%llu,\"shed_without_retry_after\":%llu,"
                  "\"status\":{",
                  (unsigned long long)t->offered, (unsigned long long)t->sent,
                  (unsigned long long)t->not_sent,
                  (unsigned long long)fgl_tally_count(t, 1, FGL_STATUS_SLOTS),
                  (unsigned long long)t->status[0], (unsigned long long)t->timeouts,
                  (unsigned long long)t->shed_without_retry_after);
    bool comma = false;
    for (int s = 1; s < FGL_STATUS_SLOTS; s++) {
        if (t->status[s] == 0) continue;
        fg_buf_printf(out, "%s\"%d\":%llu", comma ? "," : "", s, (unsigned long long)t->status[s]);
        comma = true;
    }
    fg_buf_str(out, "},\"accepted\":");
    fgl_latency_json(&t->accepted, out);
    fg_buf_str(out, ",\"shed\":");
    fgl_latency_json(&t->shed, out);
    fg_buf_str(out, "}");
}
