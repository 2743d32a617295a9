/*
 * server.c — libmicrohttpd glue; see server.h.
 *
 * A request's life: the URI callback allocates its context (with the raw URI, which MHD does not
 * keep whole); the access handler collects the body (bounded), then on the call after the last
 * body chunk dispatches it. An answer that waits for a commit parks the connection
 * (MHD_suspend_connection) before the command is submitted, so the resume that the writer
 * triggers can never come first. Every parked connection is resumed on every path: the writer
 * answers every command it accepted, and a refused submit resumes at once with 503.
 *
 * Hostile clients. libmicrohttpd 0.9.75 parses HTTP but lets through requests a proxy in front
 * could frame differently (Content-Length with Transfer-Encoding, two Content-Lengths, a coding
 * other than chunked) and bytes HTTP forbids in names, values and the request target; those are
 * refused here, on the call that has the headers, before the API sees them, and the connection
 * is closed after the answer. It has no deadline for a whole request, only an idle timeout that
 * every byte resets, so a client trickling a byte at a time would hold its connection forever:
 * a sweeper thread closes connections whose request has not arrived in time (limits.h). At the
 * connection limit new connections are accepted and closed at once rather than left waiting in
 * the listen backlog, which is what libmicrohttpd does when it reaches its own limit.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"

#define FG_STREAM_BLOCK_BYTES     16384
#define FG_BODY_DISCARD_BYTES_MAX (4 * FG_BODY_BYTES_MAX)

/* Deadline values besides a time: not receiving a request (answering, parked, streaming), and
 * closed by the sweeper. */
#define DEADLINE_OFF   0
#define DEADLINE_FIRED (-1)

/* One open connection, from libmicrohttpd's "started" notification to its "closed" one. */
typedef struct conn {
    struct conn *prev, *next; /* in fg_http.conns, under conns_lock */
    int fd;
    _Atomic int64_t deadline_ns; /* monotonic; when its request must have arrived */
} conn_t;

struct fg_http {
    struct MHD_Daemon *d;
    fg_api_t *api;
    fg_http_metrics_t metrics;
    atomic_long active;  /* requests between URI callback and completion */
    atomic_bool closing; /* refuse new connections */

    /* admission of writes (admit) */
    atomic_long writing;             /* writes submitted and not yet answered by the writer */
    atomic_long writing_max;         /* buyers' writes admitted at once */
    atomic_bool writing_pressed;     /* writes reached writing_max in the current window */
    _Atomic int64_t admit_worst_ns;  /* longest wait at the writer in the current window */
    _Atomic int64_t admit_window_ns; /* monotonic start of the current window */
    int port;
    long connections_max; /* more are closed at accept */
    unsigned threads;     /* loop threads */
    atomic_bool warned_threads;
    atomic_long refused; /* closed at accept since the last sweep, for the log */
    pthread_mutex_t conns_lock;
    conn_t *conns; /* every open connection */
    pthread_t sweeper;
    bool sweeper_running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond; /* wakes the sweeper to stop */
    bool stop;                /* under stop_lock */
};

enum { ST_RECV, ST_PARKED, ST_READY, ST_ANSWERED };

typedef struct {
    fg_http_t *srv;
    struct MHD_Connection *conn;
    conn_t *link; /* its connection; outlives the request */
    char uri[FG_URL_BYTES_MAX + 1];
    bool uri_too_long;
    bool target_bad;  /* a byte HTTP does not allow in a request target */
    bool close_after; /* a refused request: its connection cannot be trusted to frame the next */
    fg_buf_t body;
    size_t body_bytes; /* received, kept or not */
    atomic_int state;
    fg_route_t route;
    int status;
    int64_t t0_ns;
    int64_t admitted_ns; /* when handed to the writer */
    fg_api_slot_t slot;
} req_t;

typedef struct {
    fg_api_stream_t *stream;
    struct MHD_Connection *conn;
    fg_http_t *srv;
} stream_ctx_t;

static fg_method_t parse_method(const char *m) {
    if (strcmp(m, "GET") == 0) return FG_GET;
    if (strcmp(m, "POST") == 0) return FG_POST;
    if (strcmp(m, "PUT") == 0) return FG_PUT;
    if (strcmp(m, "DELETE") == 0) return FG_DELETE;
    return FG_OTHER;
}

/* ---------------------------------------------------------------- answers */

static void account(req_t *r, const char *method, int status) {
    fg_http_t *h = r->srv;
    r->status = status;
    atomic_fetch_add_explicit(&h->metrics.requests[r->route][fg_status_slot(status)], 1,
                              memory_order_relaxed);
    double secs = (double)(fg_clock_mono_ns() - r->t0_ns) / 1e9;
    fg_hist_observe(&h->metrics.request_seconds, secs);
    if (!fg_log_quiet()) {
        char path[128];
        const char *q = strchr(r->uri, '?');
        size_t n = q ? (size_t)(q - r->uri) : strlen(r->uri);
        if (n >= sizeof path) n = sizeof path - 1;
        memcpy(path, r->uri, n);
        path[n] = '\0';
        FG_LOG_INFO("event=request method=%s path=\"%s\" route=%s status=%d us=%.0f", method, path,
                    fg_route_name(r->route), status, secs * 1e6);
    }
}

static enum MHD_Result send_body(req_t *r, const char *method, int status, char *body,
                                 const char *type, int retry_after_s, const char *allow) {
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body ? body : (void *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (r->close_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    atomic_store(&r->state, ST_ANSWERED);
    account(r, method, status);
    return rc;
}

static enum MHD_Result send_answer(req_t *r, const char *method, fg_api_answer_t *ans) {
    char *body = ans->body;
    ans->body = NULL;
    const char *type = ans->content_type ? ans->content_type
                       : ans->code       ? "application/problem+json"
                                         : "application/json";
    return send_body(r, method, ans->status, body, type, ans->retry_after_s, ans->allow);
}

static enum MHD_Result send_cmd(req_t *r, const char *method) {
    fg_cmd_t *cmd = &r->slot.cmd;
    char *body = cmd->body;
    cmd->body = NULL;
    const char *type = cmd->content_type ? cmd->content_type
                       : cmd->code       ? "application/problem+json"
                                         : "application/json";
    int retry = cmd->status == 503 || cmd->status == 429 ? FG_RETRY_AFTER_S : 0;
    return send_body(r, method, cmd->status, body, type, retry, NULL);
}

static enum MHD_Result send_problem(req_t *r, const char *method, int status, const char *code,
                                    const char *detail) {
    fg_api_answer_t ans = {0};
    fg_api_problem(&ans, status, code, "%s", detail);
    return send_answer(r, method, &ans);
}

/* ---------------------------------------------------------------- streams */

static void park(void *ctx) {
    MHD_suspend_connection(((stream_ctx_t *)ctx)->conn);
}
static void unpark(void *ctx) {
    MHD_resume_connection(((stream_ctx_t *)ctx)->conn);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx_t *sc = cls;
    ssize_t n = fg_api_stream_read(sc->stream, buf, max, park, unpark, sc);
    if (n < 0) return MHD_CONTENT_READER_END_OF_STREAM;
    return n;
}

static void stream_free(void *cls) {
    stream_ctx_t *sc = cls;
    fg_api_stream_free(sc->stream);
    atomic_fetch_sub(&sc->srv->metrics.streams, 1);
    free(sc);
}

static enum MHD_Result send_stream(req_t *r, const char *method, fg_api_answer_t *ans) {
    stream_ctx_t *sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        fg_api_stream_free(ans->stream);
        return send_problem(r, method, 503, "overloaded", "out of memory");
    }
    sc->stream = ans->stream;
    sc->conn = r->conn;
    sc->srv = r->srv;
    atomic_fetch_add(&r->srv->metrics.streams, 1);
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, FG_STREAM_BLOCK_BYTES, stream_reader, sc, stream_free);
    if (resp == NULL) {
        stream_free(sc);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ans->content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)ans->status, resp);
    MHD_destroy_response(resp);
    atomic_store(&r->state, ST_ANSWERED);
    account(r, method, ans->status);
    return rc;
}

/* ---------------------------------------------------------------- slow clients */

#define NS_PER_S  1000000000LL
#define NS_PER_MS 1000000LL

/* Moves a connection's deadline (DEADLINE_OFF to clear it). False when the sweeper has already
 * closed the connection: what it was receiving must then be dropped. A connection that could not
 * be tracked (out of memory at accept) has only libmicrohttpd's idle timeout. */
static bool deadline_move(conn_t *k, int64_t to_ns) {
    if (k == NULL) return true;
    int64_t cur = atomic_load(&k->deadline_ns);
    while (cur != DEADLINE_FIRED && !atomic_compare_exchange_weak(&k->deadline_ns, &cur, to_ns))
        continue;
    return cur != DEADLINE_FIRED;
}

static bool deadline_fired(const conn_t *k) {
    return k != NULL && atomic_load(&k->deadline_ns) == DEADLINE_FIRED;
}

static void conn_track(fg_http_t *h, struct MHD_Connection *c, void **socket_context) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    conn_t *k = ci != NULL ? calloc(1, sizeof *k) : NULL;
    *socket_context = k;
    if (k == NULL) return;
    k->fd = ci->connect_fd;
    atomic_init(&k->deadline_ns, fg_clock_mono_ns() + FG_CONN_TIMEOUT_S * NS_PER_S);
    pthread_mutex_lock(&h->conns_lock);
    k->next = h->conns;
    if (h->conns != NULL) h->conns->prev = k;
    h->conns = k;
    pthread_mutex_unlock(&h->conns_lock);
}

/* libmicrohttpd closes the descriptor only after this returns, so while a connection is listed
 * (under conns_lock) its descriptor cannot have been reused by another connection. */
static void conn_untrack(fg_http_t *h, conn_t *k) {
    if (k == NULL) return;
    pthread_mutex_lock(&h->conns_lock);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        h->conns = k->next;
    if (k->next != NULL) k->next->prev = k->prev;
    pthread_mutex_unlock(&h->conns_lock);
    free(k);
}

/* Closes every connection past its deadline and returns how many. shutdown(), not close():
 * libmicrohttpd owns the descriptor; it sees end-of-file, and frees the connection itself. No
 * answer is sent (libmicrohttpd cannot answer a request it has not fully read, and writing from
 * this thread could interleave with its own writes). */
static int sweep(fg_http_t *h, int64_t now_ns) {
    int closed = 0;
    pthread_mutex_lock(&h->conns_lock);
    for (conn_t *k = h->conns; k != NULL; k = k->next) {
        int64_t d = atomic_load(&k->deadline_ns);
        if (d <= DEADLINE_OFF || d > now_ns) continue;
        if (!atomic_compare_exchange_strong(&k->deadline_ns, &d, DEADLINE_FIRED)) continue;
        shutdown(k->fd, SHUT_RDWR);
        closed++;
    }
    pthread_mutex_unlock(&h->conns_lock);
    return closed;
}

static void *sweeper_main(void *arg) {
    fg_http_t *h = arg;
    pthread_mutex_lock(&h->stop_lock);
    while (!h->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = until.tv_nsec + FG_CONN_SWEEP_MS * NS_PER_MS;
        until.tv_sec += (time_t)(ns / NS_PER_S);
        until.tv_nsec = (long)(ns % NS_PER_S);
        pthread_cond_timedwait(&h->stop_cond, &h->stop_lock, &until);
        if (h->stop) break;
        pthread_mutex_unlock(&h->stop_lock);
        int closed = sweep(h, fg_clock_mono_ns());
        if (closed > 0) FG_LOG_WARN("event=slow_requests_closed count=%d", closed);
        long refused = atomic_exchange(&h->refused, 0);
        if (refused > 0)
            FG_LOG_WARN("event=connections_refused count=%ld connections_max=%ld", refused,
                        h->connections_max);
        pthread_mutex_lock(&h->stop_lock);
    }
    pthread_mutex_unlock(&h->stop_lock);
    return NULL;
}

/* ---------------------------------------------------------------- request checks */

typedef struct {
    int status; /* 0: the request may go on */
    const char *code;
    const char *detail;
} refusal_t;

/* The headers that frame a request, counted, and whether any name or value has a forbidden
 * byte. libmicrohttpd looks up only the first of a repeated header. */
typedef struct {
    int content_length;
    int transfer_encoding;
    int host;
    const char *coding; /* the first Transfer-Encoding value */
    bool bad_byte;
} head_t;

/* RFC 9110 5.6.2: what a method or a header name is made of. */
static bool is_token(const char *s, size_t n) {
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool alnum =
            (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!alnum && (ch == '\0' || strchr(extra, ch) == NULL)) return false;
    }
    return n > 0;
}

/* RFC 9110 5.5: a field value has no control byte but tab (obs-text, 0x80-0xff, is allowed). A
 * NUL never gets here: libmicrohttpd ends the value at it. */
static bool is_field_value(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
    }
    return true;
}

/* RFC 9112 3.2: a request target is visible ASCII; anything else must be percent-encoded.
 * libmicrohttpd takes the target up to the last space of the line, so it may hold spaces. */
static bool is_target(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f) return false;
    }
    return n > 0;
}

static bool is_known_method(const char *m) {
    static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0) return true;
    return false;
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size) {
    head_t *hd = cls;
    if (!is_token(key, key_size) || !is_field_value(value, value_size)) hd->bad_byte = true;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) hd->content_length++;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) hd->host++;
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0 && hd->transfer_encoding++ == 0)
        hd->coding = value;
    return MHD_YES;
}

/* What libmicrohttpd 0.9.75 lets through but floodgate refuses. Framing first: with both
 * Content-Length and Transfer-Encoding libmicrohttpd reads chunked and ignores the length, with
 * two lengths it takes the first, and with a coding other than chunked it reads the body until
 * the client closes; a proxy in front that frames the same bytes differently would let a second,
 * hidden request through (RFC 9112 6.1 and 6.3, "request smuggling"). */
static refusal_t check_request(const req_t *r, struct MHD_Connection *c, const char *method,
                               const char *version) {
    head_t hd = {0};
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, count_header, &hd);
    bool http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
    /* The API's codes are fixed (docs/api.md): a malformed message is a bad field of it, and
     * the detail names which. */
    const char *bad = "invalid_field";
    if (!is_token(method, strlen(method)))
        return (refusal_t){400, bad, "the method is not a token"};
    if (r->target_bad)
        return (refusal_t){400, bad, "the request target has a space, control or non-ASCII byte"};
    if (hd.bad_byte)
        return (refusal_t){400, bad, "a header name is not a token, or a value has a control byte"};
    if (hd.host > 1 || (hd.host == 0 && !http10))
        return (refusal_t){400, bad, "an HTTP/1.1 request needs exactly one Host header"};
    if (hd.transfer_encoding > 0 && hd.content_length > 0)
        return (refusal_t){400, bad, "Content-Length and Transfer-Encoding together"};
    if (hd.content_length > 1) return (refusal_t){400, bad, "more than one Content-Length"};
    if (hd.transfer_encoding > 1) return (refusal_t){400, bad, "more than one Transfer-Encoding"};
    if (hd.transfer_encoding > 0 && http10)
        return (refusal_t){400, bad, "Transfer-Encoding in an HTTP/1.0 request"};
    if (hd.coding != NULL && strcasecmp(hd.coding, "chunked") != 0)
        return (refusal_t){501, "not_implemented",
                           "only the chunked transfer coding is implemented"};
    if (!is_known_method(method))
        return (refusal_t){501, "not_implemented", "the method is not implemented"};
    return (refusal_t){0};
}

/* ---------------------------------------------------------------- dispatch */

/* Buyers' writes are admitted by a latency target, not only up to FG_PARKED_MAX. A write waits
 * at the writer behind the ones submitted before it, so the number in flight sets the wait. The
 * limit on that number adapts to the wait it causes (additive increase, multiplicative decrease,
 * as TCP does with its window): each FG_ADMIT_WINDOW_MS, if the longest wait at the writer
 * passed FG_ADMIT_WAIT_US_TARGET the limit shrinks by a quarter, else, if writes pressed against
 * it, it grows by FG_ADMIT_STEP. Past capacity the excess is answered 503 with Retry-After at
 * once, on this thread, with no batch and no disk work, and what is admitted waits about the
 * target however much arrives. The limit is not derived from the writer's rate: with group
 * commit the rate grows with what is queued, so a limit of rate x target would shrink the
 * batches, then the rate, then itself. The wait counted ends when the writer answers, not when
 * the answer leaves: a loop thread slow to send (a busy CPU) must not make the writer look slow.
 * FG_ADMIT_MIN, above the writer's largest batches (500 to 700 measured), keeps a light or
 * CPU-bound server from refusing: when the loop threads, not the writer, are what is short, a
 * shed request costs them nearly what an accepted one does, and a closed-loop client sends it
 * again at once, so shedding would only lower throughput (measured: 9,000 holds/s with a limit of
 * 64 at 1,024 connections, 45,000 without). Operators' writes (a pause in the
 * middle of a flood) are held only to FG_PARKED_MAX. */
static bool admit(fg_http_t *h, bool buyer) {
    fg_http_metrics_t *m = &h->metrics;
    if (atomic_fetch_add(&m->parked, 1) >= FG_PARKED_MAX) goto parked_full;
    long max = atomic_load_explicit(&h->writing_max, memory_order_relaxed);
    long n = atomic_fetch_add(&h->writing, 1) + 1;
    if (n >= max) atomic_store_explicit(&h->writing_pressed, true, memory_order_relaxed);
    if (n > max && buyer) goto writer_full;
    return true;

writer_full:
    atomic_fetch_sub(&h->writing, 1);
parked_full:
    atomic_fetch_sub(&m->parked, 1);
    return false;
}

/* A write the writer answered after waiting wait_ns; the first thread to see the window over
 * moves the limit. */
static void admit_done(fg_http_t *h, int64_t wait_ns) {
    atomic_fetch_sub_explicit(&h->writing, 1, memory_order_relaxed);
    int64_t worst = atomic_load_explicit(&h->admit_worst_ns, memory_order_relaxed);
    while (wait_ns > worst && !atomic_compare_exchange_weak(&h->admit_worst_ns, &worst, wait_ns))
        continue;
    int64_t now = fg_clock_mono_ns();
    int64_t start = atomic_load_explicit(&h->admit_window_ns, memory_order_relaxed);
    if (now - start < (int64_t)FG_ADMIT_WINDOW_MS * 1000000) return;
    if (!atomic_compare_exchange_strong(&h->admit_window_ns, &start, now)) return;
    worst = atomic_exchange(&h->admit_worst_ns, 0);
    bool pressed = atomic_exchange(&h->writing_pressed, false);
    long max = atomic_load_explicit(&h->writing_max, memory_order_relaxed);
    if (worst > (int64_t)FG_ADMIT_WAIT_US_TARGET * 1000)
        max -= max / 4;
    else if (pressed)
        max += FG_ADMIT_STEP;
    if (max < FG_ADMIT_MIN) max = FG_ADMIT_MIN;
    if (max > FG_PARKED_MAX) max = FG_PARKED_MAX;
    atomic_store_explicit(&h->writing_max, max, memory_order_relaxed);
}

static void cmd_done(fg_cmd_t *cmd) {
    req_t *r = cmd->ctx;
    /* before the resume: r may be freed once resumed */
    admit_done(r->srv, fg_clock_mono_ns() - r->admitted_ns);
    atomic_store_explicit(&r->state, ST_READY, memory_order_release);
    MHD_resume_connection(r->conn);
}

static const char *header(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static void client_ip(struct MHD_Connection *c, char *out, size_t cap) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (ci == NULL || ci->client_addr == NULL) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)cap);
}

static enum MHD_Result dispatch(req_t *r, const char *method) {
    char path[FG_URL_BYTES_MAX + 1], ip[64];
    memcpy(path, r->uri, sizeof path);
    char *q = strchr(path, '?');
    if (q) *q++ = '\0';
    client_ip(r->conn, ip, sizeof ip);
    fg_api_request_t rq = {
        .method = parse_method(method),
        .path = path,
        .query = q ? q : "",
        .authorization = header(r->conn, MHD_HTTP_HEADER_AUTHORIZATION),
        .idempotency_key = header(r->conn, "Idempotency-Key"),
        .signature = header(r->conn, "Floodgate-Signature"),
        .last_event_id = header(r->conn, "Last-Event-ID"),
        .body = r->body.data ? r->body.data : "",
        .body_len = r->body.len,
        .client_ip = ip,
    };
    fg_api_answer_t ans = {0};
    fg_answer_kind_t kind = fg_api_handle(r->srv->api, &rq, &r->slot, &ans, &r->route);
    if (kind == FG_ANSWER_NOW) return send_answer(r, method, &ans);
    if (kind == FG_ANSWER_STREAM) return send_stream(r, method, &ans);
    if (!admit(r->srv, strncmp(path, "/admin/", 7) != 0))
        return send_problem(r, method, 503, "overloaded", "too many requests in flight; retry");
    r->slot.cmd.done = cmd_done;
    r->slot.cmd.ctx = r;
    r->admitted_ns = fg_clock_mono_ns();
    atomic_store(&r->state, ST_PARKED);
    MHD_suspend_connection(r->conn);
    if (!fg_api_submit(r->srv->api, &r->slot)) {
        /* Resume at once with 503; the ST_READY path counts the parked request down. */
        atomic_fetch_sub(&r->srv->writing, 1);
        fg_api_answer_t busy = {0};
        fg_api_problem(&busy, 503, "overloaded", "the writer is busy or stopping; retry");
        r->slot.cmd.status = busy.status;
        r->slot.cmd.code = busy.code;
        r->slot.cmd.body = busy.body;
        atomic_store(&r->state, ST_READY);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* Answers on the call that has the headers, before any body is read; no deadline while the
 * answer leaves. */
static enum MHD_Result answer_early(req_t *r, const char *method, refusal_t f) {
    if (!deadline_move(r->link, DEADLINE_OFF)) return MHD_NO;
    return send_problem(r, method, f.status, f.code, f.detail);
}

/* The first call for a request: its headers have arrived, its body (if any) has not. */
static enum MHD_Result on_headers(req_t *r, struct MHD_Connection *c, const char *method,
                                  const char *version) {
    fg_buf_init(&r->body, FG_BODY_BYTES_MAX);
    if (r->uri_too_long)
        return answer_early(r, method, (refusal_t){414, "invalid_field", "URL too long"});
    refusal_t f = check_request(r, c, method, version);
    if (f.status != 0) {
        r->close_after = true;
        return answer_early(r, method, f);
    }
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > FG_BODY_BYTES_MAX)
        return answer_early(r, method,
                            (refusal_t){413, "body_too_large", "the body is over 64 KiB"});
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    req_t *r = *con_cls;
    if (r == NULL) return MHD_NO; /* the URI callback failed to allocate */
    r->conn = c;
    int st = atomic_load_explicit(&r->state, memory_order_acquire);
    if (st == ST_READY) {
        atomic_fetch_sub(&r->srv->metrics.parked, 1);
        return send_cmd(r, method);
    }
    if (st != ST_RECV) return MHD_YES;
    if (r->body.max == 0) return on_headers(r, c, method, version); /* first call */
    if (*upload_data_size != 0) {
        /* MHD cannot answer in the middle of an upload, so an oversized (chunked) body is read
         * and dropped up to FG_BODY_DISCARD_BYTES_MAX, answered 413 at its end, and a longer one
         * closes the connection. */
        r->body_bytes += *upload_data_size;
        if (!r->body.overflow) fg_buf_add(&r->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (deadline_fired(r->link)) return MHD_NO;
        return r->body_bytes <= FG_BODY_DISCARD_BYTES_MAX ? MHD_YES : MHD_NO;
    }
    /* The whole request is here: from now on it is answered, not received. */
    if (!deadline_move(r->link, DEADLINE_OFF)) return MHD_NO;
    if (r->body.overflow)
        return send_problem(r, method, 413, "body_too_large", "the body is over 64 KiB");
    return dispatch(r, method);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    fg_http_t *h = cls;
    req_t *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->srv = h;
    r->conn = c;
    r->t0_ns = fg_clock_mono_ns();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->link = ci != NULL ? ci->socket_context : NULL;
    /* The request line is in: its headers and body have FG_REQUEST_RECV_S_MAX from now. */
    deadline_move(r->link, r->t0_ns + FG_REQUEST_RECV_S_MAX * NS_PER_S);
    size_t n = strlen(uri);
    r->target_bad = !is_target(uri, n);
    if (n > FG_URL_BYTES_MAX) {
        r->uri_too_long = true;
        n = 0;
    }
    memcpy(r->uri, uri, n);
    r->uri[n] = '\0';
    atomic_fetch_add(&h->active, 1);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    fg_http_t *h = cls;
    req_t *r = *con_cls;
    if (r == NULL) return;
    /* A parked request is never completed before the writer answered it: MHD does not time out
     * suspended connections. */
    FG_ASSERT(atomic_load(&r->state) != ST_PARKED);
    /* Resumed but closed before its answer was queued (the client went away). */
    if (atomic_load(&r->state) == ST_READY) atomic_fetch_sub(&h->metrics.parked, 1);
    fg_api_slot_release(&r->slot);
    free(r->slot.cmd.body);
    free(r->slot.cmd.idem_body);
    fg_buf_free(&r->body);
    /* The connection is ready for its next request (if it stays open). */
    deadline_move(r->link, fg_clock_mono_ns() + FG_CONN_TIMEOUT_S * NS_PER_S);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&h->active, 1);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    fg_http_t *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        long n = atomic_fetch_add(&h->metrics.connections, 1) + 1;
        /* Once: the loop threads are too few for this many connections (see loop_threads). */
        if (n > (long)h->threads * FG_CONNS_PER_THREAD_MAX &&
            !atomic_exchange(&h->warned_threads, true))
            FG_LOG_WARN("event=many_connections connections=%ld threads=%u advice=\"more than %d "
                        "connections per loop thread slow every request; raise --threads\"",
                        n, h->threads, FG_CONNS_PER_THREAD_MAX);
        conn_track(h, c, socket_context);
    } else {
        atomic_fetch_sub(&h->metrics.connections, 1);
        conn_untrack(h, *socket_context);
        *socket_context = NULL;
    }
}

/* Refuses new connections once shutdown began, and past the connection limit. MHD_quiesce_daemon
 * would do the first too, but with epoll and a thread pool it can race a worker removing the
 * listening socket and abort. A refused connection is closed at once: the client learns now,
 * instead of waiting in the listen backlog as it would at libmicrohttpd's own limit (set above
 * this one), where it stops accepting. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    fg_http_t *h = cls;
    if (atomic_load(&h->closing)) return MHD_NO;
    if (atomic_load(&h->metrics.connections) < h->connections_max) return MHD_YES;
    atomic_fetch_add_explicit(&h->refused, 1, memory_order_relaxed);
    return MHD_NO;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    FG_LOG_WARN("event=http_error detail=\"%s\"", line);
}

/* ---------------------------------------------------------------- start, stop */

/* Parses "host:port", "[v6]:port" or ":port" into a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
    char host[128];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host) return -1;
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || port < 0 || port > 65535) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']') return -1;
        host[n - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)(void *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1) return -1;
        *len = sizeof *a;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)(void *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (host[0] == '\0')
        a->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host,
                       &a->sin_addr) != 1)
        return -1;
    *len = sizeof *a;
    return 0;
}

/* Loop threads: one per core unless configured. In poll mode a thread builds and polls the set
 * of all its connections, and visits each, on every wake-up, so the cost of a request grows with
 * the connections its thread holds, and a thread accepts one connection per wake-up. Measured on
 * 2 cores with 10,000 idle connections: 2 threads took 13 s to accept them and then served a
 * normal client's read in 7-33 ms (p50); 20 threads, 2-4 s and 0.5-1.3 ms. But every thread more
 * costs CPU on each request when connections are few: 20.2 us of server CPU per durable hold
 * with 2 threads, 24.7 with 8 and 29.9 with 20 (64 connections, bench/holds.sh). So the default
 * serves the common case, and docs/operations.md tells operators expecting thousands of
 * connections to give about one thread per FG_CONNS_PER_THREAD_MAX of them (--threads). */
static unsigned loop_threads(int configured) {
    if (configured > 0) return (unsigned)configured;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return (unsigned)(cores > 0 ? cores : 1);
}

/* The connection limit: FG_CONNECTIONS_MAX, lowered to fit the open-file limit (main raised it
 * to the hard limit) less FG_CONN_FDS_RESERVED and a wake-up descriptor per thread. Past the
 * process's open files accept() fails and libmicrohttpd stops accepting until a connection
 * closes, leaving new clients waiting in the backlog instead of refused. */
static long connections_fit(unsigned threads) {
    long fit = FG_CONNECTIONS_MAX;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long files = (long)rl.rlim_cur - FG_CONN_FDS_RESERVED - 2 * (long)threads;
        if (files < fit) fit = files;
    }
    return fit > 1 ? fit : 1;
}

static bool sweeper_start(fg_http_t *h) {
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return false;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    bool ok = pthread_cond_init(&h->stop_cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok) return false;
    pthread_mutex_init(&h->stop_lock, NULL);
    pthread_mutex_init(&h->conns_lock, NULL);
    h->sweeper_running = pthread_create(&h->sweeper, NULL, sweeper_main, h) == 0;
    return h->sweeper_running;
}

/* Stops the sweeper. Connections stay listed until libmicrohttpd closes them. */
static void sweeper_stop(fg_http_t *h) {
    if (!h->sweeper_running) return;
    pthread_mutex_lock(&h->stop_lock);
    h->stop = true;
    pthread_cond_signal(&h->stop_cond);
    pthread_mutex_unlock(&h->stop_lock);
    pthread_join(h->sweeper, NULL);
    h->sweeper_running = false;
}

static void http_free(fg_http_t *h) {
    FG_ASSERT(!h->sweeper_running);
    FG_ASSERT(h->conns == NULL);
    pthread_mutex_destroy(&h->conns_lock);
    pthread_mutex_destroy(&h->stop_lock);
    pthread_cond_destroy(&h->stop_cond);
    free(h);
}

fg_http_t *fg_http_start(const fg_http_config_t *cfg, fg_api_t *api, char *err, size_t errlen) {
    static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                    0.01,   0.02,    0.05,   0.1,   0.25,   1};
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (parse_listen(cfg->listen, &ss, &sslen) != 0) {
        snprintf(err, errlen, "--listen %s: expected HOST:PORT, [IPv6]:PORT or :PORT", cfg->listen);
        return NULL;
    }
    fg_http_t *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!sweeper_start(h)) {
        snprintf(err, errlen, "cannot start the HTTP sweeper thread");
        free(h);
        return NULL;
    }
    h->api = api;
    fg_hist_init(&h->metrics.request_seconds, bounds, 12);
    fg_api_set_metrics(api, &h->metrics);
    unsigned threads = loop_threads(cfg->threads);
    h->threads = threads;
    atomic_store(&h->writing_max, FG_ADMIT_START);
    h->connections_max = connections_fit(threads);
    /* poll(), not epoll: with epoll (edge-triggered) and suspend/resume, libmicrohttpd 0.9.75
     * sometimes leaves a resumed keep-alive connection out of both its ready list and its epoll
     * set, and the next request on it waits for the connection timeout. Measured with
     * floodgate-crowd at 256 connections: 130-330 requests stalled per run with epoll, none
     * with poll, and poll was not slower (docs/architecture.md). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(
        flags, 0, on_accept, h, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(h->connections_max + threads),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)FG_CONN_MEMORY_BYTES_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)FG_CONN_TIMEOUT_S, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        4096u, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
    if (h->d == NULL) {
        snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this host)",
                 cfg->listen);
        sweeper_stop(h);
        http_free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? (int)di->port : 0;
    (void)sslen;
    FG_LOG_INFO("event=http_started threads=%u connections_max=%ld", threads, h->connections_max);
    return h;
}

int fg_http_port(const fg_http_t *h) {
    return h->port;
}

void fg_http_quiesce(fg_http_t *h) {
    atomic_store(&h->closing, true);
}

long fg_http_drain(fg_http_t *h, int timeout_ms) {
    int64_t until = fg_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    while (atomic_load(&h->metrics.parked) > 0 && fg_clock_mono_ns() < until)
        usleep(5000);
    /* Give resumed answers a moment to leave. */
    usleep(50000);
    return (long)atomic_load(&h->metrics.parked);
}

void fg_http_stop(fg_http_t *h) {
    if (h == NULL) return;
    sweeper_stop(h);
    MHD_stop_daemon(h->d);
    http_free(h);
}
