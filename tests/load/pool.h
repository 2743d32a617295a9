/*
 * pool.h — floodgate-load's connections: a fixed set of keep-alive HTTP/1.1 connections to one
 * server, driven by one epoll instance on one thread.
 *
 * One request runs on one connection at a time (no pipelining), and there is no queue: a request
 * either finds an idle connection at once or is refused (fgl_pool_send returns false). That is
 * what keeps the generator open loop: when the server is slow the caller counts the request as
 * not sent in time instead of holding it back, so the server's slowness is never hidden as a
 * lower offered rate.
 *
 * A connection the server closes, or that fails, is opened again; a request on it gets status 0
 * with a reason. A request without a complete answer within the timeout gets status 0 too, and
 * its connection is closed (a late answer must not be taken for the next request's).
 *
 * Not thread-safe: every function and the answer callback run on the caller's one thread. The
 * callback must not send (the caller sends after fgl_pool_poll returns).
 */
#ifndef FGL_POOL_H
#define FGL_POOL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/check.h"

typedef struct {
    const char *method;
    const char *path;
    const char *token; /* bearer token, or NULL */
    const char *idem;  /* Idempotency-Key, or NULL */
    const char *body;  /* JSON, or NULL */
    uint32_t tag;      /* the caller's, given back with the answer */
    uint8_t kind;      /* the caller's, given back with the answer */
    bool keep_body;    /* hand the answer's body to the callback (else it is dropped) */
    int64_t start_ns;  /* monotonic; where the answer's latency starts */
} fgl_request_t;

typedef struct {
    uint32_t tag;
    uint8_t kind;
    int status;        /* HTTP status; 0 when no complete answer came */
    bool timed_out;    /* status 0 because the timeout passed */
    const char *error; /* why status is 0 (static text), else NULL */
    int retry_after_s; /* Retry-After in seconds; -1 when absent */
    int64_t start_ns;  /* as the request said */
    int64_t end_ns;    /* when the answer was complete (or given up) */
    const char *body;  /* NUL-terminated, "" unless keep_body; dies when the callback returns */
    size_t body_len;
} fgl_answer_t;

typedef void (*fgl_answer_fn)(void *ctx, const fgl_answer_t *a);

typedef struct {
    uint64_t connects;         /* connections opened, reopenings included */
    uint64_t connect_failures; /* connects refused or failed */
    uint64_t server_closes;    /* connections the server closed (after an answer or not) */
    uint64_t timeouts;         /* requests without an answer within the timeout */
    uint64_t transport_errors; /* resets and malformed answers */
} fgl_pool_stats_t;

typedef struct fgl_pool fgl_pool_t;

/* A pool of `connections` connections to `addr` (none open yet); `host` is the Host header.
 * Returns NULL when memory or epoll is not available. */
fgl_pool_t *fgl_pool_new(const struct sockaddr_in *addr, const char *host, int connections,
                         int timeout_ms, fgl_answer_fn on_answer, void *ctx);
void fgl_pool_free(fgl_pool_t *p);

/* Opens every connection and waits until all are connected, at most until `deadline_ns`
 * (monotonic). Returns 0, or -1 when some could not be opened in time. */
FG_MUST_USE int fgl_pool_open(fgl_pool_t *p, int64_t deadline_ns);

/* Sends a request on an idle connection. Returns false, sending nothing, when every connection
 * is busy (or being opened again). Not from the answer callback. */
FG_MUST_USE bool fgl_pool_send(fgl_pool_t *p, const fgl_request_t *rq);

/* Waits for socket events at most until `until_ns` (monotonic; now or past: no wait), handles
 * them and the timeouts that passed; answers go to the callback. */
void fgl_pool_poll(fgl_pool_t *p, int64_t until_ns);

/* Requests in flight, and connections ready to take one. */
int fgl_pool_busy(const fgl_pool_t *p);
int fgl_pool_idle(const fgl_pool_t *p);

/* Gives up every request in flight: each gets status 0 ("cut off"). */
void fgl_pool_cut(fgl_pool_t *p);

const fgl_pool_stats_t *fgl_pool_stats(const fgl_pool_t *p);

#endif
