/*
 * latency.h — a latency histogram with logarithmic buckets (HdrHistogram's layout, simplified):
 * exact below 256 µs, then 128 buckets per power of two, so any value is within 0.8 % of the
 * one it is recorded as, from 1 µs to 12 days, in a fixed 35 KiB and O(1) per value.
 *
 * Single-threaded: the crowd records from its one loop thread.
 */
#ifndef FGC_LATENCY_H
#define FGC_LATENCY_H

#include <stdint.h>

#define FGC_LATENCY_SUB_BITS 7  /* 128 buckets per power of two */
#define FGC_LATENCY_EXP_MAX  40 /* values below 2^40 µs */
#define FGC_LATENCY_BUCKETS                                                                        \
    ((2 << FGC_LATENCY_SUB_BITS) +                                                                 \
     (FGC_LATENCY_EXP_MAX - FGC_LATENCY_SUB_BITS - 1) * (1 << FGC_LATENCY_SUB_BITS))

typedef struct {
    uint64_t counts[FGC_LATENCY_BUCKETS];
    uint64_t total;
    int64_t max_us;
    double sum_us;
} fgc_latency_t;

void fgc_latency_init(fgc_latency_t *h);
/* Records one value in microseconds; negative values count as 0, huge ones as the largest. */
void fgc_latency_add(fgc_latency_t *h, int64_t us);
/* The value at quantile q (0..1, e.g. 0.999) in µs: the top of the bucket holding the
 * ceil(q * total)-th smallest value, never above the maximum seen. 0 when empty. */
int64_t fgc_latency_quantile(const fgc_latency_t *h, double q);

#endif
