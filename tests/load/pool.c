/*
 * pool.c — connections, epoll and timeouts; see pool.h.
 *
 * Each connection is in one of four states. CLOSED ones are opened again by the sweep (every
 * FGL_SWEEP_MS), so a server that refuses connections costs a connect per connection per sweep,
 * not a busy loop. Idle connections sit on a stack; a connection that leaves the idle state while
 * on it (the server closed it) is skipped when popped. The answer parser is floodgate-crowd's
 * (src/crowd/http.c): it reads Content-Length and chunked bodies and the Retry-After header.
 */
#include "load/pool.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crowd/http.h"
#include "load/limits.h"
#include "util/buf.h"
#include "util/clock.h"

enum { C_CLOSED, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct {
    int fd;
    int state;
    bool on_stack; /* on the idle stack (maybe stale) */
    bool want_out; /* EPOLLOUT is registered */
    fg_buf_t out;  /* the request being written */
    size_t out_off;
    fgc_http_resp_t resp;
    fg_buf_t body; /* the answer's body, when kept */
    bool keep_body;
    uint32_t tag;
    uint8_t kind;
    int64_t start_ns;   /* the request's latency origin */
    int64_t sent_ns;    /* handed to this connection: its timeout runs from here */
    int64_t connect_ns; /* the current connect began */
} conn_t;

struct fgl_pool {
    int ep;
    struct sockaddr_in addr;
    char host[FGL_URL_BYTES_MAX];
    conn_t *conns;
    int count;
    int *stack; /* idle connections, newest on top */
    int stack_len;
    int idle; /* connections in C_IDLE */
    int busy; /* connections in C_BUSY */
    int64_t timeout_ns;
    int64_t next_sweep_ns;
    bool cutting; /* fgl_pool_cut: closed connections stay closed */
    fgl_answer_fn on_answer;
    void *ctx;
    bool in_callback;
    fgl_pool_stats_t stats;
    char rbuf[FGL_READ_CHUNK_BYTES];
};

static uint64_t ev_key(const conn_t *c, int i) {
    return (uint64_t)(uint32_t)c->fd << 32 | (uint32_t)i;
}

static void set_out(fgl_pool_t *p, conn_t *c, int i, bool want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.u64 = ev_key(c, i)};
    FG_ASSERT(epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0);
    c->want_out = want;
}

static void become_idle(fgl_pool_t *p, conn_t *c, int i) {
    c->state = C_IDLE;
    p->idle++;
    if (!c->on_stack) {
        FG_ASSERT(p->stack_len < p->count);
        p->stack[p->stack_len++] = i;
        c->on_stack = true;
    }
}

static void conn_close(fgl_pool_t *p, conn_t *c) {
    if (c->state == C_IDLE) p->idle--;
    if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->state = C_CLOSED;
    c->want_out = false;
}

/* Starts a connect; the connection ends CONNECTING, IDLE (loopback may connect at once) or
 * CLOSED (refused: the sweep tries again). */
static void conn_open(fgl_pool_t *p, conn_t *c, int i) {
    FG_ASSERT(c->state == C_CLOSED);
    p->stats.connects++;
    c->connect_ns = fg_clock_mono_ns();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        p->stats.connect_failures++;
        return;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(c->fd, (const struct sockaddr *)&p->addr, sizeof p->addr);
    if (rc != 0 && errno != EINPROGRESS) {
        p->stats.connect_failures++;
        conn_close(p, c);
        return;
    }
    c->want_out = rc != 0;
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0u),
                             .data.u64 = ev_key(c, i)};
    FG_ASSERT(epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev) == 0);
    if (rc == 0)
        become_idle(p, c, i);
    else
        c->state = C_CONNECTING;
}

/* Ends the request in flight on `c`: a complete answer (status > 0) or none (status 0, why).
 * The connection is kept when the answer was complete and the server keeps it open. */
static void finish(fgl_pool_t *p, conn_t *c, int i, int status, const char *why, bool timed_out) {
    FG_ASSERT(c->state == C_BUSY);
    fgl_answer_t a = {
        .tag = c->tag,
        .kind = c->kind,
        .status = status,
        .timed_out = timed_out,
        .error = status == 0 ? why : NULL,
        .retry_after_s = status == 0 ? -1 : c->resp.retry_after_s,
        .start_ns = c->start_ns,
        .end_ns = fg_clock_mono_ns(),
        .body = c->keep_body && c->body.data ? c->body.data : "",
        .body_len = c->keep_body ? c->body.len : 0,
    };
    p->busy--;
    if (status != 0 && !c->resp.close) {
        become_idle(p, c, i);
    } else {
        conn_close(p, c);
        if (!p->cutting) conn_open(p, c, i);
    }
    p->in_callback = true;
    p->on_answer(p->ctx, &a);
    p->in_callback = false;
}

static bool keep_body(void *ctx, const char *b, size_t n) {
    conn_t *c = ctx;
    fg_buf_add(&c->body, b, n);
    return !c->body.overflow;
}

static void try_write(fgl_pool_t *p, conn_t *c, int i) {
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(p, c, i, true);
            return;
        }
        if (n < 0 && errno == EINTR) continue;
        p->stats.transport_errors++;
        finish(p, c, i, 0, "the request could not be sent", false);
        return;
    }
    set_out(p, c, i, false);
}

bool fgl_pool_send(fgl_pool_t *p, const fgl_request_t *rq) {
    FG_ASSERT(!p->in_callback);
    int i = -1;
    while (p->stack_len > 0) {
        int k = p->stack[--p->stack_len];
        p->conns[k].on_stack = false;
        if (p->conns[k].state == C_IDLE) {
            i = k;
            break;
        }
    }
    if (i < 0) return false;
    conn_t *c = &p->conns[i];
    p->idle--;
    p->busy++;
    c->state = C_BUSY;
    c->tag = rq->tag;
    c->kind = rq->kind;
    c->keep_body = rq->keep_body;
    c->start_ns = rq->start_ns;
    c->sent_ns = fg_clock_mono_ns();
    fg_buf_reset(&c->out);
    c->out_off = 0;
    fgc_http_request(&c->out, rq->method, p->host, rq->path, rq->token, rq->idem, rq->body,
                     rq->body ? strlen(rq->body) : 0);
    FG_ASSERT(!c->out.overflow); /* the caller's ids and tokens are bounded by limits.h */
    fg_buf_reset(&c->body);
    fgc_http_resp_init(&c->resp, rq->keep_body ? keep_body : NULL, c);
    try_write(p, c, i);
    return true;
}

/* A connect finished, well or not. */
static void on_connected(fgl_pool_t *p, conn_t *c, int i) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        p->stats.connect_failures++;
        conn_close(p, c);
        return;
    }
    set_out(p, c, i, false);
    become_idle(p, c, i);
}

static void on_readable(fgl_pool_t *p, conn_t *c, int i) {
    ssize_t n = recv(c->fd, p->rbuf, sizeof p->rbuf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (c->state != C_BUSY) {
        /* Bytes or a close on a connection with nothing in flight: the server ended it (an
         * idle timeout, a refusal). Open it again. */
        p->stats.server_closes++;
        conn_close(p, c);
        if (!p->cutting) conn_open(p, c, i);
        return;
    }
    if (n < 0) {
        p->stats.transport_errors++;
        finish(p, c, i, 0, "the connection was reset", false);
        return;
    }
    if (n == 0) {
        p->stats.server_closes++;
        if (fgc_http_eof(&c->resp) == 0 && fgc_http_done(&c->resp)) {
            c->resp.close = true;
            finish(p, c, i, c->resp.status, NULL, false);
        } else {
            p->stats.transport_errors++;
            finish(p, c, i, 0, "the connection closed before the answer", false);
        }
        return;
    }
    ssize_t used = fgc_http_feed(&c->resp, p->rbuf, (size_t)n);
    if (used < 0) {
        p->stats.transport_errors++;
        finish(p, c, i, 0, c->resp.error, false);
        return;
    }
    if (!fgc_http_done(&c->resp)) return;
    if (used < n) c->resp.close = true; /* bytes past the answer: this connection is spoilt */
    finish(p, c, i, c->resp.status, NULL, false);
}

/* Times out requests and connects, and opens closed connections again. */
static void sweep(fgl_pool_t *p, int64_t now_ns) {
    for (int i = 0; i < p->count; i++) {
        conn_t *c = &p->conns[i];
        if (c->state == C_BUSY && now_ns - c->sent_ns > p->timeout_ns) {
            p->stats.timeouts++;
            finish(p, c, i, 0, "no answer within the timeout", true);
        } else if (c->state == C_CONNECTING &&
                   now_ns - c->connect_ns > (int64_t)FGL_CONNECT_MS_MAX * 1000000) {
            p->stats.connect_failures++;
            conn_close(p, c);
        } else if (c->state == C_CLOSED && !p->cutting) {
            conn_open(p, c, i);
        }
    }
}

void fgl_pool_poll(fgl_pool_t *p, int64_t until_ns) {
    FG_ASSERT(!p->in_callback);
    int64_t now = fg_clock_mono_ns();
    int64_t wait_ns = until_ns - now;
    if (wait_ns > p->next_sweep_ns - now) wait_ns = p->next_sweep_ns - now;
    if (wait_ns < 0) wait_ns = 0;
    struct timespec ts = {.tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000};
    struct epoll_event evs[FGL_EVENTS_MAX];
    int n = epoll_pwait2(p->ep, evs, FGL_EVENTS_MAX, &ts, NULL);
    for (int k = 0; k < n; k++) {
        int i = (int)(uint32_t)evs[k].data.u64;
        int fd = (int)(evs[k].data.u64 >> 32);
        conn_t *c = &p->conns[i];
        if (c->fd != fd) continue; /* closed and opened again since the event */
        if (c->state == C_CONNECTING) {
            on_connected(p, c, i);
            continue;
        }
        if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(p, c, i);
        if ((evs[k].events & EPOLLOUT) && c->fd == fd && c->state == C_BUSY) try_write(p, c, i);
    }
    now = fg_clock_mono_ns();
    if (now >= p->next_sweep_ns) {
        p->next_sweep_ns = now + (int64_t)FGL_SWEEP_MS * 1000000;
        sweep(p, now);
    }
}

int fgl_pool_open(fgl_pool_t *p, int64_t deadline_ns) {
    for (int i = 0; i < p->count; i++)
        if (p->conns[i].state == C_CLOSED) conn_open(p, &p->conns[i], i);
    while (p->idle + p->busy < p->count && fg_clock_mono_ns() < deadline_ns)
        fgl_pool_poll(p, deadline_ns);
    return p->idle + p->busy == p->count ? 0 : -1;
}

void fgl_pool_cut(fgl_pool_t *p) {
    p->cutting = true;
    for (int i = 0; i < p->count; i++)
        if (p->conns[i].state == C_BUSY) finish(p, &p->conns[i], i, 0, "cut off at the end", false);
    p->cutting = false;
}

int fgl_pool_busy(const fgl_pool_t *p) {
    return p->busy;
}

int fgl_pool_idle(const fgl_pool_t *p) {
    return p->idle;
}

const fgl_pool_stats_t *fgl_pool_stats(const fgl_pool_t *p) {
    return &p->stats;
}

fgl_pool_t *fgl_pool_new(const struct sockaddr_in *addr, const char *host, int connections,
                         int timeout_ms, fgl_answer_fn on_answer, void *ctx) {
    FG_ASSERT(connections > 0 && connections <= FGL_CONNECTIONS_MAX);
    fgl_pool_t *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    p->conns = calloc((size_t)connections, sizeof *p->conns);
    p->stack = calloc((size_t)connections, sizeof *p->stack);
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->conns == NULL || p->stack == NULL || p->ep < 0) goto fail;
    p->addr = *addr;
    snprintf(p->host, sizeof p->host, "%s", host);
    p->count = connections;
    p->timeout_ns = (int64_t)timeout_ms * 1000000;
    p->next_sweep_ns = fg_clock_mono_ns() + (int64_t)FGL_SWEEP_MS * 1000000;
    p->on_answer = on_answer;
    p->ctx = ctx;
    for (int i = 0; i < connections; i++) {
        p->conns[i].fd = -1;
        p->conns[i].state = C_CLOSED;
        fg_buf_init(&p->conns[i].out, FGL_REQUEST_BYTES_MAX);
        fg_buf_init(&p->conns[i].body, FGL_BODY_BYTES_MAX);
    }
    return p;

fail:
    if (p->ep >= 0) close(p->ep);
    free(p->stack);
    free(p->conns);
    free(p);
    return NULL;
}

void fgl_pool_free(fgl_pool_t *p) {
    if (p == NULL) return;
    for (int i = 0; i < p->count; i++) {
        conn_t *c = &p->conns[i];
        if (c->fd >= 0) close(c->fd);
        fg_buf_free(&c->out);
        fg_buf_free(&c->body);
    }
    close(p->ep);
    free(p->stack);
    free(p->conns);
    free(p);
}
