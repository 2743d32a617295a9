/*
 * loop.h — the crowd's event loop: a fixed set of keep-alive HTTP/1.1 connections to one
 * server, driven by one epoll instance on one thread, a queue of requests waiting for a free
 * connection, and a timer heap.
 *
 * A request is a (client, tag) pair: the client's `write` callback writes its bytes when a
 * connection takes it, its `done` callback gets the outcome exactly once. One request runs on
 * one connection at a time (no pipelining). A request that finds its kept-alive connection
 * closed by the server before any byte of the answer arrived is sent once more on a fresh
 * connection, as every HTTP client does; the crowd's writes carry Idempotency-Keys, so that is
 * safe. Everything else (timeouts, resets, malformed answers) reaches `done` as status 0.
 *
 * Not thread-safe: every function, and every callback, runs on the thread that calls
 * fgc_loop_step. `done` and `timer` callbacks may submit requests and set timers; a submitted
 * request is only bound to a connection at the next dispatch, so an answer's body stays valid
 * for the whole `done` call.
 */
#ifndef FGC_LOOP_H
#define FGC_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crowd/limits.h"
#include "util/buf.h"
#include "util/check.h"

typedef struct {
    int status;        /* HTTP status; 0 when no complete answer came */
    bool timed_out;    /* no complete answer within the request timeout */
    const char *error; /* why there is no answer (static text) when status is 0 */
    int retry_after_s; /* Retry-After in seconds, -1 when absent */
    const char *body;  /* NUL-terminated; empty for streamed answers; dies when done returns */
    size_t body_len;
    int64_t latency_ns; /* from the request's start (submit, or the time given) to its end */
} fgc_answer_t;

typedef struct {
    void (*write)(void *ctx, uint32_t tag, fg_buf_t *out);
    void (*done)(void *ctx, uint32_t tag, const fgc_answer_t *a);
    bool (*body)(void *ctx, uint32_t tag, const char *p, size_t n); /* streamed answers only */
    void (*timer)(void *ctx, uint32_t tag);                         /* may be NULL */
    void *ctx;
} fgc_client_t;

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[FGC_URL_BYTES_MAX]; /* the Host header: host[:port] as the user wrote it */
} fgc_target_t;

typedef struct {
    uint64_t connects;         /* connections opened */
    uint64_t connect_failures; /* connects refused or timed out */
    uint64_t resends;          /* requests sent again after a stale keep-alive connection */
    uint64_t timeouts;         /* requests that got no answer in time */
    uint64_t transport_errors; /* resets, malformed answers, connects that failed a request */
} fgc_loop_stats_t;

typedef struct fgc_loop fgc_loop_t;

#define FGC_REQ_STREAM 1u /* hand the body to client->body instead of buffering it */

/* Parses "http://HOST[:PORT][/]" and resolves HOST. Returns 0, or -1 with a reason in err. */
FG_MUST_USE int fgc_target_parse(const char *url, fgc_target_t *t, char *err, size_t err_cap);

/* A loop with `connections` connections (none opened yet) and room for `queue_max` waiting
 * requests and timers each. Returns NULL when memory or epoll is not available. */
fgc_loop_t *fgc_loop_new(const fgc_target_t *t, int connections, int timeout_ms, size_t queue_max);
void fgc_loop_free(fgc_loop_t *l);

/* Queues a request. `start_ns` (monotonic) is where its latency starts; 0 means now.
 * Returns 0, or -1 when the queue is full (the request is then not queued). */
FG_MUST_USE int fgc_loop_submit(fgc_loop_t *l, const fgc_client_t *c, uint32_t tag, unsigned flags,
                                int64_t start_ns);

/* Calls c->timer(tag) at monotonic time `due_ns` or soon after. Returns 0, or -1 when full. */
FG_MUST_USE int fgc_loop_timer(fgc_loop_t *l, const fgc_client_t *c, uint32_t tag, int64_t due_ns);

/* One round: fires due timers, binds queued requests to free connections, waits at most
 * `wait_ms` for I/O and handles it, fails requests past their timeout. Returns 0, or -1 when
 * epoll itself fails (nothing else is fatal). */
FG_MUST_USE int fgc_loop_step(fgc_loop_t *l, int wait_ms);

/* Runs the loop for `ms` (a pause between tries that keeps idle connections serviced). Bounded
 * by time; returns early only when epoll fails. */
void fgc_loop_pause(fgc_loop_t *l, int64_t ms);

/* Opens every closed connection now, so that a burst does not pay for connects. */
void fgc_loop_connect_all(fgc_loop_t *l);

/* Fails every queued and in-flight request with status 0 and `why`, and drops every timer.
 * Connections that carried a request are closed (an answer still on its way is not read). */
void fgc_loop_abort_all(fgc_loop_t *l, const char *why);

/* Fails every queued (not yet sent) request with status 0 and `why`, and drops every timer;
 * requests in flight go on. While it runs, done callbacks cannot queue anything. */
void fgc_loop_drop_queued(fgc_loop_t *l, const char *why);

size_t fgc_loop_queued(const fgc_loop_t *l);
size_t fgc_loop_inflight(const fgc_loop_t *l);
size_t fgc_loop_timers(const fgc_loop_t *l);
size_t fgc_loop_open_connections(const fgc_loop_t *l);
const fgc_loop_stats_t *fgc_loop_stats(const fgc_loop_t *l);
const char *fgc_loop_host(const fgc_loop_t *l);

#endif
