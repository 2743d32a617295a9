/*
 * hist.h — a fixed-bucket histogram and counters safe to update from any thread (relaxed
 * atomics), rendered in Prometheus text format.
 */
#ifndef FG_HIST_H
#define FG_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#include "util/buf.h"

#define FG_HIST_BUCKETS_MAX 16

typedef struct {
    int bucket_count;
    double bounds[FG_HIST_BUCKETS_MAX]; /* upper bounds, ascending, in the metric's unit */
    atomic_uint_fast64_t counts[FG_HIST_BUCKETS_MAX + 1]; /* last: +Inf */
    atomic_uint_fast64_t sum_micro;                       /* sum in millionths of the unit */
    atomic_uint_fast64_t total;
} fg_hist_t;

/* `bounds` has `n` ascending values (n <= FG_HIST_BUCKETS_MAX). */
void fg_hist_init(fg_hist_t *h, const double *bounds, int n);
void fg_hist_observe(fg_hist_t *h, double v);
/* Appends the _bucket, _sum and _count lines of `name` (with HELP and TYPE). */
void fg_hist_render(const fg_hist_t *h, const char *name, const char *help, fg_buf_t *out);

#endif
