/*
 * hist.c — see hist.h.
 */
#include "util/hist.h"

#include <string.h>

#include "util/check.h"

void fg_hist_init(fg_hist_t *h, const double *bounds, int n) {
    FG_ASSERT(n > 0 && n <= FG_HIST_BUCKETS_MAX);
    memset(h, 0, sizeof *h);
    h->bucket_count = n;
    for (int i = 0; i < n; i++) {
        FG_ASSERT(i == 0 || bounds[i] > bounds[i - 1]);
        h->bounds[i] = bounds[i];
    }
}

void fg_hist_observe(fg_hist_t *h, double v) {
    int i = 0;
    while (i < h->bucket_count && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->total, 1, memory_order_relaxed);
    if (v > 0) atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)(v * 1e6), memory_order_relaxed);
}

void fg_hist_render(const fg_hist_t *h, const char *name, const char *help, fg_buf_t *out) {
    fg_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i <= h->bucket_count; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->bucket_count)
            fg_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                          (unsigned long long)cum);
        else
            fg_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    fg_buf_printf(out, "%s_sum %.6f\n%s_count %llu\n", name,
                  (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6, name,
                  (unsigned long long)cum);
}
