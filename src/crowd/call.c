/*
 * call.c — a blocking request on the event loop; see call.h.
 */
#include "crowd/call.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "crowd/http.h"
#include "util/clock.h"

/* Steps a call waits at most: the loop's own timeout ends every request well before. */

typedef struct {
    fgc_loop_t *loop;
    const char *method, *path, *token, *idem, *body;
    fgc_sink_fn sink;
    void *sink_ctx;
    bool done;
    fgc_reply_t *reply;
} call_t;

static void call_write(void *ctx, uint32_t tag, fg_buf_t *out) {
    call_t *c = ctx;
    fgc_http_request(out, c->method, fgc_loop_host(c->loop), c->path, c->token, c->idem, c->body,
                     c->body ? strlen(c->body) : 0);
}

/* gcc 12's analyzer (at -O2) reports body as leaked: it loses it once stored through c->reply,
 * which the caller owns and frees with fgc_reply_free. */
FG_ANALYZER_OFF("-Wanalyzer-malloc-leak")
static void call_done(void *ctx, uint32_t tag, const fgc_answer_t *a) {
    call_t *c = ctx;
    c->done = true;
    c->reply->status = a->status;
    c->reply->error = a->error;
    c->reply->retry_after_s = a->retry_after_s;
    FG_ASSERT(c->reply->body == NULL); /* one answer per call */
    char *body = malloc(a->body_len + 1);
    if (body == NULL) {
        c->reply->status = 0;
        c->reply->error = "out of memory";
        return;
    }
    memcpy(body, a->body, a->body_len);
    body[a->body_len] = '\0';
    c->reply->body = body; /* the caller frees it with fgc_reply_free */
    c->reply->body_len = a->body_len;
}
FG_ANALYZER_ON

static bool call_body(void *ctx, uint32_t tag, const char *p, size_t n) {
    call_t *c = ctx;
    return c->sink(c->sink_ctx, p, n);
}

static int run(fgc_loop_t *l, call_t *c) {
    FG_ASSERT(fgc_loop_queued(l) == 0 && fgc_loop_inflight(l) == 0);
    memset(c->reply, 0, sizeof *c->reply);
    fgc_client_t client = {.write = call_write, .done = call_done, .body = call_body, .ctx = c};
    if (fgc_loop_submit(l, &client, 0, c->sink ? FGC_REQ_STREAM : 0, 0) != 0) {
        c->reply->error = "request queue full";
        return -1;
    }
    /* Bounded by time, not by steps: a long streamed answer (an export) takes many steps. */
    int64_t until = fg_clock_mono_ns() + (int64_t)FGC_TIMEOUT_MS_MAX * 1000000;
    while (!c->done && fg_clock_mono_ns() < until) {
        if (fgc_loop_step(l, FGC_LOOP_WAIT_MS_MAX) != 0) break;
    }
    if (!c->done) fgc_loop_abort_all(l, "the loop failed"); /* `client` dies with this frame */
    FG_ASSERT(c->done);
    return c->reply->status > 0 ? 0 : -1;
}

int fgc_call(fgc_loop_t *l, const char *method, const char *path, const char *token,
             const char *idem, const char *body, fgc_reply_t *reply) {
    call_t c = {.loop = l,
                .method = method,
                .path = path,
                .token = token,
                .idem = idem,
                .body = body,
                .reply = reply};
    return run(l, &c);
}

int fgc_call_stream(fgc_loop_t *l, const char *path, const char *token, fgc_sink_fn sink, void *ctx,
                    fgc_reply_t *reply) {
    call_t c = {.loop = l,
                .method = "GET",
                .path = path,
                .token = token,
                .sink = sink,
                .sink_ctx = ctx,
                .reply = reply};
    return run(l, &c);
}

int64_t fgc_backoff_ms(int tries) {
    FG_ASSERT(tries >= 0);
    int64_t ms = FGC_BACKOFF_MS_MIN;
    for (int i = 0; i < tries && ms < FGC_BACKOFF_MS_MAX; i++) /* no shift past 63 bits */
        ms *= 2;
    return ms < FGC_BACKOFF_MS_MAX ? ms : FGC_BACKOFF_MS_MAX;
}

/* An answer that says nothing is settled yet: none came, the server failed or was overloaded,
 * or an earlier try with the same Idempotency-Key is still being committed. */
static bool transient(int rc, const fgc_reply_t *r) {
    if (rc != 0 || r->status == 429 || r->status >= 500) return true;
    if (r->status != 409) return false;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "code"));
    bool in_progress = code != NULL && strcmp(code, "idempotency_in_progress") == 0;
    json_decref(j);
    return in_progress;
}

int fgc_call_retry(fgc_loop_t *l, int retries, const char *method, const char *path,
                   const char *token, const char *idem, const char *body, fgc_reply_t *reply) {
    FG_ASSERT(retries >= 0 && retries <= FGC_RETRIES_MAX);
    int rc = fgc_call(l, method, path, token, idem, body, reply);
    for (int i = 0; i < retries && transient(rc, reply); i++) {
        int64_t ms = fgc_backoff_ms(i);
        if (rc == 0 && reply->retry_after_s >= 0)
            ms = (int64_t)(reply->retry_after_s < FGC_RETRY_AFTER_S_MAX ? reply->retry_after_s
                                                                        : FGC_RETRY_AFTER_S_MAX) *
                 1000;
        fgc_reply_free(reply);
        fgc_loop_pause(l, ms);
        rc = fgc_call(l, method, path, token, idem, body, reply);
    }
    return rc;
}

void fgc_reply_free(fgc_reply_t *reply) {
    free(reply->body);
    reply->body = NULL;
}
