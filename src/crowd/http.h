/*
 * http.h — the crowd's HTTP/1.1 client codec: a request writer and an incremental response
 * parser. No I/O here: loop.c moves the bytes, this module only turns them into answers.
 *
 * The parser takes an answer in pieces of any size (a read may end anywhere, even inside
 * "\r\n"), understands the status line, the headers the crowd needs (Content-Length,
 * Transfer-Encoding: chunked, Connection, Retry-After), Content-Length and chunked bodies, and
 * bodies delimited by the end of the connection. Everything it keeps is bounded (limits.h):
 * one header line, the whole head, the size of a chunk. Body bytes are handed to a callback;
 * the parser keeps none of them.
 */
#ifndef FGC_HTTP_H
#define FGC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crowd/limits.h"
#include "util/buf.h"

/* Receives body bytes in order; returns false to stop the parse (the answer then fails). */
typedef bool (*fgc_http_body_fn)(void *ctx, const char *p, size_t n);

typedef struct {
    int state;              /* internal: what the next byte belongs to */
    int status;             /* 100..599 once the status line is read, else 0 */
    int minor_version;      /* HTTP/1.<minor> */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool close;             /* the server closes after this answer (or HTTP/1.0) */
    int retry_after_s;      /* Retry-After in seconds; -1 when absent */
    int64_t content_length; /* -1 when absent */
    uint64_t left;          /* bytes left in the Content-Length body or the current chunk */
    size_t head_bytes;      /* status line, headers and trailers seen so far */
    size_t line_len;
    bool line_long; /* the current line passed FGC_LINE_BYTES_MAX; the rest is dropped */
    char line[FGC_LINE_BYTES_MAX + 1];
    const char *error; /* why the answer is malformed (static text), NULL while fine */
    fgc_http_body_fn on_body;
    void *ctx;
} fgc_http_resp_t;

/* Prepares `r` for a new answer; `on_body` (may be NULL: bytes are dropped) gets its body. */
void fgc_http_resp_init(fgc_http_resp_t *r, fgc_http_body_fn on_body, void *ctx);

/* Feeds `n` received bytes. Returns how many belong to this answer (all of them, unless it
 * ended inside the piece), or -1 when the answer is malformed (r->error says why). */
ssize_t fgc_http_feed(fgc_http_resp_t *r, const char *p, size_t n);

/* True once the whole answer (head and body) has been read. */
bool fgc_http_done(const fgc_http_resp_t *r);

/* The peer closed the connection. Returns 0 when that completes the answer (a body delimited
 * by the close), -1 when the answer was cut short (r->error says why). */
int fgc_http_eof(fgc_http_resp_t *r);

/* Appends a request to `out`. `token` and `idem` may be NULL (no Authorization or
 * Idempotency-Key header); `body` may be NULL (none; a POST or PUT then says Content-Length: 0).
 * A request past out's maximum sets out->overflow: the caller checks it. */
void fgc_http_request(fg_buf_t *out, const char *method, const char *host, const char *path,
                      const char *token, const char *idem, const char *body, size_t body_len);

#endif
