/*
 * server.c — floodgate's HTTP/1.1 server on epoll; see server.h. Why floodgate has its own
 * rather than libmicrohttpd, which it used first: docs/architecture.md. The rules for hostile
 * input (refusals, their statuses and problem codes, admission of writes, deadlines, the
 * connection limit) are those the first server enforced, kept so clients see the same answers.
 *
 * Threads. N loop threads, each with its own epoll set, its own listening socket (SO_REUSEPORT
 * on one address: the kernel spreads new connections over them by a hash of the peer, so no
 * thread wakes for a connection another takes) and its own eventfd. A connection lives on the
 * thread that accepted it; only that thread reads, writes, or frees it. Before the listeners
 * are bound, the address is bound once without SO_REUSEPORT, so a port another process already
 * listens on is refused ("in use") instead of being silently shared with it.
 *
 * A request's life: its head is read into the connection's read buffer (FG_CONN_MEMORY_BYTES_MAX,
 * taken from a per-thread pool when bytes arrive and given back when the connection is idle
 * with nothing buffered, so an idle connection costs a few hundred bytes) and parsed in place
 * (http/ev_parse.c); a body that fits behind the head stays there, a larger or chunked one is
 * collected into an fg_buf, bounded. The API reads the request only while
 * fg_api_handle runs (its path and header strings point into the read buffer). A write is
 * parked this way: marked parked, then submitted; the command's done
 * callback, on the writer's thread, touches no socket: it pushes the connection onto its loop
 * thread's lock-free ready stack and writes that thread's eventfd only when the thread is not
 * already signalled (a flag the thread clears before it takes the stack), so a batch of
 * hundreds of answers costs each loop thread one wake-up. Streams unpark through the same
 * stack. Pipelined requests are parsed one at a time: the next only after the current answer
 * has left.
 *
 * Answers: status line, headers and body leave in one system call: a body that fits is copied
 * behind the head in the request's output buffer (most answers are a few hundred bytes) and
 * sent with send(); a larger one is sent from the API's own allocation with sendmsg() and two
 * iovecs, without copying it. What the socket does not take waits for EPOLLOUT. Sockets are edge-triggered; a read that
 * returns less than it asked for means the socket is drained (a later byte raises a new edge),
 * which saves the read that would return EAGAIN.
 *
 * Deadlines are kept by each loop thread, with no sweeper thread: every deadline of one kind is
 * "now + the same constant", so a FIFO list per kind (idle, receiving, lingering) is ordered by
 * deadline by construction and moving a connection is O(1); epoll_wait sleeps until the first
 * head is due (at most FG_CONN_SWEEP_MS, for the refusal log). A request line
 * must end within FG_CONN_TIMEOUT_S of the connection being ready for it, then its headers and
 * body must arrive within FG_REQUEST_RECV_S_MAX; parked and streaming connections have no
 * deadline. Memory of a connection is freed only at the end of a pass over the events, and
 * only when it is not on a ready stack, so no event or late wake-up ever finds it freed.
 *
 * Closing: a connection closed after its answer (Connection: close, refused framing,
 * HTTP/1.0) is half-closed and what it still sends is read and dropped for up to
 * FG_EV_LINGER_MS, so the answer is not lost to a reset. A client that half-closes while its
 * write is parked still gets the answer. Lines must end with CRLF (a bare LF is a control
 * byte, refused). Refusals of malformed framing (request line, header line, Content-Length and
 * chunk-size syntax, 414/431 past the read buffer, 505) are problem+json like every other
 * and are logged as event=http_error.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "http/ev_parse.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/log.h"

#define FG_STREAM_BLOCK_BYTES     16384
#define FG_BODY_DISCARD_BYTES_MAX (4 * FG_BODY_BYTES_MAX)
#define FG_EV_LINGER_MS           2000 /* dropping what a client sends after a closing answer */
#define FG_EV_EVENTS_MAX          256  /* epoll events taken per wake-up */
#define FG_EV_POOL_MAX            256  /* idle read buffers and request contexts kept per thread */
#define FG_EV_OUT_BYTES           1024 /* an answer's head, and its body when it fits behind */
#define FG_EV_STEPS_MAX           64   /* state changes of one connection before others' turn */
#define FG_EV_BACKLOG             4096 /* listen() backlog of each thread's socket */
#define FG_EV_CHUNK_HEAD_BYTES    10   /* "%x\r\n" of a stream block: up to 8 hex digits */
#define FG_EV_LOG_PATH_BYTES      128  /* of the path, in the log line */
#define FG_EV_LOG_METHOD_BYTES    16

_Static_assert(FG_STREAM_BLOCK_BYTES < (1 << 28), "a block's size fits its chunk head");
_Static_assert(FG_URL_BYTES_MAX < FG_CONN_MEMORY_BYTES_MAX, "a long URL is seen whole");

#define NS_PER_S  1000000000LL
#define NS_PER_MS 1000000LL

/* Deadline lists: each connection is on exactly one. */
enum { L_NONE, L_IDLE, L_RECV, L_LINGER, L_DEAD, L_COUNT };

/* A connection's state. */
enum {
    C_HEAD,   /* reading a request head, or waiting for one */
    C_BODY,   /* reading its body */
    C_PARKED, /* its command waits for the writer */
    C_SEND,   /* output is leaving: an answer, a stream's head or block, a 100 Continue */
    C_STREAM, /* a stream answer: pulling its next block, or parked until it has one */
    C_LINGER, /* the answer left and the write side is shut: dropping what still arrives */
};

/* What follows when the output has left. */
enum { AFTER_BODY, AFTER_DONE, AFTER_STREAM, AFTER_STREAM_END };

/* How an answer's body is framed. */
enum { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE };

typedef struct loop loop_t;
typedef struct conn conn_t;

/* One request, from its head to its answer having left. Pooled per thread; zeroed when taken. */
typedef struct req {
    struct req *pool_next;
    fg_ev_head_t head;
    size_t head_len; /* bytes of the head at the start of the read buffer */
    size_t next;     /* where the next request starts in the read buffer, once the body ended */
    bool chunked, close_after, keep_alive, is_head;
    uint64_t body_left;    /* Content-Length bytes still to come */
    size_t body_bytes;     /* received, kept or not (chunk framing included) */
    fg_ev_chunked_t chunk; /* a chunked body's decoder */
    fg_buf_t body;         /* a body that is not in the read buffer */
    const char *body_data; /* the whole body, at dispatch */
    size_t body_len;
    fg_route_t route;
    int status;
    int64_t t0_ns;       /* monotonic: the request line ended */
    int64_t admitted_ns; /* when handed to the writer */
    char method[FG_EV_LOG_METHOD_BYTES];
    char path[FG_EV_LOG_PATH_BYTES]; /* for the log line; empty when logs are quiet */
    /* output: head_out[0..head_out_len) then body_out[0..body_out_len), out_off of it sent */
    size_t head_out_len, body_out_len, out_off;
    char *body_out;
    bool body_out_owned;
    int after;
    fg_api_stream_t *stream;
    char *block; /* a stream's block: chunk head, FG_STREAM_BLOCK_BYTES, CRLF */
    fg_api_slot_t slot;
    char head_out[FG_EV_OUT_BYTES]; /* last: not zeroed when the context is taken */
} req_t;

struct conn {
    loop_t *loop;
    conn_t *prev, *next; /* in loop->lists[list] */
    conn_t *ready_next;  /* on loop->ready, while queued */
    int64_t deadline_ns; /* monotonic; on the timed lists */
    req_t *req;          /* NULL between requests */
    char *rbuf;          /* NULL while idle with nothing buffered */
    size_t rlen;         /* bytes in rbuf */
    size_t scan;         /* where the search for the head's end resumes */
    size_t lingered;     /* bytes dropped while lingering */
    int64_t t0_ns;       /* the current request line ended */
    int fd;
    uint8_t state, list;
    bool readable; /* edge seen and not drained */
    bool rdhup;    /* the peer shut its write side */
    bool gone;     /* hang-up or error: the peer is gone */
    bool closed;   /* descriptor closed; memory freed at the end of the pass */
    bool reqline;  /* the current request line has ended */
    bool stream_parked;
    atomic_bool queued; /* on the ready stack */
    uint8_t family;
    uint8_t addr[16];
};

struct loop {
    fg_http_t *srv;
    int epfd, lfd, efd;
    pthread_t thread;
    bool started;
    /* written by other threads */
    _Alignas(64) _Atomic(conn_t *) ready;
    atomic_bool signalled;
    /* the loop thread's own */
    _Alignas(64) conn_t *head[L_COUNT], *tail[L_COUNT];
    int64_t now_ns;
    int64_t tick_ns; /* last refusal and slow-close log */
    long slow_closed;
    char *free_bufs; /* pooled read buffers, linked through their first bytes */
    req_t *free_reqs;
    int free_bufs_n, free_reqs_n;
    time_t date_s;
    char date[64]; /* "Date: ...\r\n" of date_s */
};

struct fg_http {
    fg_api_t *api;
    fg_http_metrics_t metrics;
    atomic_bool closing; /* refuse new connections */
    atomic_bool stopping;

    /* admission of writes (admit) */
    atomic_long writing;             /* writes submitted and not yet answered by the writer */
    atomic_long writing_max;         /* buyers' writes admitted at once */
    atomic_bool writing_pressed;     /* writes reached writing_max in the current window */
    _Atomic int64_t admit_worst_ns;  /* longest wait at the writer in the current window */
    _Atomic int64_t admit_window_ns; /* monotonic start of the current window */
    int port;
    long connections_max; /* more are closed at accept */
    unsigned threads;
    atomic_long refused; /* closed at accept since the last log */
    loop_t *loops;
};

static _Thread_local loop_t *tl_loop; /* the loop this thread runs, if any */

static fg_method_t parse_method(const char *m) {
    if (strcmp(m, "GET") == 0) return FG_GET;
    if (strcmp(m, "POST") == 0) return FG_POST;
    if (strcmp(m, "PUT") == 0) return FG_PUT;
    if (strcmp(m, "DELETE") == 0) return FG_DELETE;
    return FG_OTHER;
}

/* ---------------------------------------------------------------- lists and pools */

static void list_unlink(loop_t *l, conn_t *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head[c->list] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail[c->list] = c->prev;
    c->prev = c->next = NULL;
}

/* Appends c, on no list, to `list` with a deadline `after_ns` from now: every deadline on a
 * list is now + that list's constant, so appending keeps it ordered. */
static void list_append(conn_t *c, int list, int64_t after_ns) {
    loop_t *l = c->loop;
    FG_ASSERT(l->tail[list] == NULL || list == L_NONE || list == L_DEAD ||
              l->tail[list]->deadline_ns <= l->now_ns + after_ns);
    c->list = (uint8_t)list;
    c->deadline_ns = l->now_ns + after_ns;
    c->prev = l->tail[list];
    if (c->prev)
        c->prev->next = c;
    else
        l->head[list] = c;
    l->tail[list] = c;
}

static void list_put(conn_t *c, int list, int64_t after_ns) {
    list_unlink(c->loop, c);
    list_append(c, list, after_ns);
}

static char *buf_get(loop_t *l) {
    char *b = l->free_bufs;
    if (b == NULL) return malloc(FG_CONN_MEMORY_BYTES_MAX);
    memcpy(&l->free_bufs, b, sizeof(char *));
    l->free_bufs_n--;
    return b;
}

static void buf_put(loop_t *l, char *b) {
    if (b == NULL) return;
    if (l->free_bufs_n >= FG_EV_POOL_MAX) {
        free(b);
        return;
    }
    memcpy(b, &l->free_bufs, sizeof(char *));
    l->free_bufs = b;
    l->free_bufs_n++;
}

static req_t *req_get(loop_t *l) {
    req_t *r = l->free_reqs;
    if (r != NULL) {
        l->free_reqs = r->pool_next;
        l->free_reqs_n--;
    } else if ((r = malloc(sizeof *r)) == NULL) {
        return NULL;
    }
    memset(r, 0, offsetof(req_t, head_out));
    fg_buf_init(&r->body, FG_BODY_BYTES_MAX);
    return r;
}

/* Frees what a request owns and pools its context. Its command is finished (answered, or never
 * submitted): nothing else refers to it. */
static void req_put(loop_t *l, req_t *r) {
    fg_api_slot_release(&r->slot);
    free(r->slot.cmd.body);
    free(r->slot.cmd.idem_body);
    fg_buf_free(&r->body);
    if (r->body_out_owned) free(r->body_out);
    if (r->stream != NULL) {
        fg_api_stream_free(r->stream);
        atomic_fetch_sub(&l->srv->metrics.streams, 1);
    }
    free(r->block);
    if (l->free_reqs_n >= FG_EV_POOL_MAX) {
        free(r);
        return;
    }
    r->pool_next = l->free_reqs;
    l->free_reqs = r;
    l->free_reqs_n++;
}

/* ---------------------------------------------------------------- ready stack */

/* Queues c for its loop thread; any thread. The first push after the thread took the stack
 * writes its eventfd; later ones find it signalled. A push from the loop thread itself needs no
 * wake-up: the thread looks at the stack after every pass. */
static void ready_push(conn_t *c) {
    if (atomic_exchange(&c->queued, true)) return;
    loop_t *l = c->loop;
    conn_t *top = atomic_load_explicit(&l->ready, memory_order_relaxed);
    do {
        c->ready_next = top;
    } while (!atomic_compare_exchange_weak_explicit(&l->ready, &top, c, memory_order_seq_cst,
                                                    memory_order_relaxed));
    /* A plain load first: while the thread is signalled (most pushes of a batch) the flag's
     * cache line is only read. Both are sequentially consistent with the thread's clearing of
     * the flag and its taking of the stack, so a push the thread may miss always finds the
     * flag cleared and signals. */
    if (tl_loop == l || atomic_load(&l->signalled) || atomic_exchange(&l->signalled, true)) return;
    uint64_t one = 1;
    ssize_t n = write(l->efd, &one, sizeof one);
    (void)n; /* an eventfd write fails only when its counter is full: it is then signalled */
}

/* ---------------------------------------------------------------- closing */

/* Closes the descriptor and frees what the connection holds but its own memory, which waits
 * for the end of the pass (bury). A parked connection is never closed: the writer answers it. */
static void conn_close(conn_t *c) {
    if (c->closed) return;
    loop_t *l = c->loop;
    FG_ASSERT(c->state != C_PARKED);
    c->closed = true;
    close(c->fd);
    if (c->req != NULL) req_put(l, c->req);
    c->req = NULL;
    buf_put(l, c->rbuf);
    c->rbuf = NULL;
    list_put(c, L_DEAD, 0);
    atomic_fetch_sub(&l->srv->metrics.connections, 1);
}

/* Frees closed connections that no ready stack holds. */
static void bury(loop_t *l) {
    for (conn_t *c = l->head[L_DEAD]; c != NULL;) {
        conn_t *next = c->next;
        if (!atomic_load(&c->queued)) {
            list_unlink(l, c);
            free(c);
        }
        c = next;
    }
}

/* ---------------------------------------------------------------- answers */

static void account(req_t *r, fg_http_t *h, int status) {
    r->status = status;
    atomic_fetch_add_explicit(&h->metrics.requests[r->route][fg_status_slot(status)], 1,
                              memory_order_relaxed);
    double secs = (double)(fg_clock_mono_ns() - r->t0_ns) / 1e9;
    fg_hist_observe(&h->metrics.request_seconds, secs);
    if (!fg_log_quiet())
        FG_LOG_INFO("event=request method=%s path=\"%s\" route=%s status=%d us=%.0f", r->method,
                    r->path, fg_route_name(r->route), status, secs * 1e6);
}

static const char *reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* "Date: <IMF-fixdate>\r\n", formatted once a second per thread (no locale: fixed names). */
static const char *date_line(loop_t *l) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != l->date_s || l->date[0] == '\0') {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(l->date, sizeof l->date, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        l->date_s = ts.tv_sec;
    }
    return l->date;
}

/* Appends to the head being built; the head's size is checked once at the end. */
typedef struct {
    char *p, *end;
} put_t;

static void put_str(put_t *o, const char *s) {
    size_t n = strlen(s);
    if ((size_t)(o->end - o->p) < n) {
        o->p = o->end;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void put_u64(put_t *o, uint64_t v) {
    char d[24];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && o->p < o->end)
        *o->p++ = d[--n];
}

/* Writes the status line and headers of an answer into r->head_out. */
static void build_head(loop_t *l, req_t *r, int status, const char *type, size_t body_len,
                       int framing, int retry_after_s, const char *allow) {
    put_t o = {r->head_out, r->head_out + sizeof r->head_out};
    bool closing = r->close_after || !r->keep_alive || framing == FRAME_CLOSE;
    put_str(&o, "HTTP/1.1 ");
    put_u64(&o, (uint64_t)status);
    put_str(&o, " ");
    put_str(&o, reason(status));
    put_str(&o, "\r\nContent-Type: ");
    put_str(&o, type);
    if (framing == FRAME_LENGTH) {
        put_str(&o, "\r\nContent-Length: ");
        put_u64(&o, body_len);
    } else if (framing == FRAME_CHUNKED) {
        put_str(&o, "\r\nTransfer-Encoding: chunked");
    }
    put_str(&o, "\r\nCache-Control: no-store\r\n");
    if (retry_after_s > 0) {
        put_str(&o, "Retry-After: ");
        put_u64(&o, (uint64_t)retry_after_s);
        put_str(&o, "\r\n");
    }
    if (allow != NULL) {
        put_str(&o, "Allow: ");
        put_str(&o, allow);
        put_str(&o, "\r\n");
    }
    if (closing)
        put_str(&o, "Connection: close\r\n");
    else if (r->head.minor_version == 0)
        put_str(&o, "Connection: keep-alive\r\n");
    put_str(&o, date_line(l));
    put_str(&o, "\r\n");
    /* every part is short and bounded (types and Allow are static strings) */
    FG_ASSERT(o.p < o.end);
    r->head_out_len = (size_t)(o.p - r->head_out);
    if (closing) r->close_after = true;
}

static void output(conn_t *c, int after) {
    c->req->out_off = 0;
    c->req->after = after;
    c->state = C_SEND;
}

/* Queues a complete answer; takes `body` (malloc'd, or static when !owned). */
static void send_body(conn_t *c, int status, char *body, bool owned, const char *type,
                      int retry_after_s, const char *allow) {
    req_t *r = c->req;
    size_t len = body != NULL ? strlen(body) : 0;
    build_head(c->loop, r, status, type, len, FRAME_LENGTH, retry_after_s, allow);
    if (r->is_head) { /* the head says how long the body would be; the body stays */
        if (owned) free(body);
        body = NULL;
        len = 0;
    }
    if (len > 0 && len <= sizeof r->head_out - r->head_out_len) {
        /* small (most answers): behind the head, so one send() takes both */
        memcpy(r->head_out + r->head_out_len, body, len);
        r->head_out_len += len;
        if (owned) free(body);
        body = NULL;
        len = 0;
    }
    r->body_out = body;
    r->body_out_len = len;
    r->body_out_owned = owned && body != NULL;
    output(c, AFTER_DONE);
    account(r, c->loop->srv, status);
}

static void send_answer(conn_t *c, fg_api_answer_t *ans) {
    const char *type = ans->content_type ? ans->content_type
                       : ans->code       ? "application/problem+json"
                                         : "application/json";
    send_body(c, ans->status, ans->body, true, type, ans->retry_after_s, ans->allow);
    ans->body = NULL;
}

static void send_cmd(conn_t *c) {
    fg_cmd_t *cmd = &c->req->slot.cmd;
    char *body = cmd->body;
    cmd->body = NULL;
    const char *type = cmd->content_type ? cmd->content_type
                       : cmd->code       ? "application/problem+json"
                                         : "application/json";
    int retry = cmd->status == 503 || cmd->status == 429 ? FG_RETRY_AFTER_S : 0;
    send_body(c, cmd->status, body, true, type, retry, NULL);
}

static void send_problem(conn_t *c, int status, const char *code, const char *detail) {
    fg_api_answer_t ans = {0};
    fg_api_problem(&ans, status, code, "%s", detail);
    send_answer(c, &ans);
}

/* A request whose framing cannot be read (request line, header line, Content-Length or
 * chunk-size syntax, a head past the read buffer, another HTTP version): problem+json as every
 * other refusal, and the connection closes, since where the next request starts is unknown. */
static void send_malformed(conn_t *c, int status, const char *detail) {
    if (c->req == NULL && (c->req = req_get(c->loop)) == NULL) {
        conn_close(c);
        return;
    }
    req_t *r = c->req;
    if (r->t0_ns == 0) r->t0_ns = c->loop->now_ns;
    r->close_after = true;
    list_put(c, L_NONE, 0);
    FG_LOG_WARN("event=http_error status=%d detail=\"%s\"", status, detail);
    const char *code = status == 413   ? "body_too_large"
                       : status == 505 ? "not_implemented"
                                       : "invalid_field";
    send_problem(c, status, code, detail);
}

/* ---------------------------------------------------------------- admission */

/* Buyers' writes are admitted by a latency target, not only up to FG_PARKED_MAX
 * (docs/reliability.md, "Overload"). Past the limit a buyer's write is answered 503 at once,
 * on this thread, with no batch and no disk work; operators' writes are held only to
 * FG_PARKED_MAX. */
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

/* The writer's done callback, on the writer's (or commit) thread: no socket here. */
static void cmd_done(fg_cmd_t *cmd) {
    conn_t *c = cmd->ctx;
    admit_done(c->loop->srv, fg_clock_mono_ns() - c->req->admitted_ns);
    ready_push(c); /* the last touch: the loop thread may answer and reuse c at once */
}

/* ---------------------------------------------------------------- streams */

/* park runs on the loop thread, inside fg_api_stream_read; unpark on any thread. */
static void stream_park(void *ctx) {
    ((conn_t *)ctx)->stream_parked = true;
}
static void stream_unpark(void *ctx) {
    ready_push(ctx);
}

static void send_stream(conn_t *c, fg_api_answer_t *ans) {
    req_t *r = c->req;
    r->block = malloc(FG_EV_CHUNK_HEAD_BYTES + FG_STREAM_BLOCK_BYTES + 2);
    if (r->block == NULL) {
        fg_api_stream_free(ans->stream);
        free(ans->body);
        send_problem(c, 503, "overloaded", "out of memory");
        return;
    }
    r->stream = ans->stream;
    free(ans->body);
    atomic_fetch_add(&c->loop->srv->metrics.streams, 1);
    /* HTTP/1.0 has no chunked coding: the body ends when the connection does */
    int framing = r->head.minor_version == 0 ? FRAME_CLOSE : FRAME_CHUNKED;
    build_head(c->loop, r, ans->status, ans->content_type, 0, framing, 0, NULL);
    r->body_out = NULL;
    r->body_out_len = 0;
    output(c, r->is_head ? AFTER_DONE : AFTER_STREAM);
    account(r, c->loop->srv, ans->status);
}

/* Pulls the stream's next block (state C_STREAM). False when it parked. */
static bool stream_pull(conn_t *c) {
    req_t *r = c->req;
    if (c->rdhup || c->gone) { /* the client went away */
        conn_close(c);
        return false;
    }
    char *data = r->block + FG_EV_CHUNK_HEAD_BYTES;
    ssize_t n =
        fg_api_stream_read(r->stream, data, FG_STREAM_BLOCK_BYTES, stream_park, stream_unpark, c);
    bool chunked = r->head.minor_version == 1;
    if (n == 0) {
        FG_ASSERT(c->stream_parked);
        return false;
    }
    if (n < 0) {
        r->body_out = chunked ? (char *)"0\r\n\r\n" : NULL;
        r->body_out_len = chunked ? 5 : 0;
        r->body_out_owned = false;
        r->head_out_len = 0;
        output(c, AFTER_STREAM_END);
        return true;
    }
    FG_ASSERT((size_t)n <= FG_STREAM_BLOCK_BYTES);
    char *start = data;
    if (chunked) {
        char hex[FG_EV_CHUNK_HEAD_BYTES + 1];
        int hl = snprintf(hex, sizeof hex, "%zx\r\n", (size_t)n);
        FG_ASSERT(hl > 0 && hl <= FG_EV_CHUNK_HEAD_BYTES);
        start = data - hl;
        memcpy(start, hex, (size_t)hl);
        memcpy(data + n, "\r\n", 2);
    }
    r->body_out = start;
    r->body_out_len = (size_t)(data + n - start) + (chunked ? 2 : 0);
    r->body_out_owned = false;
    r->head_out_len = 0;
    output(c, AFTER_STREAM);
    return true;
}

/* ---------------------------------------------------------------- dispatch */

static void client_ip(const conn_t *c, char *out, size_t cap) {
    out[0] = '\0';
    if (c->family == AF_INET || c->family == AF_INET6)
        inet_ntop(c->family, c->addr, out, (socklen_t)cap);
}

/* The read buffer is not needed while a write is parked unless the next request's bytes are in
 * it: the API has copied what it keeps. Parked writes then hold no read buffer. */
static void park(conn_t *c) {
    req_t *r = c->req;
    c->state = C_PARKED;
    list_put(c, L_NONE, 0);
    if (r->next == c->rlen) {
        buf_put(c->loop, c->rbuf);
        c->rbuf = NULL;
        c->rlen = r->next = 0;
    }
}

/* The whole request has arrived: the API answers it, streams it, or runs it on the writer. */
static void dispatch(conn_t *c) {
    req_t *r = c->req;
    fg_http_t *h = c->loop->srv;
    char *q = strchr(r->head.target, '?');
    if (q) *q++ = '\0';
    char ip[64];
    client_ip(c, ip, sizeof ip);
    const char *const *v = r->head.value;
    fg_api_request_t rq = {
        .method = parse_method(r->head.method),
        .path = r->head.target,
        .query = q ? q : "",
        .authorization = v[FG_EV_H_AUTHORIZATION],
        .idempotency_key = v[FG_EV_H_IDEMPOTENCY_KEY],
        .signature = v[FG_EV_H_SIGNATURE],
        .last_event_id = v[FG_EV_H_LAST_EVENT_ID],
        .body = r->body_data ? r->body_data : "",
        .body_len = r->body_len,
        .client_ip = ip,
    };
    fg_api_answer_t ans = {0};
    fg_answer_kind_t kind = fg_api_handle(h->api, &rq, &r->slot, &ans, &r->route);
    if (kind == FG_ANSWER_NOW) {
        send_answer(c, &ans);
        return;
    }
    if (kind == FG_ANSWER_STREAM) {
        send_stream(c, &ans);
        return;
    }
    if (!admit(h, strncmp(rq.path, "/admin/", 7) != 0)) {
        send_problem(c, 503, "overloaded", "too many requests in flight; retry");
        return;
    }
    r->slot.cmd.done = cmd_done;
    r->slot.cmd.ctx = c;
    r->admitted_ns = fg_clock_mono_ns();
    park(c); /* before the submit: the writer's answer may come before it returns */
    if (!fg_api_submit(h->api, &r->slot)) {
        atomic_fetch_sub(&h->writing, 1);
        atomic_fetch_sub(&h->metrics.parked, 1);
        c->state = C_HEAD; /* not parked after all */
        send_problem(c, 503, "overloaded", "the writer is busy or stopping; retry");
    }
}

/* The writer answered a parked request (from the ready stack). */
static void deliver(conn_t *c) {
    FG_ASSERT(c->state == C_PARKED);
    atomic_fetch_sub(&c->loop->srv->metrics.parked, 1);
    c->state = C_SEND;
    send_cmd(c);
}

/* ---------------------------------------------------------------- reading */

/* Reads into the read buffer. > 0 bytes read; 0 when nothing is there now; -1 at end of input
 * or on an error (the caller closes). The buffer is stored in the connection, which came from
 * epoll's event data; gcc 12's analyzer does not follow that pointer and reports the buffer
 * leaked. */
FG_ANALYZER_OFF("-Wanalyzer-malloc-leak")
static ssize_t conn_read(conn_t *c) {
    if (c->rbuf == NULL) {
        char *b = buf_get(c->loop);
        if (b == NULL) return -1;
        c->rbuf = b; /* the connection owns it: back to the pool when idle, or at close */
    }
    size_t space = FG_CONN_MEMORY_BYTES_MAX - c->rlen;
    FG_ASSERT(space > 0);
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, space, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            /* drained: a later byte raises a new edge (unless the end was seen: then the next
             * read must return it) */
            if ((size_t)n < space && !c->rdhup) c->readable = false;
            return n;
        }
        if (n == 0) return -1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->readable = false;
            return 0;
        }
        return -1;
    }
}
FG_ANALYZER_ON

/* Reads more when the socket has more: true when bytes came, false when the caller must wait
 * (or the connection closed). */
static bool read_more(conn_t *c) {
    if (!c->readable) return false;
    ssize_t n = conn_read(c);
    if (n < 0) conn_close(c);
    return n > 0;
}

/* Answers before the body is read; a body on its way closes the connection after. */
static void answer_early(conn_t *c, int status, const char *code, const char *detail) {
    req_t *r = c->req;
    if (r->chunked || r->body_left > 0) r->close_after = true;
    list_put(c, L_NONE, 0);
    send_problem(c, status, code, detail);
}

static bool wants_continue(const req_t *r, const conn_t *c) {
    const char *e = r->head.value[FG_EV_H_EXPECT];
    return e != NULL && r->head.minor_version == 1 && strcasecmp(e, "100-continue") == 0 &&
           (r->chunked || r->body_left > 0) && c->rlen == r->head_len;
}

static void copy_for_log(req_t *r) {
    snprintf(r->method, sizeof r->method, "%s", r->head.method);
    if (fg_log_quiet()) return;
    size_t n = strcspn(r->head.target, "?");
    if (n >= sizeof r->path) n = sizeof r->path - 1;
    for (size_t i = 0; i < n; i++) { /* no quote or control byte reaches the log */
        unsigned char ch = (unsigned char)r->head.target[i];
        r->path[i] = ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    r->path[n] = '\0';
}

/* A head that cannot be parsed. */
static void head_refused(conn_t *c, fg_ev_head_rc_t rc) {
    switch (rc) {
    case FG_EV_HEAD_DROP: send_malformed(c, 400, "not an HTTP request line"); break;
    case FG_EV_HEAD_TOO_BIG: send_malformed(c, 413, "Content-Length too large"); break;
    case FG_EV_HEAD_VERSION: send_malformed(c, 505, "HTTP version not supported"); break;
    default: send_malformed(c, 400, "malformed request line or header"); break;
    }
}

/* The head is in rbuf[0..len): parse it, refuse it, or get ready for the body. */
static void head_ready(conn_t *c, size_t len) {
    req_t *r = c->req = req_get(c->loop);
    if (r == NULL) {
        conn_close(c);
        return;
    }
    r->t0_ns = c->t0_ns;
    r->head_len = r->next = len;
    fg_ev_head_rc_t rc = fg_ev_head_parse(c->rbuf, len, &r->head);
    if (rc != FG_EV_HEAD_OK) {
        head_refused(c, rc);
        return;
    }
    const fg_ev_head_t *hd = &r->head;
    copy_for_log(r);
    r->is_head = strcmp(hd->method, "HEAD") == 0;
    r->keep_alive = hd->minor_version == 1 ? !fg_ev_connection_has(hd, "close")
                                           : fg_ev_connection_has(hd, "keep-alive");
    r->chunked = hd->count[FG_EV_H_TRANSFER_ENCODING] > 0;
    r->body_left = hd->count[FG_EV_H_CONTENT_LENGTH] > 0 ? hd->content_length : 0;
    fg_ev_chunked_init(&r->chunk);
    fg_ev_refusal_t f = fg_ev_check(hd);
    if (f.status != 0) r->close_after = true;
    if (hd->target_len > FG_URL_BYTES_MAX)
        f = (fg_ev_refusal_t){414, "invalid_field", "URL too long"};
    else if (f.status == 0 && r->body_left > FG_BODY_BYTES_MAX)
        f = (fg_ev_refusal_t){413, "body_too_large", "the body is over 64 KiB"};
    if (f.status != 0) {
        answer_early(c, f.status, f.code, f.detail);
        return;
    }
    if ((r->chunked || r->body_left > 0) && len == FG_CONN_MEMORY_BYTES_MAX) {
        send_malformed(c, 431, "no room for a body behind the headers");
        return;
    }
    c->state = C_BODY;
    if (wants_continue(r, c)) {
        memcpy(r->head_out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        r->head_out_len = 25;
        r->body_out = NULL;
        r->body_out_len = 0;
        output(c, AFTER_BODY);
    }
}

/* C_HEAD: true when the state moved on. */
static bool on_head(conn_t *c) {
    loop_t *l = c->loop;
    for (;;) {
        if (c->rlen > 0) {
            size_t skip = fg_ev_skip_lines(c->rbuf, c->rlen);
            if (skip > 0) {
                memmove(c->rbuf, c->rbuf + skip, c->rlen - skip);
                c->rlen -= skip;
                c->scan = 0;
            }
        }
        size_t len = c->rlen > 0 ? fg_ev_head_end(c->rbuf, c->rlen, &c->scan) : 0;
        if (!c->reqline && (len > 0 || (c->rlen > 0 && memmem(c->rbuf, c->rlen, "\r\n", 2)))) {
            /* the request line is in: its headers and body have FG_REQUEST_RECV_S_MAX */
            c->reqline = true;
            c->t0_ns = l->now_ns;
            list_put(c, L_RECV, FG_REQUEST_RECV_S_MAX * NS_PER_S);
        }
        if (len > 0) {
            head_ready(c, len);
            return !c->closed;
        }
        if (c->rlen == FG_CONN_MEMORY_BYTES_MAX) {
            if (c->reqline)
                send_malformed(c, 431, "request headers too large");
            else
                send_malformed(c, 414, "request line too long");
            return !c->closed;
        }
        if (!read_more(c)) {
            if (!c->closed && c->rlen == 0) { /* idle: the buffer goes back to the pool */
                buf_put(l, c->rbuf);
                c->rbuf = NULL;
            }
            return false;
        }
    }
}

/* The body is complete. */
static bool body_done(conn_t *c) {
    req_t *r = c->req;
    list_put(c, L_NONE, 0); /* from now on it is answered, not received */
    if (r->body.overflow)
        send_problem(c, 413, "body_too_large", "the body is over 64 KiB");
    else
        dispatch(c);
    return !c->closed;
}

/* Moves body bytes that arrived behind the head, rbuf[head_len..rlen), into the fg_buf, keeping
 * what follows the body for the next request. Content-Length bodies only. */
static void stage_length(conn_t *c) {
    req_t *r = c->req;
    size_t have = c->rlen - r->head_len;
    size_t take = (uint64_t)have < r->body_left ? have : (size_t)r->body_left;
    fg_buf_add(&r->body, c->rbuf + r->head_len, take);
    r->body_left -= take;
    r->body_bytes += take;
    memmove(c->rbuf + r->head_len, c->rbuf + r->head_len + take, have - take);
    c->rlen -= take;
}

/* A chunked body: decodes what arrived behind the head into the fg_buf (dropping past
 * FG_BODY_BYTES_MAX, closing past FG_BODY_DISCARD_BYTES_MAX). True when it ended;
 * false when more is needed or the connection was refused or closed (then c->state moved). */
static bool stage_chunked(conn_t *c) {
    req_t *r = c->req;
    char *at = c->rbuf + r->head_len;
    size_t used = 0, data = 0;
    fg_ev_chunked_rc_t rc =
        fg_ev_chunked_decode(&r->chunk, at, c->rlen - r->head_len, &used, &data);
    if (!r->body.overflow) fg_buf_add(&r->body, at, data);
    r->body_bytes += used;
    memmove(at, at + used, c->rlen - r->head_len - used);
    c->rlen -= used;
    if (rc == FG_EV_CHUNKED_BAD)
        send_malformed(c, 400, "malformed chunked body");
    else if (rc == FG_EV_CHUNKED_TOO_BIG)
        send_malformed(c, 413, "chunk size too large");
    else if (r->body_bytes > FG_BODY_DISCARD_BYTES_MAX)
        conn_close(c);
    return rc == FG_EV_CHUNKED_DONE && !c->closed;
}

/* C_BODY: true when the state moved on. */
static bool on_body(conn_t *c) {
    req_t *r = c->req;
    size_t hl = r->head_len;
    bool in_place = !r->chunked && hl + r->body_left <= FG_CONN_MEMORY_BYTES_MAX;
    for (;;) {
        if (in_place && c->rlen >= hl + r->body_left) {
            r->body_data = c->rbuf + hl;
            r->body_len = (size_t)r->body_left;
            r->next = hl + (size_t)r->body_left;
            return body_done(c);
        }
        if (!in_place && !r->chunked) {
            stage_length(c);
            if (r->body_left == 0) {
                r->body_data = r->body.data;
                r->body_len = r->body.len;
                return body_done(c);
            }
        }
        if (r->chunked && c->rlen > hl) {
            bool ended = stage_chunked(c);
            if (ended) {
                r->body_data = r->body.data;
                r->body_len = r->body.len;
                return body_done(c);
            }
            if (c->closed || c->state != C_BODY) return !c->closed;
        }
        if (!read_more(c)) return false;
    }
}

/* ---------------------------------------------------------------- writing */

/* Sends what is left of the output. 1 when all of it left, 0 when the socket is full, -1 on
 * an error (the caller closes). */
static int flush(conn_t *c) {
    req_t *r = c->req;
    size_t total = r->head_out_len + r->body_out_len;
    while (r->out_off < total) {
        struct iovec iov[2];
        int n = 0;
        if (r->out_off < r->head_out_len) {
            iov[n].iov_base = r->head_out + r->out_off;
            iov[n++].iov_len = r->head_out_len - r->out_off;
        }
        size_t boff = r->out_off > r->head_out_len ? r->out_off - r->head_out_len : 0;
        if (r->body_out_len > boff) {
            iov[n].iov_base = r->body_out + boff;
            iov[n++].iov_len = r->body_out_len - boff;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t sent = n == 1 ? send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                              : sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (sent >= 0) {
            r->out_off += (size_t)sent;
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -1;
    }
    return 1;
}

/* The answer has left: the connection lingers and closes, or waits for the next request
 * (which may already be in the read buffer). */
static void finish(conn_t *c) {
    loop_t *l = c->loop;
    req_t *r = c->req;
    bool close_after = r->close_after || c->rdhup || c->gone;
    size_t next = r->next;
    req_put(l, r);
    c->req = NULL;
    if (close_after) {
        if (c->gone || shutdown(c->fd, SHUT_WR) != 0) {
            conn_close(c);
            return;
        }
        c->state = C_LINGER;
        c->lingered = 0;
        list_put(c, L_LINGER, FG_EV_LINGER_MS * NS_PER_MS);
        return;
    }
    if (c->rbuf != NULL) {
        FG_ASSERT(next <= c->rlen);
        memmove(c->rbuf, c->rbuf + next, c->rlen - next);
        c->rlen -= next;
    }
    c->scan = 0;
    c->reqline = false;
    c->state = C_HEAD;
    list_put(c, L_IDLE, FG_CONN_TIMEOUT_S * NS_PER_S);
}

/* C_SEND: true when the state moved on. */
static bool on_send(conn_t *c) {
    req_t *r = c->req;
    size_t off = r->out_off;
    int rc = flush(c);
    if (rc < 0) conn_close(c);
    if (rc == 0 && (r->out_off > off || c->list == L_NONE)) {
        /* a client that reads nothing of its answer for FG_CONN_TIMEOUT_S is closed; one
         * that reads slowly is not */
        list_put(c, L_IDLE, FG_CONN_TIMEOUT_S * NS_PER_S);
    }
    if (rc <= 0) return false;
    if (r->body_out_owned) free(r->body_out);
    r->body_out = NULL;
    r->body_out_owned = false;
    switch (r->after) {
    case AFTER_BODY: c->state = C_BODY; break;
    case AFTER_STREAM:
        c->state = C_STREAM;
        if (c->list != L_NONE) list_put(c, L_NONE, 0);
        break;
    case AFTER_STREAM_END:
        if (r->head.minor_version == 0) r->close_after = true;
        finish(c);
        break;
    default: finish(c); break;
    }
    return !c->closed;
}

/* C_LINGER: drops what arrives until the client closes (or the deadline). */
static bool on_linger(conn_t *c) {
    char sink[4096];
    while (c->readable) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) {
            c->lingered += (size_t)n;
            if (c->lingered > FG_BODY_DISCARD_BYTES_MAX) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            return false;
        }
        break;
    }
    if (c->readable) conn_close(c);
    return false;
}

/* Drives a connection until it must wait for its socket, the writer or a stream; a connection
 * that has more to do after FG_EV_STEPS_MAX steps goes to the back of the ready stack. */
static void conn_run(conn_t *c) {
    for (int i = 0; i < FG_EV_STEPS_MAX; i++) {
        if (c->closed) return;
        bool moved = false;
        switch (c->state) {
        case C_HEAD: moved = on_head(c); break;
        case C_BODY: moved = on_body(c); break;
        case C_SEND: moved = on_send(c); break;
        case C_STREAM: moved = !c->stream_parked && stream_pull(c); break;
        case C_LINGER: moved = on_linger(c); break;
        case C_PARKED: moved = false; break;
        default: FG_ASSERT(!"a connection state with no step");
        }
        if (!moved) return;
    }
    ready_push(c);
}

/* ---------------------------------------------------------------- the loop */

static void conn_event(conn_t *c, uint32_t ev) {
    if (c->closed) return;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable = true;
    if (ev & EPOLLRDHUP) c->rdhup = true;
    if (ev & (EPOLLHUP | EPOLLERR)) c->gone = true;
    if (c->state == C_STREAM && c->stream_parked && (c->rdhup || c->gone)) {
        conn_close(c); /* a client gone from a parked stream: nothing else would notice */
        return;
    }
    conn_run(c);
}

/* Takes every queued connection, oldest first: answers parked writes, resumes streams and
 * connections that yielded. */
static void drain_ready(loop_t *l) {
    conn_t *top = atomic_exchange_explicit(&l->ready, NULL, memory_order_acquire);
    conn_t *fifo = NULL;
    while (top != NULL) {
        conn_t *next = top->ready_next;
        top->ready_next = fifo;
        fifo = top;
        top = next;
    }
    while (fifo != NULL) {
        conn_t *c = fifo;
        fifo = c->ready_next;
        atomic_store(&c->queued, false);
        if (c->closed) continue;
        if (c->state == C_PARKED)
            deliver(c);
        else if (c->state == C_STREAM)
            c->stream_parked = false;
        conn_run(c);
    }
}

static void accept_one(loop_t *l, int fd, const struct sockaddr_storage *ss) {
    fg_http_t *h = l->srv;
    if (atomic_load(&h->closing)) {
        close(fd);
        return;
    }
    /* The limit is exact: counted first, undone when over. A refused connection is closed at
     * once, so the client learns now instead of waiting in the backlog. */
    if (atomic_fetch_add(&h->metrics.connections, 1) + 1 > h->connections_max) {
        atomic_fetch_sub(&h->metrics.connections, 1);
        atomic_fetch_add_explicit(&h->refused, 1, memory_order_relaxed);
        close(fd);
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (c == NULL || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(c);
        close(fd);
        atomic_fetch_sub(&h->metrics.connections, 1);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->loop = l;
    c->fd = fd;
    c->state = C_HEAD;
    c->family = (uint8_t)ss->ss_family;
    if (ss->ss_family == AF_INET)
        memcpy(c->addr, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
    else if (ss->ss_family == AF_INET6)
        memcpy(c->addr, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
    list_append(c, L_IDLE, FG_CONN_TIMEOUT_S * NS_PER_S);
}

static void accept_all(loop_t *l) {
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(l, fd, &ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            FG_LOG_WARN("event=accept_failed error=\"%s\"", strerror(errno));
        return;
    }
}

/* Closes connections past their deadline. No answer: the request has not arrived. */
static void expire(loop_t *l) {
    static const int timed[] = {L_IDLE, L_RECV, L_LINGER};
    for (size_t i = 0; i < sizeof timed / sizeof timed[0]; i++) {
        conn_t *c;
        while ((c = l->head[timed[i]]) != NULL && c->deadline_ns <= l->now_ns) {
            if (timed[i] == L_RECV || (timed[i] == L_IDLE && c->rlen > 0)) l->slow_closed++;
            conn_close(c);
        }
    }
}

static void tick(loop_t *l) {
    if (l->now_ns - l->tick_ns < FG_CONN_SWEEP_MS * NS_PER_MS) return;
    l->tick_ns = l->now_ns;
    if (l->slow_closed > 0) FG_LOG_WARN("event=slow_requests_closed count=%ld", l->slow_closed);
    l->slow_closed = 0;
    long refused = atomic_exchange(&l->srv->refused, 0);
    if (refused > 0)
        FG_LOG_WARN("event=connections_refused count=%ld connections_max=%ld", refused,
                    l->srv->connections_max);
}

/* How long epoll_wait may sleep: until the first deadline, at most FG_CONN_SWEEP_MS. */
static int wait_ms(loop_t *l) {
    if (atomic_load_explicit(&l->ready, memory_order_relaxed) != NULL) return 0;
    int64_t until = l->now_ns + FG_CONN_SWEEP_MS * NS_PER_MS;
    static const int timed[] = {L_IDLE, L_RECV, L_LINGER};
    for (size_t i = 0; i < sizeof timed / sizeof timed[0]; i++)
        if (l->head[timed[i]] != NULL && l->head[timed[i]]->deadline_ns < until)
            until = l->head[timed[i]]->deadline_ns;
    int64_t ms = (until - l->now_ns + NS_PER_MS - 1) / NS_PER_MS;
    return ms > 0 ? (int)ms : 0;
}

static void *loop_main(void *arg) {
    loop_t *l = arg;
    tl_loop = l;
    struct epoll_event evs[FG_EV_EVENTS_MAX];
    l->now_ns = l->tick_ns = fg_clock_mono_ns();
    while (!atomic_load(&l->srv->stopping)) {
        int n = epoll_wait(l->epfd, evs, FG_EV_EVENTS_MAX, wait_ms(l));
        l->now_ns = fg_clock_mono_ns();
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &l->lfd) {
                accept_all(l);
            } else if (p == &l->efd) {
                uint64_t count;
                ssize_t got = read(l->efd, &count, sizeof count);
                (void)got; /* nonblocking: EAGAIN only when a racing read took it */
                atomic_store(&l->signalled, false); /* before the stack is taken */
            } else {
                conn_event(p, evs[i].events);
            }
        }
        drain_ready(l);
        expire(l);
        tick(l);
        bury(l);
    }
    return NULL;
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

static void set_port(struct sockaddr_storage *ss, int port) {
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)(void *)ss)->sin_port = htons((uint16_t)port);
}

static int get_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
}

/* A listening (or, with backlog 0, only bound) socket; -1 on failure. */
static int bind_socket(const struct sockaddr_storage *ss, socklen_t len, bool reuseport,
                       int backlog) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (const struct sockaddr *)ss, len) != 0 ||
        (backlog > 0 && listen(fd, backlog) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Loop threads: one per core unless configured. An epoll loop's cost per request does not grow
 * with the connections it holds, so the default fits many connections too. */
static unsigned loop_threads(int configured) {
    if (configured > 0) return (unsigned)configured;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return (unsigned)(cores > 0 ? cores : 1);
}

/* The connection limit: FG_CONNECTIONS_MAX, lowered to fit the open-file limit less
 * FG_CONN_FDS_RESERVED and each thread's three descriptors (epoll, eventfd, listener). */
static long connections_fit(unsigned threads) {
    long fit = FG_CONNECTIONS_MAX;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long files = (long)rl.rlim_cur - FG_CONN_FDS_RESERVED - 3 * (long)threads;
        if (files < fit) fit = files;
    }
    return fit > 1 ? fit : 1;
}

static bool loop_open(loop_t *l, fg_http_t *h, const struct sockaddr_storage *ss, socklen_t len) {
    l->srv = h;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->lfd = bind_socket(ss, len, true, FG_EV_BACKLOG);
    if (l->epfd < 0 || l->efd < 0 || l->lfd < 0) return false;
    struct epoll_event le = {.events = EPOLLIN | EPOLLET, .data.ptr = &l->lfd};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &l->efd};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->lfd, &le) == 0 &&
           epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->efd, &ee) == 0;
}

/* Frees every connection of a stopped loop, with its request and stream. The writer has
 * stopped (main stops it before the HTTP layer), so no done callback can still come. */
static void loop_free(loop_t *l) {
    for (conn_t *c = atomic_exchange(&l->ready, NULL); c != NULL; c = c->ready_next)
        atomic_store(&c->queued, false);
    for (int k = 0; k < L_COUNT; k++) {
        while (l->head[k] != NULL) {
            conn_t *c = l->head[k];
            if (!c->closed && c->state == C_PARKED) c->state = C_HEAD;
            conn_close(c);
            list_unlink(l, c);
            free(c);
        }
    }
    while (l->free_bufs != NULL) {
        char *b = l->free_bufs;
        memcpy(&l->free_bufs, b, sizeof(char *));
        free(b);
    }
    while (l->free_reqs != NULL) {
        req_t *r = l->free_reqs;
        l->free_reqs = r->pool_next;
        free(r);
    }
    if (l->lfd >= 0) close(l->lfd);
    if (l->efd >= 0) close(l->efd);
    if (l->epfd >= 0) close(l->epfd);
}

static void stop_loops(fg_http_t *h) {
    atomic_store(&h->stopping, true);
    for (unsigned i = 0; i < h->threads; i++) {
        loop_t *l = &h->loops[i];
        if (!l->started) continue;
        uint64_t one = 1;
        ssize_t n = write(l->efd, &one, sizeof one);
        (void)n;
        pthread_join(l->thread, NULL);
        l->started = false;
    }
    for (unsigned i = 0; i < h->threads; i++)
        loop_free(&h->loops[i]);
    free(h->loops);
    free(h);
}

/* Binds every thread's listener to one address. The address is first bound without
 * SO_REUSEPORT: that fails when any other socket holds it, which SO_REUSEPORT alone would let a
 * second server share. With port 0 it also picks the port the others then bind. */
static bool listen_all(fg_http_t *h, struct sockaddr_storage *ss, socklen_t len) {
    int probe = bind_socket(ss, len, false, 0);
    if (probe < 0) return false;
    int port = get_port(probe);
    close(probe);
    if (port <= 0) return false;
    set_port(ss, port);
    h->port = port;
    for (unsigned i = 0; i < h->threads; i++)
        if (!loop_open(&h->loops[i], h, ss, len)) return false;
    return true;
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
    unsigned threads = loop_threads(cfg->threads);
    if (h == NULL || (h->loops = calloc(threads, sizeof *h->loops)) == NULL) {
        free(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->api = api;
    h->threads = threads;
    for (unsigned i = 0; i < threads; i++)
        h->loops[i].lfd = h->loops[i].efd = h->loops[i].epfd = -1;
    fg_hist_init(&h->metrics.request_seconds, bounds, 12);
    atomic_store(&h->writing_max, FG_ADMIT_START);
    h->connections_max = connections_fit(threads);
    if (!listen_all(h, &ss, sslen)) {
        snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this host)",
                 cfg->listen);
        stop_loops(h);
        return NULL;
    }
    fg_api_set_metrics(api, &h->metrics);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&h->loops[i].thread, NULL, loop_main, &h->loops[i]) != 0) {
            snprintf(err, errlen, "cannot start the HTTP loop threads");
            stop_loops(h);
            return NULL;
        }
        h->loops[i].started = true;
    }
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
    /* Give answers a moment to leave. */
    usleep(50000);
    return (long)atomic_load(&h->metrics.parked);
}

void fg_http_stop(fg_http_t *h) {
    if (h == NULL) return;
    stop_loops(h);
}
