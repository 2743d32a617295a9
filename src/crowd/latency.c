/*
 * latency.c — see latency.h.
 *
 * Bucket i below 2^(SUB_BITS+1) holds exactly the value i. Above, a value v with highest set
 * bit e keeps its top SUB_BITS+1 bits m = v >> (e - SUB_BITS), 128 <= m < 256, and lands in
 * bucket 256 + (e - 8) * 128 + (m - 128) (for SUB_BITS = 7).
 */
#include "crowd/latency.h"

#include <math.h>
#include <string.h>

#include "util/check.h"

#define SUB       (1 << FGC_LATENCY_SUB_BITS) /* 128 */
#define LINEAR    (2 * SUB)                   /* 256 values stored exactly */
#define VALUE_MAX ((INT64_C(1) << FGC_LATENCY_EXP_MAX) - 1)

_Static_assert(FGC_LATENCY_BUCKETS == LINEAR + (FGC_LATENCY_EXP_MAX - 8) * SUB,
               "bucket count matches the layout");

static int index_of(int64_t v) {
    if (v < LINEAR) return (int)v;
    int e = 63 - __builtin_clzll((unsigned long long)v);
    int64_t m = v >> (e - FGC_LATENCY_SUB_BITS);
    int i = LINEAR + (e - FGC_LATENCY_SUB_BITS - 1) * SUB + (int)(m - SUB);
    FG_ASSERT(i >= LINEAR && i < FGC_LATENCY_BUCKETS);
    return i;
}

/* The largest value that lands in bucket i. */
static int64_t top_of(int i) {
    if (i < LINEAR) return i;
    int k = i - LINEAR;
    int shift = k / SUB + 1; /* e - SUB_BITS */
    int64_t m = SUB + k % SUB;
    return ((m + 1) << shift) - 1;
}

void fgc_latency_init(fgc_latency_t *h) {
    memset(h, 0, sizeof *h);
}

void fgc_latency_add(fgc_latency_t *h, int64_t us) {
    if (us < 0) us = 0;
    if (us > VALUE_MAX) us = VALUE_MAX;
    h->counts[index_of(us)]++;
    h->total++;
    h->sum_us += (double)us;
    if (us > h->max_us) h->max_us = us;
}

int64_t fgc_latency_quantile(const fgc_latency_t *h, double q) {
    if (h->total == 0) return 0;
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < FGC_LATENCY_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            int64_t top = top_of(i);
            return top < h->max_us ? top : h->max_us;
        }
    }
    return h->max_us;
}
