/*
 * fuzz_crowd.c — libFuzzer target for floodgate-crowd's decoders of what a server sends: the
 * incremental HTTP/1.1 answer parser (src/crowd/http.c) and the id and token parsers
 * (src/crowd/ids.c).
 *
 * The crowd reads answers from sockets, where a read may end anywhere. The input's first byte
 * seeds how the rest is cut into pieces; the rest is a stream of answers on one connection,
 * parsed one after another (keep-alive) until one fails, the stream ends (then the connection
 * closes), or FZ_ANSWERS_MAX are read. The same stream is also parsed in one piece, and both
 * parses must see the same answers: statuses, errors, bodies, bytes taken. A Content-Length
 * body must have its length. Then the input, as text, goes to the id and token parsers: what
 * they accept must print back to the same text (one spelling per id and token).
 *
 * It builds from the crowd's own codec sources, like the crowd's unit tests, not from fgcore.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_fail.h"
#include "crowd/http.h"
#include "crowd/ids.h"

#define FZ_ANSWERS_MAX 16  /* answers read from one stream */
#define FZ_PIECE_MAX   17  /* bytes per piece when the stream is cut */
#define FZ_ID_TEXT_MAX 200 /* of the input given to the id and token parsers */


/* What one parse saw of one answer. */
typedef struct {
    int status;
    const char *error; /* static text, or NULL */
    bool done, chunked, close;
    int retry_after_s;
    int64_t content_length;
    size_t taken; /* bytes of the stream this answer took (until an error: unknown) */
    size_t body_bytes;
    uint64_t body_hash; /* FNV-1a of the body, to compare bodies without keeping them */
} answer_t;

static bool on_body(void *ctx, const char *p, size_t n) {
    answer_t *a = ctx;
    for (size_t i = 0; i < n; i++)
        a->body_hash = (a->body_hash ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    a->body_bytes += n;
    return true;
}

/* The size of the next piece: the whole rest when seed is 0, else 1..FZ_PIECE_MAX bytes. */
static size_t piece(uint32_t *seed, size_t left) {
    if (*seed == 0) return left;
    *seed = *seed * 1103515245u + 12345u;
    size_t n = 1 + (*seed >> 16) % FZ_PIECE_MAX;
    return n < left ? n : left;
}

/* Parses one answer from data[*off..size); false when the stream cannot go on after it. */
static bool parse_one(const uint8_t *data, size_t size, size_t *off, uint32_t *seed, answer_t *a) {
    fgc_http_resp_t r;
    memset(a, 0, sizeof *a);
    a->body_hash = 0xcbf29ce484222325ULL;
    fgc_http_resp_init(&r, on_body, a);
    size_t start = *off;
    bool failed = false;
    while (*off < size && !fgc_http_done(&r) && !failed) {
        size_t n = piece(seed, size - *off);
        ssize_t k = fgc_http_feed(&r, (const char *)data + *off, n);
        if (k < 0) {
            failed = true;
        } else if ((size_t)k > n || ((size_t)k < n && !fgc_http_done(&r))) {
            fz_fail("fed %zu bytes, took %zd, done %d", n, k, fgc_http_done(&r));
        } else {
            *off += (size_t)k;
        }
    }
    if (!failed && !fgc_http_done(&r)) failed = fgc_http_eof(&r) != 0; /* the peer closed */
    if (failed != (r.error != NULL)) fz_fail("failed %d but error %s", failed, r.error);
    *a = (answer_t){.status = r.status,
                    .error = r.error,
                    .done = fgc_http_done(&r),
                    .chunked = r.chunked,
                    .close = r.close,
                    .retry_after_s = r.retry_after_s,
                    .content_length = r.content_length,
                    .taken = failed ? 0 : *off - start,
                    .body_bytes = a->body_bytes,
                    .body_hash = a->body_hash};
    return !failed && *off < size;
}

static int parse_all(const uint8_t *data, size_t size, uint32_t seed, answer_t *out) {
    size_t off = 0;
    int n = 0;
    while (n < FZ_ANSWERS_MAX && parse_one(data, size, &off, &seed, &out[n++]))
        continue;
    return n;
}

static void check_answer(const answer_t *a) {
    bool counted = a->done && !a->chunked && a->content_length >= 0 && a->status >= 200 &&
                   a->status != 204 && a->status != 304;
    if (counted && a->body_bytes != (size_t)a->content_length)
        fz_fail("Content-Length %lld but a body of %zu bytes", (long long)a->content_length,
                a->body_bytes);
    if (a->done && (a->status < 200 || a->status > 599))
        fz_fail("a finished answer with status %d", a->status);
}

static void check_same(const answer_t *x, const answer_t *y, int i) {
    bool same = x->status == y->status && (x->error == NULL) == (y->error == NULL) &&
                (x->error == NULL || strcmp(x->error, y->error) == 0) && x->done == y->done &&
                x->chunked == y->chunked && x->close == y->close &&
                x->retry_after_s == y->retry_after_s && x->content_length == y->content_length &&
                x->taken == y->taken && x->body_bytes == y->body_bytes &&
                x->body_hash == y->body_hash;
    if (!same)
        fz_fail("answer %d differs when cut in pieces: status %d/%d, error %s/%s, body %zu/%zu, "
                "taken %zu/%zu",
                i, x->status, y->status, x->error ? x->error : "-", y->error ? y->error : "-",
                x->body_bytes, y->body_bytes, x->taken, y->taken);
}

/* What the id and token parsers accept prints back to the same text. */
static void check_ids(const uint8_t *data, size_t size) {
    char text[FZ_ID_TEXT_MAX + 1], back[FGC_TOKEN_TEXT_BYTES_MAX];
    size_t n = size < FZ_ID_TEXT_MAX ? size : FZ_ID_TEXT_MAX;
    memcpy(text, data, n);
    text[n] = '\0';
    uint32_t id = 0;
    uint8_t secret[FGC_TOKEN_SECRET_BYTES];
    if (fgc_id_parse(text, text[0], &id)) {
        snprintf(back, sizeof back, "%c_%u", text[0], (unsigned)id);
        if (strcmp(back, text) != 0) fz_fail("id %s reads back as %s", text, back);
    }
    if (fgc_token_parse(text, &id, secret)) {
        fgc_token_format(id, secret, back, sizeof back);
        if (strcmp(back, text) != 0) fz_fail("token %s reads back as %s", text, back);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint32_t seed = data[0] | 0x100u; /* never 0: 0 means one piece */
    answer_t whole[FZ_ANSWERS_MAX], cut[FZ_ANSWERS_MAX];
    int n = parse_all(data + 1, size - 1, 0, whole);
    int m = parse_all(data + 1, size - 1, seed, cut);
    if (n != m) fz_fail("%d answers in one piece, %d when cut", n, m);
    for (int i = 0; i < n; i++) {
        check_answer(&whole[i]);
        check_same(&whole[i], &cut[i], i);
    }
    check_ids(data + 1, size - 1);
    return 0;
}
