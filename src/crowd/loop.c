/*
 * loop.c — connections, request queue and timers on one epoll instance; see loop.h.
 *
 * Each connection is in exactly one of four states: closed, connecting, idle, busy. Idle and
 * closed connections sit on two stacks so that a free one is found in O(1); an entry whose
 * connection changed state meanwhile is dropped when popped. epoll is level-triggered: EPOLLIN
 * is always watched (an idle connection must notice that the server closed it), EPOLLOUT only
 * while connecting or while a request is not fully written.
 *
 * Ownership: the loop owns its connections and their buffers; a client (fgc_client_t) must
 * outlive every request and timer it has in the loop.
 */
#include "crowd/loop.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "crowd/http.h"
#include "util/clock.h"

enum { C_CLOSED, C_CONNECTING, C_IDLE, C_BUSY };

#define REQ_RESENT      0x100u /* already sent once on a connection that turned out stale */
#define EVENTS_PER_WAIT 1024
#define READS_PER_EVENT 8 /* then other connections get their turn (level-triggered) */
#define TIMERS_PER_STEP 100000

typedef struct {
    const fgc_client_t *client;
    uint32_t tag;
    unsigned flags;
    int64_t start_ns;
} req_t;

typedef struct {
    int fd;
    uint8_t state;
    bool has_req;
    bool reused;    /* an answer completed on this connection: it may be stale when reused */
    bool got_bytes; /* bytes of the current answer arrived */
    bool in_idle, in_closed;
    bool out_watched; /* EPOLLOUT is in its epoll mask */
    req_t req;
    int64_t deadline_ns; /* the current request (or connect) fails past this */
    size_t out_off;
    fg_buf_t out;
    fg_buf_t body;
    fgc_http_resp_t resp;
} conn_t;

typedef struct {
    int64_t due_ns;
    const fgc_client_t *client;
    uint32_t tag;
} tmr_t;

struct fgc_loop {
    fgc_target_t target;
    int epfd;
    int64_t timeout_ns;
    conn_t *conns;
    uint32_t conn_count;
    uint32_t *idle, *closed; /* stacks of connection indexes, each at most conn_count long */
    size_t idle_len, closed_len;
    req_t *queue; /* ring */
    size_t q_head, q_len, q_cap, q_max;
    tmr_t *heap;
    size_t heap_len, heap_cap, heap_max;
    size_t inflight, open;
    bool aborting;
    int64_t next_sweep_ns;
    fgc_loop_stats_t stats;
    char rbuf[FGC_READ_CHUNK_BYTES];
};

/* ---- target ------------------------------------------------------------------------------ */

int fgc_target_parse(const char *url, fgc_target_t *t, char *err, size_t err_cap) {
    memset(t, 0, sizeof *t);
    if (strncmp(url, "https://", 8) == 0) {
        snprintf(err, err_cap, "https is not supported; give the server's plain http address");
        return -1;
    }
    if (strncmp(url, "http://", 7) != 0 || strlen(url) >= sizeof t->host) {
        snprintf(err, err_cap, "the URL must look like http://HOST:PORT");
        return -1;
    }
    const char *h = url + 7;
    size_t n = strcspn(h, "/");
    if (n == 0 || (h[n] == '/' && h[n + 1] != '\0')) {
        snprintf(err, err_cap, "the URL must look like http://HOST:PORT (no path)");
        return -1;
    }
    memcpy(t->host, h, n);
    t->host[n] = '\0';
    char name[FGC_URL_BYTES_MAX], port[16] = "80";
    const char *colon = t->host[0] == '[' ? strstr(t->host, "]:") : strrchr(t->host, ':');
    size_t name_len = colon ? (size_t)(colon - t->host) + (t->host[0] == '[') : n;
    if (colon) snprintf(port, sizeof port, "%s", colon + 1 + (t->host[0] == '['));
    memcpy(name, t->host, name_len);
    name[name_len] = '\0';
    if (name[0] == '[') { /* [::1] */
        memmove(name, name + 1, name_len);
        char *close = strchr(name, ']');
        if (close) *close = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(name, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, err_cap, "cannot resolve %s port %s: %s", name, port, gai_strerror(rc));
        return -1;
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* ---- queue and timers -------------------------------------------------------------------- */

static bool q_grow(fgc_loop_t *l) {
    if (l->q_len < l->q_cap) return true;
    if (l->q_cap >= l->q_max) return false;
    size_t cap = l->q_cap * 2 < l->q_max ? l->q_cap * 2 : l->q_max;
    req_t *q = malloc(cap * sizeof *q);
    if (q == NULL) return false;
    for (size_t i = 0; i < l->q_len; i++)
        q[i] = l->queue[(l->q_head + i) % l->q_cap];
    free(l->queue);
    l->queue = q;
    l->q_cap = cap;
    l->q_head = 0;
    return true;
}

static bool q_push(fgc_loop_t *l, req_t r, bool front) {
    if (!q_grow(l)) return false;
    if (front) {
        l->q_head = (l->q_head + l->q_cap - 1) % l->q_cap;
        l->queue[l->q_head] = r;
    } else {
        l->queue[(l->q_head + l->q_len) % l->q_cap] = r;
    }
    l->q_len++;
    return true;
}

static req_t q_pop(fgc_loop_t *l) {
    FG_ASSERT(l->q_len > 0);
    req_t r = l->queue[l->q_head];
    l->q_head = (l->q_head + 1) % l->q_cap;
    l->q_len--;
    return r;
}

static void heap_swap(tmr_t *a, tmr_t *b) {
    tmr_t t = *a;
    *a = *b;
    *b = t;
}

int fgc_loop_timer(fgc_loop_t *l, const fgc_client_t *c, uint32_t tag, int64_t due_ns) {
    FG_ASSERT(c->timer != NULL);
    if (l->aborting) return -1;
    if (l->heap_len == l->heap_cap) {
        if (l->heap_cap >= l->heap_max) return -1;
        size_t cap = l->heap_cap * 2 < l->heap_max ? l->heap_cap * 2 : l->heap_max;
        tmr_t *h = realloc(l->heap, cap * sizeof *h);
        if (h == NULL) return -1;
        l->heap = h;
        l->heap_cap = cap;
    }
    size_t i = l->heap_len++;
    l->heap[i] = (tmr_t){.due_ns = due_ns, .client = c, .tag = tag};
    while (i > 0 && l->heap[(i - 1) / 2].due_ns > l->heap[i].due_ns) {
        heap_swap(&l->heap[(i - 1) / 2], &l->heap[i]);
        i = (i - 1) / 2;
    }
    return 0;
}

static tmr_t heap_pop(fgc_loop_t *l) {
    FG_ASSERT(l->heap_len > 0);
    tmr_t top = l->heap[0];
    l->heap[0] = l->heap[--l->heap_len];
    for (size_t i = 0;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->heap_len && l->heap[a].due_ns < l->heap[m].due_ns) m = a;
        if (b < l->heap_len && l->heap[b].due_ns < l->heap[m].due_ns) m = b;
        if (m == i) break;
        heap_swap(&l->heap[i], &l->heap[m]);
        i = m;
    }
    return top;
}

static void fire_timers(fgc_loop_t *l, int64_t now_ns) {
    for (int n = 0; n < TIMERS_PER_STEP && l->heap_len > 0 && l->heap[0].due_ns <= now_ns; n++) {
        tmr_t t = heap_pop(l);
        t.client->timer(t.client->ctx, t.tag);
    }
}

/* ---- life cycle -------------------------------------------------------------------------- */

fgc_loop_t *fgc_loop_new(const fgc_target_t *t, int connections, int timeout_ms, size_t queue_max) {
    FG_ASSERT(connections >= 1 && connections <= FGC_CONNECTIONS_MAX);
    FG_ASSERT(queue_max >= 16);
    fgc_loop_t *l = calloc(1, sizeof *l);
    if (l == NULL) return NULL;
    l->target = *t;
    l->timeout_ns = (int64_t)timeout_ms * 1000000;
    l->conn_count = (uint32_t)connections;
    l->q_max = l->heap_max = queue_max;
    l->q_cap = l->heap_cap = 16;
    l->conns = calloc((size_t)connections, sizeof *l->conns);
    l->idle = calloc((size_t)connections, sizeof *l->idle);
    l->closed = calloc((size_t)connections, sizeof *l->closed);
    l->queue = malloc(l->q_cap * sizeof *l->queue);
    l->heap = malloc(l->heap_cap * sizeof *l->heap);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!l->conns || !l->idle || !l->closed || !l->queue || !l->heap || l->epfd < 0) {
        if (l->epfd >= 0) close(l->epfd);
        l->epfd = -1;
        fgc_loop_free(l);
        return NULL;
    }
    for (uint32_t i = 0; i < l->conn_count; i++) {
        conn_t *c = &l->conns[i];
        c->fd = -1;
        fg_buf_init(&c->out, FGC_REQUEST_BYTES_MAX);
        fg_buf_init(&c->body, FGC_BODY_BYTES_MAX);
        c->in_closed = true;
        l->closed[l->closed_len++] = l->conn_count - 1 - i; /* pops 0, 1, 2, ... */
    }
    return l;
}

void fgc_loop_free(fgc_loop_t *l) {
    if (l == NULL) return;
    for (uint32_t i = 0; l->conns && i < l->conn_count; i++) {
        if (l->conns[i].fd >= 0) close(l->conns[i].fd);
        fg_buf_free(&l->conns[i].out);
        fg_buf_free(&l->conns[i].body);
    }
    if (l->epfd >= 0) close(l->epfd);
    free(l->conns);
    free(l->idle);
    free(l->closed);
    free(l->queue);
    free(l->heap);
    free(l);
}

/* ---- connections ------------------------------------------------------------------------- */

/* Sets whether EPOLLOUT is watched; a syscall only when that changes (once per request). */
static void watch(fgc_loop_t *l, conn_t *c, bool out) {
    if (c->out_watched == out) return;
    c->out_watched = out;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0u),
                             .data.u32 = (uint32_t)(c - l->conns)};
    /* MOD on a registered fd cannot fail but for a bug; ADD was done at connect. */
    FG_ASSERT(epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0);
}

/* Closes the socket if open; either way the connection goes back on the closed stack. */
static void conn_close(fgc_loop_t *l, conn_t *c) {
    if (c->fd >= 0) {
        close(c->fd); /* closing removes it from the epoll set */
        c->fd = -1;
        l->open--;
    }
    c->state = C_CLOSED;
    c->reused = false;
    if (!c->in_closed) {
        c->in_closed = true;
        l->closed[l->closed_len++] = (uint32_t)(c - l->conns);
    }
}

static void conn_idle(fgc_loop_t *l, conn_t *c) {
    c->state = C_IDLE;
    if (!c->in_idle) {
        c->in_idle = true;
        l->idle[l->idle_len++] = (uint32_t)(c - l->conns);
    }
}

/* Starts a non-blocking connect; false (connection left closed) when it fails at once. */
static bool conn_connect(fgc_loop_t *l, conn_t *c) {
    int fd = socket(l->target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&l->target.addr, l->target.addr_len) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return false;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                             .data.u32 = (uint32_t)(c - l->conns)};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return false;
    }
    c->fd = fd;
    c->out_watched = true;
    c->state = C_CONNECTING;
    c->reused = false;
    c->deadline_ns = fg_clock_mono_ns() + l->timeout_ns;
    l->open++;
    l->stats.connects++;
    return true;
}

static void call_done(const req_t *r, const fgc_answer_t *a) {
    r->client->done(r->client->ctx, r->tag, a);
}

/* Tells the request's client that no answer came (why; timed_out when its time ran out). */
static void answer_lost(const req_t *r, const char *why, bool timed_out) {
    fgc_answer_t a = {.status = 0,
                      .timed_out = timed_out,
                      .error = why,
                      .retry_after_s = -1,
                      .body = "",
                      .latency_ns = fg_clock_mono_ns() - r->start_ns};
    call_done(r, &a);
}

/* The bound request has no answer: sends it once more (stale keep-alive) or reports it. */
static void conn_fail(fgc_loop_t *l, conn_t *c, const char *why, bool timed_out) {
    req_t r = c->req;
    bool had = c->has_req;
    bool resend = had && c->reused && !c->got_bytes && !timed_out && !(r.flags & REQ_RESENT);
    if (had) {
        c->has_req = false;
        l->inflight--;
    }
    conn_close(l, c);
    if (!had) return;
    if (resend) {
        r.flags |= REQ_RESENT;
        if (q_push(l, r, true)) {
            l->stats.resends++;
            return;
        }
    }
    if (timed_out)
        l->stats.timeouts++;
    else
        l->stats.transport_errors++;
    answer_lost(&r, why, timed_out);
}

/* The answer is complete: the connection goes back to the idle stack (or closes). */
static void conn_finish(fgc_loop_t *l, conn_t *c, bool must_close) {
    req_t r = c->req;
    fgc_answer_t a = {.status = c->resp.status,
                      .retry_after_s = c->resp.retry_after_s,
                      .body = c->body.data ? c->body.data : "",
                      .body_len = c->body.len,
                      .latency_ns = fg_clock_mono_ns() - r.start_ns};
    c->has_req = false;
    l->inflight--;
    c->reused = true;
    if (must_close || c->resp.close) {
        conn_close(l, c);
    } else {
        watch(l, c, false);
        conn_idle(l, c);
    }
    call_done(&r, &a); /* the body buffer is reset only when the next request is bound */
}

static bool on_body(void *ctx, const char *p, size_t n) {
    conn_t *c = ctx;
    if (c->req.flags & FGC_REQ_STREAM)
        return c->req.client->body(c->req.client->ctx, c->req.tag, p, n);
    fg_buf_add(&c->body, p, n);
    return !c->body.overflow;
}

static void conn_write(fgc_loop_t *l, conn_t *c) {
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(l, c, true);
            return;
        } else {
            conn_fail(l, c, "connection reset on write", false);
            return;
        }
    }
    watch(l, c, false);
}

/* Gives `r` to connection `c` (idle or closed). */
static void conn_bind(fgc_loop_t *l, conn_t *c, req_t r) {
    c->req = r;
    c->has_req = true;
    c->got_bytes = false;
    l->inflight++;
    fg_buf_reset(&c->out);
    fg_buf_reset(&c->body);
    c->out_off = 0;
    r.client->write(r.client->ctx, r.tag, &c->out);
    FG_ASSERT(!c->out.overflow && c->out.len > 0); /* the crowd's requests are small */
    fgc_http_resp_init(&c->resp, on_body, c);
    if (c->state == C_CLOSED && !conn_connect(l, c)) {
        l->stats.connect_failures++;
        conn_fail(l, c, "connect failed", false);
        return;
    }
    c->deadline_ns = fg_clock_mono_ns() + l->timeout_ns;
    if (c->state == C_IDLE) {
        c->state = C_BUSY;
        conn_write(l, c);
    }
}

static conn_t *pop_stack(fgc_loop_t *l, uint32_t *stack, size_t *len, int want) {
    while (*len > 0) {
        conn_t *c = &l->conns[stack[--*len]];
        if (want == C_IDLE)
            c->in_idle = false;
        else
            c->in_closed = false;
        if (c->state == want) return c;
    }
    return NULL;
}

static void dispatch(fgc_loop_t *l) {
    while (l->q_len > 0) {
        conn_t *c = pop_stack(l, l->idle, &l->idle_len, C_IDLE);
        if (c == NULL) c = pop_stack(l, l->closed, &l->closed_len, C_CLOSED);
        if (c == NULL) return;
        conn_bind(l, c, q_pop(l));
    }
}

void fgc_loop_pause(fgc_loop_t *l, int64_t ms) {
    int64_t until = fg_clock_mono_ns() + ms * 1000000;
    for (int64_t now = fg_clock_mono_ns(); now < until; now = fg_clock_mono_ns()) {
        int64_t left_ms = (until - now + 999999) / 1000000;
        int wait_ms = left_ms < FGC_LOOP_WAIT_MS_MAX ? (int)left_ms : FGC_LOOP_WAIT_MS_MAX;
        if (fgc_loop_step(l, wait_ms) != 0) return;
    }
}

void fgc_loop_connect_all(fgc_loop_t *l) {
    for (conn_t *c; (c = pop_stack(l, l->closed, &l->closed_len, C_CLOSED)) != NULL;) {
        if (!conn_connect(l, c)) {
            l->stats.connect_failures++;
            c->in_closed = true; /* back where it was; the next attempt comes with a request */
            l->closed[l->closed_len++] = (uint32_t)(c - l->conns);
            return;
        }
    }
}

/* ---- events ------------------------------------------------------------------------------ */

static void on_writable(fgc_loop_t *l, conn_t *c) {
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            l->stats.connect_failures++;
            conn_fail(l, c, "connect failed", false);
            return;
        }
        if (!c->has_req) {
            watch(l, c, false);
            conn_idle(l, c);
            return;
        }
        c->state = C_BUSY;
    }
    if (c->state == C_BUSY) conn_write(l, c);
}

/* Feeds received bytes; returns false when the connection is done with (finished or failed). */
static bool feed(fgc_loop_t *l, conn_t *c, size_t n) {
    c->got_bytes = true;
    /* A streamed answer (an export) may take long; it fails when it stalls, not when big. */
    if (c->req.flags & FGC_REQ_STREAM) c->deadline_ns = fg_clock_mono_ns() + l->timeout_ns;
    ssize_t k = fgc_http_feed(&c->resp, l->rbuf, n);
    if (k < 0) {
        conn_fail(l, c, c->resp.error, false);
        return false;
    }
    if (fgc_http_done(&c->resp)) {
        conn_finish(l, c, (size_t)k < n); /* bytes past the answer: not ours, close */
        return false;
    }
    return true;
}

static void on_readable(fgc_loop_t *l, conn_t *c) {
    if (c->state == C_CONNECTING) return; /* EPOLLOUT or an error comes with it */
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = read(c->fd, l->rbuf, sizeof l->rbuf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (c->state == C_IDLE) { /* the server closed a kept-alive connection (or misbehaved) */
            conn_close(l, c);
            return;
        }
        if (n < 0) {
            conn_fail(l, c, "connection reset", false);
            return;
        }
        if (n == 0) {
            if (fgc_http_eof(&c->resp) == 0)
                conn_finish(l, c, true);
            else
                conn_fail(l, c, c->resp.error, false);
            return;
        }
        if (!feed(l, c, (size_t)n)) return;
    }
}

static void sweep(fgc_loop_t *l, int64_t now_ns) {
    if (now_ns < l->next_sweep_ns) return;
    l->next_sweep_ns = now_ns + (int64_t)FGC_LOOP_WAIT_MS_MAX * 1000000;
    for (uint32_t i = 0; i < l->conn_count; i++) {
        conn_t *c = &l->conns[i];
        if (c->fd < 0 || c->state == C_IDLE || now_ns < c->deadline_ns) continue;
        if (!c->has_req) { /* a warm-up connect that never completed */
            l->stats.connect_failures++;
            conn_close(l, c);
            continue;
        }
        conn_fail(l, c, c->state == C_CONNECTING ? "connect timed out" : "no answer in time", true);
    }
}

int fgc_loop_step(fgc_loop_t *l, int wait_ms) {
    int64_t now = fg_clock_mono_ns();
    fire_timers(l, now);
    dispatch(l);
    if (l->heap_len > 0) {
        int64_t until_ms = (l->heap[0].due_ns - now + 999999) / 1000000;
        if (until_ms < wait_ms) wait_ms = until_ms < 0 ? 0 : (int)until_ms;
    }
    if (wait_ms > FGC_LOOP_WAIT_MS_MAX) wait_ms = FGC_LOOP_WAIT_MS_MAX;
    struct epoll_event ev[EVENTS_PER_WAIT];
    int n = epoll_wait(l->epfd, ev, EVENTS_PER_WAIT, wait_ms);
    if (n < 0 && errno != EINTR) return -1;
    for (int i = 0; i < n; i++) {
        conn_t *c = &l->conns[ev[i].data.u32];
        if (c->fd < 0) continue; /* closed by an earlier event of this batch */
        if (ev[i].events & (EPOLLOUT | EPOLLERR)) on_writable(l, c);
        if (c->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR)))
            on_readable(l, c);
    }
    now = fg_clock_mono_ns();
    sweep(l, now);
    fire_timers(l, now);
    dispatch(l);
    return 0;
}

/* ---- the rest ---------------------------------------------------------------------------- */

int fgc_loop_submit(fgc_loop_t *l, const fgc_client_t *c, uint32_t tag, unsigned flags,
                    int64_t start_ns) {
    FG_ASSERT(c->write && c->done && (!(flags & FGC_REQ_STREAM) || c->body));
    if (l->aborting) return -1;
    req_t r = {.client = c,
               .tag = tag,
               .flags = flags & FGC_REQ_STREAM,
               .start_ns = start_ns ? start_ns : fg_clock_mono_ns()};
    return q_push(l, r, false) ? 0 : -1;
}

void fgc_loop_abort_all(fgc_loop_t *l, const char *why) {
    l->aborting = true; /* done callbacks below cannot queue more */
    for (uint32_t i = 0; i < l->conn_count; i++) {
        conn_t *c = &l->conns[i];
        if (!c->has_req) continue;
        req_t r = c->req;
        c->has_req = false;
        l->inflight--;
        conn_close(l, c); /* its answer, if it still comes, is not read */
        answer_lost(&r, why, false);
    }
    l->aborting = false;
    fgc_loop_drop_queued(l, why);
}

void fgc_loop_drop_queued(fgc_loop_t *l, const char *why) {
    l->aborting = true;
    while (l->q_len > 0) {
        req_t r = q_pop(l);
        answer_lost(&r, why, false);
    }
    l->heap_len = 0;
    l->aborting = false;
}

size_t fgc_loop_queued(const fgc_loop_t *l) {
    return l->q_len;
}
size_t fgc_loop_inflight(const fgc_loop_t *l) {
    return l->inflight;
}
size_t fgc_loop_timers(const fgc_loop_t *l) {
    return l->heap_len;
}
size_t fgc_loop_open_connections(const fgc_loop_t *l) {
    return l->open;
}
const fgc_loop_stats_t *fgc_loop_stats(const fgc_loop_t *l) {
    return &l->stats;
}
const char *fgc_loop_host(const fgc_loop_t *l) {
    return l->target.host;
}
