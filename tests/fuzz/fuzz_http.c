/*
 * fuzz_http.c — libFuzzer target for floodgate's HTTP/1.1 request framing: the head parser, the
 * header checks and the chunked body decoder of src/http/ev_parse.c, driven as
 * src/http/server.c drives them on one connection.
 *
 * The input is what a client sends on one connection. A model of a connection's read path
 * (server.c: on_head, head_ready, on_body, stage_length, stage_chunked, finish) reads it into a
 * read buffer of FG_CONN_MEMORY_BYTES_MAX bytes, skips empty lines, finds and parses each head,
 * refuses it as the server does (fg_ev_check; 414 past FG_URL_BYTES_MAX; 413 past
 * FG_BODY_BYTES_MAX; 414 or 431 when no head fits the buffer), reads its Content-Length or
 * chunked body, and goes on with the bytes that follow while the connection stays open, up to
 * FZ_REQUESTS_MAX requests. No socket and no API: a request the server would dispatch is
 * recorded (method, target, the header values it keeps, body). The 100 Continue the server
 * sends before some bodies changes nothing in how they are read, so it is left out.
 *
 * The same bytes go through the model twice: as a client that sends everything at once would
 * deliver them (each read takes all that fits), and cut into reads of 1 to FZ_PIECE_BYTES_MAX
 * bytes, seeded by a hash of the input. Both must see the same requests, refusals and request
 * boundaries: how TCP cuts a stream must never change how floodgate frames it (request
 * smuggling lives in such differences). Each chunked body is also decoded from all the bytes
 * behind its head in one call and again cut at 1 to FZ_CUTS_MAX places; both must give the same
 * data, the same end and the same result.
 *
 * What ev_parse.h promises is asserted on every call: the skipped lines are empty or start with
 * a NUL; the head ends at the first CRLF CRLF however the reads came; a parsed head's strings
 * point into the buffer and end with a NUL; its result, counts, first values, bad_byte and
 * Content-Length are what the bytes say, read again from a copy taken before the parser wrote
 * into the buffer; fg_ev_check refuses by the rules its comment lists, and lets nothing else
 * through; the chunked decoder uses every byte it is given until the body ends or fails.
 * The bytes of the read buffer past those that have arrived (past the head, while the head
 * parser runs) are poisoned for AddressSanitizer, so a read of a byte that has not arrived is
 * reported although the memory is there. FG_FUZZ_VERBOSE set prints how each request of an
 * input ended.
 */
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_fail.h"
#include "http/ev_parse.h"
#include "limits.h"
#include "util/buf.h"

#define FZ_REQUESTS_MAX    4  /* requests read from one connection */
#define FZ_PIECE_BYTES_MAX 64 /* bytes per read when the input arrives in pieces */
#define FZ_CUTS_MAX        3  /* places a chunked body is cut at for its second decoding */
/* server.c's FG_BODY_DISCARD_BYTES_MAX: a chunked body past it closes the connection */
#define FZ_BODY_DISCARD_BYTES_MAX (4 * FG_BODY_BYTES_MAX)


#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) fz_fail(__VA_ARGS__);                                                         \
    } while (0)

static void *fz_malloc(size_t n) {
    void *p = malloc(n > 0 ? n : 1);
    if (p == NULL) fz_fail("out of memory");
    return p;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ULL;
    return h;
}

#define FNV_START 0xcbf29ce484222325ULL

/* The size of the next read, 1..FZ_PIECE_BYTES_MAX and at most `most`; all of it when seed
 * is 0. */
static size_t piece(uint32_t *seed, size_t most) {
    if (*seed == 0) return most;
    *seed = *seed * 1103515245u + 12345u;
    size_t n = 1 + (*seed >> 16) % FZ_PIECE_BYTES_MAX;
    return n < most ? n : most;
}

/* ---------------------------------------------------------------- the head, read again */

/* The headers of fg_ev_header_t, by name (RFC 9110: names are case-insensitive). */
static const char *const header_names[FG_EV_H_COUNT] = {
    [FG_EV_H_AUTHORIZATION] = "Authorization",
    [FG_EV_H_IDEMPOTENCY_KEY] = "Idempotency-Key",
    [FG_EV_H_SIGNATURE] = "Floodgate-Signature",
    [FG_EV_H_LAST_EVENT_ID] = "Last-Event-ID",
    [FG_EV_H_CONTENT_LENGTH] = "Content-Length",
    [FG_EV_H_TRANSFER_ENCODING] = "Transfer-Encoding",
    [FG_EV_H_HOST] = "Host",
    [FG_EV_H_CONNECTION] = "Connection",
    [FG_EV_H_EXPECT] = "Expect",
};

/* What a head says, read from an untouched copy of it, line by line, by RFC 9110 and 9112 and
 * the rules ev_parse.h states; the parser's result must agree. */
typedef struct {
    fg_ev_head_rc_t rc;
    const char *base;            /* the copy */
    const char *method, *target; /* into it */
    size_t method_len, target_len;
    int minor_version;
    int count[FG_EV_H_COUNT];
    const char *value[FG_EV_H_COUNT]; /* the first value, trimmed, into the copy */
    size_t value_len[FG_EV_H_COUNT];  /* up to its first NUL: what a C string of it holds */
    bool bad_byte;
    uint64_t content_length;
} ref_head_t;

static bool ref_tchar(unsigned char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool ref_token(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!ref_tchar((unsigned char)s[i])) return false;
    return n > 0;
}

static bool ref_has_control(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return true;
    }
    return false;
}

static bool is_ows(char ch) {
    return ch == ' ' || ch == '\t';
}

/* "HTTP/1.1" or "HTTP/1.0" sets the minor version; another "HTTP/d.d" is 505; else 400. */
static fg_ev_head_rc_t ref_version(const char *v, size_t n, int *minor) {
    bool digits = n == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' &&
                  v[6] == '.' && v[7] >= '0' && v[7] <= '9';
    if (!digits) return FG_EV_HEAD_BAD;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return FG_EV_HEAD_VERSION;
    *minor = v[7] - '0';
    return FG_EV_HEAD_OK;
}

/* One header line: name, colon, value with optional whitespace around it. */
static fg_ev_head_rc_t ref_header(const char *p, size_t n, ref_head_t *r) {
    const char *colon = memchr(p, ':', n);
    if (colon == NULL) return FG_EV_HEAD_BAD;
    size_t nlen = (size_t)(colon - p);
    if (memchr(p, '\0', nlen) != NULL) return FG_EV_HEAD_BAD; /* a name no C string can hold */
    const char *v = colon + 1, *end = p + n;
    while (v < end && is_ows(*v))
        v++;
    while (end > v && is_ows(end[-1]))
        end--;
    if (!ref_token(p, nlen) || ref_has_control(v, (size_t)(end - v))) r->bad_byte = true;
    for (int k = 0; k < FG_EV_H_COUNT; k++) {
        if (strlen(header_names[k]) != nlen || strncasecmp(p, header_names[k], nlen) != 0) continue;
        if (r->count[k]++ == 0) {
            r->value[k] = v;
            r->value_len[k] = strnlen(v, (size_t)(end - v));
        }
    }
    return FG_EV_HEAD_OK;
}

/* Content-Length is 1*DIGIT; a number past 64 bits is 413, anything else not digits 400. */
static fg_ev_head_rc_t ref_length(const char *s, size_t n, uint64_t *out) {
    if (n == 0) return FG_EV_HEAD_BAD;
    bool big = false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return FG_EV_HEAD_BAD;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) big = true;
        v = v * 10 + d;
    }
    *out = v;
    return big ? FG_EV_HEAD_TOO_BIG : FG_EV_HEAD_OK;
}

static void ref_parse(const char *p, size_t len, ref_head_t *r) {
    memset(r, 0, sizeof *r);
    r->base = p;
    const char *eol = memmem(p, len, "\r\n", 2);
    size_t line = (size_t)(eol - p);
    const char *sp1 = memchr(p, ' ', line), *sp2 = memrchr(p, ' ', line);
    if (sp1 == NULL) {
        r->rc = FG_EV_HEAD_DROP;
        return;
    }
    r->rc = sp1 == sp2 ? FG_EV_HEAD_BAD
                       : ref_version(sp2 + 1, line - (size_t)(sp2 + 1 - p), &r->minor_version);
    if (r->rc != FG_EV_HEAD_OK) return;
    r->method = p;
    r->method_len = (size_t)(sp1 - p);
    r->target = sp1 + 1;
    r->target_len = (size_t)(sp2 - r->target);
    for (const char *at = eol + 2; at < p + len - 2; at = eol + 2) {
        eol = memmem(at, (size_t)(p + len - at), "\r\n", 2);
        if ((r->rc = ref_header(at, (size_t)(eol - at), r)) != FG_EV_HEAD_OK) return;
    }
    if (r->count[FG_EV_H_CONTENT_LENGTH] > 0)
        r->rc = ref_length(r->value[FG_EV_H_CONTENT_LENGTH], r->value_len[FG_EV_H_CONTENT_LENGTH],
                           &r->content_length);
}

/* s[0..n) is a C string of n bytes inside buf[0..len). */
static void check_string(const char *what, const char *s, size_t n, const char *buf, size_t len) {
    FZ_CHECK(s >= buf && s + n < buf + len, "%s: %zu bytes at %td, outside the head of %zu", what,
             n, s - buf, len);
    FZ_CHECK(s[n] == '\0', "%s: no NUL after its %zu bytes", what, n);
}

/* The parser's head h of buf[0..len) against the reference r of the untouched copy. */
static void check_parsed(const ref_head_t *r, const fg_ev_head_t *h, fg_ev_head_rc_t rc,
                         const char *buf, size_t len) {
    FZ_CHECK(rc == r->rc, "head parsed as %d, the bytes say %d", rc, r->rc);
    if (rc != FG_EV_HEAD_OK) return;
    check_string("method", h->method, h->method_len, buf, len);
    check_string("target", h->target, h->target_len, buf, len);
    FZ_CHECK(h->method == buf && h->method_len == r->method_len && h->target_len == r->target_len &&
                 h->target - buf == r->target - r->base &&
                 memcmp(h->target, r->target, r->target_len) == 0 &&
                 memcmp(h->method, r->method, r->method_len) == 0,
             "request line split as %zu + %zu bytes, the bytes say %zu + %zu", h->method_len,
             h->target_len, r->method_len, r->target_len);
    FZ_CHECK(h->minor_version == r->minor_version, "HTTP/1.%d read as HTTP/1.%d", r->minor_version,
             h->minor_version);
    FZ_CHECK(h->bad_byte == r->bad_byte, "bad_byte %d, the bytes say %d", h->bad_byte, r->bad_byte);
    for (int k = 0; k < FG_EV_H_COUNT; k++) {
        FZ_CHECK(h->count[k] == r->count[k], "%s counted %d times, the bytes say %d",
                 header_names[k], h->count[k], r->count[k]);
        FZ_CHECK((h->value[k] != NULL) == (r->count[k] > 0), "%s: a value %s", header_names[k],
                 h->value[k] ? "with no header" : "missing");
        if (h->value[k] == NULL) continue;
        size_t n = r->value_len[k];
        FZ_CHECK(h->value[k] - buf == r->value[k] - r->base,
                 "%s: the value starts at %td, the first one, trimmed, at %td", header_names[k],
                 h->value[k] - buf, r->value[k] - r->base);
        check_string(header_names[k], h->value[k], n, buf, len);
        FZ_CHECK(memcmp(h->value[k], r->value[k], n) == 0, "%s: the value's bytes changed",
                 header_names[k]);
    }
    if (r->count[FG_EV_H_CONTENT_LENGTH] > 0)
        FZ_CHECK(h->content_length == r->content_length, "Content-Length %llu read as %llu",
                 (unsigned long long)r->content_length, (unsigned long long)h->content_length);
}

/* What fg_ev_check must answer, by the rules ev_parse.h lists, in its order. */
static int ref_refusal(const ref_head_t *r) {
    static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    const int *n = r->count;
    bool http10 = r->minor_version == 0, target_ok = r->target_len > 0;
    for (size_t i = 0; i < r->target_len; i++)
        if ((unsigned char)r->target[i] <= 0x20 || (unsigned char)r->target[i] >= 0x7f)
            target_ok = false;
    if (!ref_token(r->method, r->method_len) || !target_ok || r->bad_byte) return 400;
    if (n[FG_EV_H_HOST] > 1 || (n[FG_EV_H_HOST] == 0 && !http10)) return 400;
    if (n[FG_EV_H_CONTENT_LENGTH] + n[FG_EV_H_TRANSFER_ENCODING] > 1) return 400;
    if (n[FG_EV_H_TRANSFER_ENCODING] > 0 && http10) return 400;
    static const char chunked[] = "chunked";
    const char *coding = r->value[FG_EV_H_TRANSFER_ENCODING];
    size_t clen = r->value_len[FG_EV_H_TRANSFER_ENCODING];
    if (coding != NULL && (clen != strlen(chunked) || strncasecmp(coding, chunked, clen) != 0))
        return 501;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i]) == r->method_len && memcmp(known[i], r->method, r->method_len) == 0)
            return 0;
    return 501;
}

static void check_refusal(const ref_head_t *r, fg_ev_refusal_t f) {
    int want = ref_refusal(r);
    FZ_CHECK(f.status == want, "fg_ev_check answered %d, the rules say %d", f.status, want);
    FZ_CHECK((f.code != NULL && f.detail != NULL) == (f.status != 0), "a refusal %d with code %s",
             f.status, f.code ? f.code : "(none)");
}

/* The reference's reading of a Connection header: comma-separated tokens, whitespace around
 * each, compared without case. */
static bool ref_connection_has(const ref_head_t *r, const char *token) {
    const char *s = r->value[FG_EV_H_CONNECTION];
    if (s == NULL) return false;
    const char *end = s + r->value_len[FG_EV_H_CONNECTION];
    for (const char *e; s < end; s = e + 1) {
        e = memchr(s, ',', (size_t)(end - s));
        if (e == NULL) e = end;
        const char *a = s, *b = e;
        while (a < b && is_ows(*a))
            a++;
        while (b > a && is_ows(b[-1]))
            b--;
        if ((size_t)(b - a) == strlen(token) && strncasecmp(a, token, strlen(token)) == 0)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------- chunked bodies, cut */

typedef struct {
    fg_ev_chunked_rc_t rc;
    size_t used, data_len;
} decoded_t;

/* One call of the decoder, with what its header promises of the result. */
static fg_ev_chunked_rc_t decode(fg_ev_chunked_t *ch, char *buf, size_t n, size_t *used,
                                 size_t *data_len) {
    fg_ev_chunked_rc_t rc = fg_ev_chunked_decode(ch, buf, n, used, data_len);
    FZ_CHECK(*used <= n && *data_len <= *used, "decoded %zu bytes into %zu of %zu given", *used,
             *data_len, n);
    FZ_CHECK(rc == FG_EV_CHUNKED_MORE ? *used == n : *used > 0,
             "the decoder used %zu of %zu bytes and answered %d", *used, n, rc);
    return rc;
}

/* Decodes p[0..n) in pieces that end at each cut and then at n, as reads would bring them,
 * until the body ends or fails; the data is gathered at the start of p. Cuts are sorted, in
 * [0, n]. */
static decoded_t decode_cut(char *p, size_t n, const size_t *cuts, int ncuts) {
    fg_ev_chunked_t ch;
    fg_ev_chunked_init(&ch);
    decoded_t d = {FG_EV_CHUNKED_MORE, 0, 0};
    for (int i = 0; i <= ncuts && d.rc == FG_EV_CHUNKED_MORE; i++) {
        size_t end = i < ncuts ? cuts[i] : n, used = 0, data = 0;
        d.rc = decode(&ch, p + d.used, end - d.used, &used, &data);
        memmove(p + d.data_len, p + d.used, data); /* data never moves forward */
        d.used += used;
        d.data_len += data;
    }
    return d;
}

/* The bytes behind a chunked head decode alike in one piece and cut at 1..FZ_CUTS_MAX places
 * chosen by seed. Each copy is exactly n bytes, so a read past them is a heap overflow. */
static void check_chunked_cuts(const char *bytes, size_t n, uint32_t seed) {
    if (n == 0) return;
    size_t cuts[FZ_CUTS_MAX];
    int ncuts = 1 + (int)(seed % FZ_CUTS_MAX);
    for (int i = 0; i < ncuts; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t at = (seed >> 8) % (n + 1);
        int j = i;
        for (; j > 0 && cuts[j - 1] > at; j--) /* sorted as they come */
            cuts[j] = cuts[j - 1];
        cuts[j] = at;
    }
    char *one = fz_malloc(n), *cut = fz_malloc(n);
    memcpy(one, bytes, n);
    memcpy(cut, bytes, n);
    decoded_t a = decode_cut(one, n, NULL, 0), b = decode_cut(cut, n, cuts, ncuts);
    FZ_CHECK(a.rc == b.rc && a.used == b.used && a.data_len == b.data_len &&
                 memcmp(one, cut, a.data_len) == 0,
             "a chunked body of %zu bytes decodes to %d, %zu used, %zu of data in one piece; "
             "%d, %zu, %zu cut at %d places (first %zu)",
             n, a.rc, a.used, a.data_len, b.rc, b.used, b.data_len, ncuts, cuts[0]);
    free(cut);
    free(one);
}

/* ---------------------------------------------------------------- a connection */

enum {
    OUT_ENDED,     /* the input ended first: the client sent nothing more */
    OUT_DROPPED,   /* closed without an answer */
    OUT_MALFORMED, /* framing that cannot be read: refused, and the connection closes */
    OUT_REFUSED,   /* a head that parsed, refused */
    OUT_SERVED,    /* handed to the API */
};

/* How one request on the connection ended. */
typedef struct {
    int kind;
    int status;      /* of a refusal */
    bool close;      /* the connection closes after the answer */
    size_t end;      /* where the next request starts in the stream, while the connection stays */
    size_t body_len; /* of a request served */
    uint64_t hash;   /* of what a request served hands the API */
} outcome_t;

typedef struct {
    const uint8_t *in;
    size_t in_len, in_off; /* the client's bytes, and how many the server has read */
    uint32_t seed;         /* the sizes of reads; 0: each read takes all that fits */
    char *rbuf;            /* exactly FG_CONN_MEMORY_BYTES_MAX bytes, as the server's */
    size_t rlen, scan;     /* bytes in rbuf; where the search for a head's end resumes */
    size_t exposed;        /* rbuf[0..exposed) is not poisoned */
    outcome_t out[FZ_REQUESTS_MAX];
    int n;
} conn_t;

/* One request: what server.c's req_t holds for framing it. */
typedef struct {
    char *copy; /* the head before the parser wrote into it; the reference points into it */
    ref_head_t ref;
    fg_ev_head_t head;
    size_t head_len, next;
    bool chunked, keep_alive, close_after;
    uint64_t body_left;
    fg_ev_chunked_t chunk;
    fg_buf_t body; /* a body that is not in the read buffer */
    const char *body_data;
    size_t body_len;
} req_t;

/* rbuf[0..n) may be read; the rest is poisoned until bytes arrive there. Only the bytes between
 * the old and the new end change (ASan poisons the tail of an 8-byte granule exactly). */
static void expose(conn_t *c, size_t n) {
    FZ_CHECK(n <= FG_CONN_MEMORY_BYTES_MAX, "%zu bytes in the read buffer", n);
    if (n > c->exposed)
        ASAN_UNPOISON_MEMORY_REGION(c->rbuf + c->exposed, n - c->exposed);
    else if (n < c->exposed)
        ASAN_POISON_MEMORY_REGION(c->rbuf + n, c->exposed - n);
    c->exposed = n;
}

/* server.c's conn_read: false at the end of the input (the client sent all it had). */
static bool conn_read(conn_t *c) {
    size_t space = FG_CONN_MEMORY_BYTES_MAX - c->rlen, left = c->in_len - c->in_off;
    FZ_CHECK(space > 0, "a read into a full buffer");
    if (left == 0) return false;
    size_t n = piece(&c->seed, left < space ? left : space);
    expose(c, c->rlen + n);
    memcpy(c->rbuf + c->rlen, c->in + c->in_off, n);
    c->rlen += n;
    c->in_off += n;
    return true;
}

/* Drops rbuf[at..at+n), moving what follows down. */
static void cut_out(conn_t *c, size_t at, size_t n) {
    FZ_CHECK(at + n <= c->rlen, "cut %zu bytes at %zu of %zu", n, at, c->rlen);
    memmove(c->rbuf + at, c->rbuf + at + n, c->rlen - at - n);
    c->rlen -= n;
    expose(c, c->rlen);
}

static void record(conn_t *c, const req_t *r, int kind, int status, bool close) {
    FZ_CHECK(c->n < FZ_REQUESTS_MAX, "more outcomes than requests");
    outcome_t *o = &c->out[c->n++];
    *o = (outcome_t){.kind = kind, .status = status, .close = close, .hash = FNV_START};
    if (!close) o->end = c->in_off - (c->rlen - r->next); /* rbuf[next..rlen) is yet unread */
    if (kind != OUT_SERVED) return;
    const fg_ev_head_t *h = &r->head;
    o->hash = fnv(o->hash, h->method, h->method_len + 1);
    o->hash = fnv(o->hash, h->target, h->target_len + 1);
    for (int k = 0; k < FG_EV_H_COUNT; k++)
        o->hash =
            h->value[k] ? fnv(o->hash, h->value[k], strlen(h->value[k]) + 1) : fnv(o->hash, "-", 1);
    o->hash = fnv(o->hash, r->body_data, r->body_len);
    o->body_len = r->body_len;
}

/* server.c's fg_ev_skip_lines step, with what its header promises: only whole lines that are
 * empty or start with a NUL go, and none of those is left at the start. */
static void skip_lines(conn_t *c) {
    if (c->rlen == 0) return;
    const char *p = c->rbuf;
    size_t skip = fg_ev_skip_lines(p, c->rlen);
    FZ_CHECK(skip <= c->rlen, "skipped %zu of %zu bytes", skip, c->rlen);
    for (size_t at = 0; at < skip;) {
        const char *eol = memmem(p + at, skip - at, "\r\n", 2);
        FZ_CHECK(eol != NULL && (eol == p + at || p[at] == '\0'),
                 "skipped a line at %zu that is not empty and does not start with a NUL", at);
        at = (size_t)(eol - p) + 2;
    }
    FZ_CHECK(fg_ev_skip_lines(p + skip, c->rlen - skip) == 0, "lines left to skip after %zu", skip);
    if (skip > 0) {
        cut_out(c, 0, skip);
        c->scan = 0;
    }
}

/* fg_ev_head_end as server.c calls it, resuming its search; the head must end at the first
 * CRLF CRLF of the buffer all the same. */
static size_t head_end(conn_t *c) {
    size_t len = fg_ev_head_end(c->rbuf, c->rlen, &c->scan);
    FZ_CHECK(len <= c->rlen && c->scan <= c->rlen, "head end %zu, scan %zu in %zu bytes", len,
             c->scan, c->rlen);
    if (len > 0) {
        const char *first = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
        FZ_CHECK(first != NULL && (size_t)(first - c->rbuf) + 4 == len,
                 "a head of %zu bytes, but the first CRLF CRLF ends at %td", len,
                 first ? first - c->rbuf + 4 : -1);
    }
    return len;
}

/* No head was found when the buffer filled or the input ended: there must be none. */
static void check_no_head(const conn_t *c) {
    FZ_CHECK(memmem(c->rbuf, c->rlen, "\r\n\r\n", 4) == NULL, "a CRLF CRLF in %zu bytes was missed",
             c->rlen);
}

/* server.c's on_head: the length of the next head in rbuf, or 0 when the connection ended
 * before one (its outcome is recorded). */
static size_t await_head(conn_t *c, const req_t *r) {
    bool reqline = false; /* decides 414 or 431 when the buffer fills */
    for (;;) {
        skip_lines(c);
        size_t len = c->rlen > 0 ? head_end(c) : 0;
        if (!reqline && (len > 0 || (c->rlen > 0 && memmem(c->rbuf, c->rlen, "\r\n", 2))))
            reqline = true;
        if (len > 0) return len;
        if (c->rlen == FG_CONN_MEMORY_BYTES_MAX) {
            check_no_head(c);
            record(c, r, OUT_MALFORMED, reqline ? 431 : 414, true);
            return 0;
        }
        if (!conn_read(c)) {
            check_no_head(c);
            record(c, r, OUT_ENDED, 0, true);
            return 0;
        }
    }
}

/* fg_ev_connection_has, which must read the header as the reference does. */
static bool connection_has(const req_t *r, const char *token) {
    bool has = fg_ev_connection_has(&r->head, token);
    FZ_CHECK(has == ref_connection_has(&r->ref, token), "Connection has %s: %d, the bytes say %d",
             token, has, !has);
    return has;
}

/* Parses the head rbuf[0..len) as server.c's head_ready does, with the parser given the head
 * only, and checks it against the bytes. */
static fg_ev_head_rc_t parse_head(conn_t *c, req_t *r, size_t len) {
    r->copy = fz_malloc(len);
    memcpy(r->copy, c->rbuf, len);
    ref_parse(r->copy, len, &r->ref);
    expose(c, len);
    fg_ev_head_rc_t rc = fg_ev_head_parse(c->rbuf, len, &r->head);
    expose(c, c->rlen);
    check_parsed(&r->ref, &r->head, rc, c->rbuf, len);
    return rc;
}

/* server.c's head_ready: false when the request ended at its head (refused). */
static bool head_ready(conn_t *c, req_t *r, size_t len) {
    static const int status_of[] = {
        [FG_EV_HEAD_BAD] = 400, [FG_EV_HEAD_TOO_BIG] = 413, [FG_EV_HEAD_VERSION] = 505,
        [FG_EV_HEAD_DROP] = 400};
    r->head_len = r->next = len;
    fg_ev_head_rc_t rc = parse_head(c, r, len);
    if (rc != FG_EV_HEAD_OK) {
        record(c, r, OUT_MALFORMED, status_of[rc], true);
        return false;
    }
    const fg_ev_head_t *h = &r->head;
    r->keep_alive =
        h->minor_version == 1 ? !connection_has(r, "close") : connection_has(r, "keep-alive");
    r->chunked = h->count[FG_EV_H_TRANSFER_ENCODING] > 0;
    r->body_left = h->count[FG_EV_H_CONTENT_LENGTH] > 0 ? h->content_length : 0;
    fg_ev_chunked_init(&r->chunk);
    fg_ev_refusal_t f = fg_ev_check(h);
    check_refusal(&r->ref, f);
    r->close_after = f.status != 0;
    if (h->target_len > FG_URL_BYTES_MAX)
        f.status = 414;
    else if (f.status == 0 && r->body_left > FG_BODY_BYTES_MAX)
        f.status = 413;
    if (f.status != 0) { /* answered early: a body on its way closes the connection after */
        if (r->chunked || r->body_left > 0) r->close_after = true;
        record(c, r, OUT_REFUSED, f.status, r->close_after || !r->keep_alive);
        return false;
    }
    if ((r->chunked || r->body_left > 0) && len == FG_CONN_MEMORY_BYTES_MAX) {
        record(c, r, OUT_MALFORMED, 431, true);
        return false;
    }
    return true;
}

/* The input ended inside a body: the client sent no more. Always false. */
static bool ended(conn_t *c, const req_t *r) {
    record(c, r, OUT_ENDED, 0, true);
    return false;
}

/* server.c's on_body for a Content-Length body: in place when head and body fit the buffer,
 * else staged out of it. False when the input ended first (its outcome is recorded). */
static bool length_body(conn_t *c, req_t *r) {
    size_t hl = r->head_len;
    if (hl + r->body_left <= FG_CONN_MEMORY_BYTES_MAX) {
        while (c->rlen < hl + r->body_left)
            if (!conn_read(c)) return ended(c, r);
        r->body_data = c->rbuf + hl;
        r->body_len = (size_t)r->body_left;
        r->next = hl + (size_t)r->body_left;
        return true;
    }
    for (;;) { /* stage_length */
        size_t have = c->rlen - hl;
        size_t take = (uint64_t)have < r->body_left ? have : (size_t)r->body_left;
        fg_buf_add(&r->body, c->rbuf + hl, take);
        r->body_left -= take;
        cut_out(c, hl, take);
        if (r->body_left == 0) {
            r->body_data = r->body.data;
            r->body_len = r->body.len;
            return true;
        }
        if (!conn_read(c)) return ended(c, r);
    }
}

/* server.c's on_body and stage_chunked for a chunked body: decodes what arrived behind the
 * head, keeping at most FG_BODY_BYTES_MAX of data. False when the request ended otherwise
 * (its outcome is recorded). */
static bool chunked_body(conn_t *c, req_t *r) {
    size_t hl = r->head_len, body_bytes = 0;
    for (;;) {
        if (c->rlen > hl) {
            size_t used = 0, data = 0;
            fg_ev_chunked_rc_t rc = decode(&r->chunk, c->rbuf + hl, c->rlen - hl, &used, &data);
            if (!r->body.overflow) fg_buf_add(&r->body, c->rbuf + hl, data);
            body_bytes += used;
            cut_out(c, hl, used);
            if (rc == FG_EV_CHUNKED_BAD || rc == FG_EV_CHUNKED_TOO_BIG) {
                record(c, r, OUT_MALFORMED, rc == FG_EV_CHUNKED_BAD ? 400 : 413, true);
                return false;
            }
            if (body_bytes > FZ_BODY_DISCARD_BYTES_MAX) {
                record(c, r, OUT_DROPPED, 0, true);
                return false;
            }
            if (rc == FG_EV_CHUNKED_DONE) {
                r->body_data = r->body.data;
                r->body_len = r->body.len;
                return true;
            }
        }
        if (!conn_read(c)) return ended(c, r);
    }
}

/* The whole request is in: what the server hands the API must be within its limits. */
static void dispatch(conn_t *c, req_t *r) {
    const fg_ev_head_t *h = &r->head;
    if (r->body.overflow) { /* server.c's body_done: refused, the body was read to its end */
        FZ_CHECK(r->chunked, "a Content-Length body past its limit was read");
        record(c, r, OUT_REFUSED, 413, !r->keep_alive);
        return;
    }
    FZ_CHECK(h->target_len <= FG_URL_BYTES_MAX, "a target of %zu bytes dispatched", h->target_len);
    FZ_CHECK(r->body_len <= FG_BODY_BYTES_MAX, "a body of %zu bytes dispatched", r->body_len);
    uint64_t length = h->count[FG_EV_H_CONTENT_LENGTH] > 0 ? h->content_length : 0;
    FZ_CHECK(r->chunked || r->body_len == length, "a body of %zu bytes for Content-Length %llu",
             r->body_len, (unsigned long long)length);
    FZ_CHECK(r->next <= c->rlen, "the next request at %zu of %zu bytes", r->next, c->rlen);
    if (r->body_data == NULL) r->body_data = ""; /* as dispatch() hands the API an empty body */
    record(c, r, OUT_SERVED, 0, !r->keep_alive);
}

/* The bytes behind a chunked head, those read and those still to come, decode alike in one
 * piece and cut (once per request, on the run that reads at once). */
static void check_chunked_behind(const conn_t *c, size_t head_len) {
    size_t have = c->rlen - head_len, rest = c->in_len - c->in_off;
    char *bytes = fz_malloc(have + rest);
    memcpy(bytes, c->rbuf + head_len, have);
    memcpy(bytes + have, c->in + c->in_off, rest);
    check_chunked_cuts(bytes, have + rest, (uint32_t)fnv(FNV_START, bytes, have + rest));
    free(bytes);
}

/* One request, from its head to its answer: false when the connection ends with it. */
static bool one_request(conn_t *c, req_t *r) {
    size_t len = await_head(c, r);
    if (len == 0) return false;
    if (!head_ready(c, r, len)) return !c->out[c->n - 1].close;
    if (r->chunked && c->seed == 0) check_chunked_behind(c, len);
    if (!(r->chunked ? chunked_body(c, r) : length_body(c, r))) return false;
    dispatch(c, r);
    return !c->out[c->n - 1].close;
}

static void run(conn_t *c, const uint8_t *data, size_t size, uint32_t seed) {
    memset(c, 0, sizeof *c);
    c->in = data;
    c->in_len = size;
    c->seed = seed;
    c->rbuf = fz_malloc(FG_CONN_MEMORY_BYTES_MAX);
    c->exposed = FG_CONN_MEMORY_BYTES_MAX;
    expose(c, 0);
    bool open = true;
    while (open && c->n < FZ_REQUESTS_MAX) {
        req_t r;
        memset(&r, 0, sizeof r);
        fg_buf_init(&r.body, FG_BODY_BYTES_MAX);
        open = one_request(c, &r);
        if (open) { /* server.c's finish: the next request starts behind this one */
            cut_out(c, 0, r.next);
            c->scan = 0;
        }
        fg_buf_free(&r.body);
        free(r.copy);
    }
    expose(c, FG_CONN_MEMORY_BYTES_MAX);
    free(c->rbuf);
}

static void check_same(const conn_t *a, const conn_t *b) {
    FZ_CHECK(a->n == b->n, "%d requests read at once, %d in pieces", a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const outcome_t *x = &a->out[i], *y = &b->out[i];
        FZ_CHECK(x->kind == y->kind && x->status == y->status && x->close == y->close &&
                     x->end == y->end && x->body_len == y->body_len && x->hash == y->hash,
                 "request %d read at once: kind %d, status %d, close %d, ends at %zu, body %zu; "
                 "in pieces: %d, %d, %d, %zu, %zu%s",
                 i, x->kind, x->status, x->close, x->end, x->body_len, y->kind, y->status, y->close,
                 y->end, y->body_len, x->hash != y->hash ? ", other bytes" : "");
    }
}

/* FG_FUZZ_VERBOSE set: how each request ended, to see what a seed reaches. */
static void print_outcomes(const conn_t *c) {
    static const char *const kinds[] = {[OUT_ENDED] = "ended",
                                        [OUT_DROPPED] = "dropped",
                                        [OUT_MALFORMED] = "malformed",
                                        [OUT_REFUSED] = "refused",
                                        [OUT_SERVED] = "served"};
    for (int i = 0; i < c->n; i++) {
        const outcome_t *o = &c->out[i];
        fprintf(stderr, "request %d: %s %d, body %zu bytes, %s\n", i, kinds[o->kind], o->status,
                o->body_len, o->close ? "closes" : "stays open");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FG_FUZZ_VERBOSE") != NULL;
    conn_t at_once, in_pieces;
    run(&at_once, data, size, 0);
    run(&in_pieces, data, size, (uint32_t)fnv(FNV_START, data, size) | 1u);
    check_same(&at_once, &in_pieces);
    if (verbose) print_outcomes(&at_once);
    return 0;
}
