/*
 * tally.h — what floodgate-load counts over a window (one second, the whole run, the phase after
 * it): arrivals offered, sent and not sent in time, answers by exact status, and the latency of
 * accepted (2xx) and of shed (429 and 503) answers in separate histograms, since a server that
 * sheds well answers the two very differently.
 *
 * Latency runs from the moment a request was due (its arrival time in the open loop), so a
 * generator or server that falls behind shows it as latency, never as a lower rate.
 */
#ifndef FGL_TALLY_H
#define FGL_TALLY_H

#include <stdbool.h>
#include <stdint.h>

#include "crowd/latency.h"
#include "load/limits.h"
#include "load/pool.h"
#include "util/buf.h"

typedef struct {
    uint64_t offered;                  /* arrivals due in the window */
    uint64_t sent;                     /* of those, sent on a connection */
    uint64_t not_sent;                 /* due while every connection was busy: not sent in time */
    uint64_t status[FGL_STATUS_SLOTS]; /* answers by exact status; slot 0: no answer */
    uint64_t timeouts;                 /* no answer within the timeout (also in slot 0) */
    uint64_t shed_without_retry_after; /* 429 or 503 without a Retry-After header */
    fgc_latency_t accepted;            /* 2xx, µs */
    fgc_latency_t shed;                /* 429 and 503, µs */
} fgl_tally_t;

void fgl_tally_reset(fgl_tally_t *t);
/* Counts one answer (of a request this window sent or an earlier one). */
void fgl_tally_answer(fgl_tally_t *t, const fgl_answer_t *a);
/* Answers with lo <= status < hi (status 0: no answer). */
uint64_t fgl_tally_count(const fgl_tally_t *t, int lo, int hi);
/* 429 and 503: what a server sheds. */
bool fgl_is_shed(int status);
/* Appends the tally as one JSON object. */
void fgl_tally_json(const fgl_tally_t *t, fg_buf_t *out);
/* Appends {"count","p50_us","p90_us","p99_us","p999_us","max_us","mean_us"}. */
void fgl_latency_json(const fgc_latency_t *h, fg_buf_t *out);

#endif
