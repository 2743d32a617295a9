/*
 * call.h — one request at a time on the crowd's loop, waiting for its answer: for setting up
 * the catalog and the sale, and for the audit's reads. The crowd itself never waits like this.
 *
 * A call must be made while nothing else is queued or in flight on the loop (asserted), so
 * that its request is sent at once and the loop's request timeout bounds the wait.
 */
#ifndef FGC_CALL_H
#define FGC_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crowd/loop.h"

typedef struct {
    int status;        /* HTTP status, 0 when no answer came */
    const char *error; /* why not, when status is 0 (static text) */
    int retry_after_s;
    char *body; /* NUL-terminated, owned: fgc_reply_free releases it */
    size_t body_len;
} fgc_reply_t;

typedef bool (*fgc_sink_fn)(void *ctx, const char *p, size_t n);

/* Sends `method path` (with a JSON `body`, a bearer `token` and an Idempotency-Key `idem`,
 * each may be NULL) and runs the loop until the answer. Returns 0 when an answer came (any
 * status), -1 when none did (reply->error says why). The reply must be freed either way. */
FG_MUST_USE int fgc_call(fgc_loop_t *l, const char *method, const char *path, const char *token,
                         const char *idem, const char *body, fgc_reply_t *reply);

/* A GET whose body goes to `sink` as it arrives instead of into reply->body. */
FG_MUST_USE int fgc_call_stream(fgc_loop_t *l, const char *path, const char *token,
                                fgc_sink_fn sink, void *ctx, fgc_reply_t *reply);

/* Like fgc_call, but a request that got no answer (refused, reset, timed out), a 5xx, a 429 or a
 * 409 idempotency_in_progress is sent again, with the same Idempotency-Key, up to `retries` more
 * times (0..FGC_RETRIES_MAX):
 * after its Retry-After when it has one (capped at FGC_RETRY_AFTER_S_MAX), else after
 * fgc_backoff_ms. For setup against a server that may be restarting or stalled. Returns as
 * fgc_call, for the last try; earlier replies are freed. */
FG_MUST_USE int fgc_call_retry(fgc_loop_t *l, int retries, const char *method, const char *path,
                               const char *token, const char *idem, const char *body,
                               fgc_reply_t *reply);

/* The pause before retry number `tries` + 1 of one step: FGC_BACKOFF_MS_MIN doubling with each
 * try, at most FGC_BACKOFF_MS_MAX. Any `tries` >= 0. */
int64_t fgc_backoff_ms(int tries);

void fgc_reply_free(fgc_reply_t *reply);

#endif
