/*
 * server.c — libmicrohttpd glue; see server.h.
 *
 * A request's life: the URI callback allocates its context (with the raw URI, which MHD does not
 * keep whole); the access handler collects the body (bounded), then on the call after the last
 * body chunk dispatches it. An answer that waits for a commit parks the connection
 * (MHD_suspend_connection) before the command is submitted, so the resume that the writer
 * triggers can never come first. Every parked connection is resumed on every path: the writer
 * answers every command it accepted, and a refused submit resumes at once with 503.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"

#define FG_STREAM_BLOCK_BYTES     16384
#define FG_BODY_DISCARD_BYTES_MAX (4 * FG_BODY_BYTES_MAX)

struct fg_http {
    struct MHD_Daemon *d;
    fg_api_t *api;
    fg_http_metrics_t metrics;
    atomic_long active;  /* requests between URI callback and completion */
    atomic_bool closing; /* refuse new connections */
    int port;
};

enum { ST_RECV, ST_PARKED, ST_READY, ST_ANSWERED };

typedef struct {
    fg_http_t *srv;
    struct MHD_Connection *conn;
    char uri[FG_URL_BYTES_MAX + 1];
    bool uri_too_long;
    fg_buf_t body;
    size_t body_bytes; /* received, kept or not */
    atomic_int state;
    fg_route_t route;
    int status;
    int64_t t0_ns;
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

/* ---------------------------------------------------------------- dispatch */

static void cmd_done(fg_cmd_t *cmd) {
    req_t *r = cmd->ctx;
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
    fg_http_metrics_t *m = &r->srv->metrics;
    if (atomic_fetch_add(&m->parked, 1) >= FG_PARKED_MAX) {
        atomic_fetch_sub(&m->parked, 1);
        return send_problem(r, method, 503, "overloaded", "too many requests in flight; retry");
    }
    r->slot.cmd.done = cmd_done;
    r->slot.cmd.ctx = r;
    atomic_store(&r->state, ST_PARKED);
    MHD_suspend_connection(r->conn);
    if (!fg_api_submit(r->srv->api, &r->slot)) {
        /* Resume at once with 503; the ST_READY path counts the parked request down. */
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
    if (r->body.max == 0) { /* first call: headers only */
        fg_buf_init(&r->body, FG_BODY_BYTES_MAX);
        const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (r->uri_too_long) return send_problem(r, method, 414, "invalid_field", "URL too long");
        if (cl != NULL && strtoull(cl, NULL, 10) > FG_BODY_BYTES_MAX)
            return send_problem(r, method, 413, "body_too_large", "the body is over 64 KiB");
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        /* MHD cannot answer in the middle of an upload, so an oversized (chunked) body is read
         * and dropped up to FG_BODY_DISCARD_BYTES_MAX, answered 413 at its end, and a longer one
         * closes the connection. */
        r->body_bytes += *upload_data_size;
        if (!r->body.overflow) fg_buf_add(&r->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return r->body_bytes <= FG_BODY_DISCARD_BYTES_MAX ? MHD_YES : MHD_NO;
    }
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
    size_t n = strlen(uri);
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
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&h->active, 1);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    fg_http_t *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&h->metrics.connections, 1);
    else
        atomic_fetch_sub(&h->metrics.connections, 1);
}

/* Refuses new connections once shutdown began. MHD_quiesce_daemon would do it too, but with
 * epoll and a thread pool it can race a worker removing the listening socket and abort. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    fg_http_t *h = cls;
    return atomic_load(&h->closing) ? MHD_NO : MHD_YES;
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
    h->api = api;
    fg_hist_init(&h->metrics.request_seconds, bounds, 12);
    fg_api_set_metrics(api, &h->metrics);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads =
        cfg->threads > 0 ? (unsigned)cfg->threads : (unsigned)(cores > 0 ? cores : 1);
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
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)FG_CONNECTIONS_MAX,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)FG_CONN_MEMORY_BYTES_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)FG_CONN_TIMEOUT_S, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        4096u, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
    if (h->d == NULL) {
        snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this host)",
                 cfg->listen);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? (int)di->port : 0;
    (void)sslen;
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
    MHD_stop_daemon(h->d);
    free(h);
}
