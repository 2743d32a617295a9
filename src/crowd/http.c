/*
 * http.c — request writer and incremental response parser; see http.h.
 *
 * The parser is a state machine over lines (status line, headers, chunk sizes, trailers) and
 * counted bytes (Content-Length bodies, chunk data). Lines are collected in a fixed buffer;
 * a header line longer than it is kept only in part, which is harmless for headers the crowd
 * ignores and an error for the ones it reads.
 */
#include "crowd/http.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/check.h"
#include "util/token.h"

enum {
    S_STATUS,     /* the status line (empty lines before it are skipped) */
    S_HEADER,     /* a header line, or the empty line that ends the head */
    S_LENGTH,     /* Content-Length body bytes */
    S_CHUNK_SIZE, /* a chunk-size line */
    S_CHUNK_DATA, /* chunk bytes */
    S_CHUNK_END,  /* the empty line after chunk bytes */
    S_TRAILER,    /* trailer lines after the last chunk */
    S_CLOSE,      /* body until the connection closes */
    S_DONE,
    S_ERROR,
};

#define CHUNK_BYTES_MAX (1ULL << 40) /* a chunk bigger than this is nonsense, not data */

void fgc_http_resp_init(fgc_http_resp_t *r, fgc_http_body_fn on_body, void *ctx) {
    memset(r, 0, offsetof(fgc_http_resp_t, line));
    r->line[0] = '\0';
    r->state = S_STATUS;
    r->retry_after_s = -1;
    r->content_length = -1;
    r->error = NULL;
    r->on_body = on_body;
    r->ctx = ctx;
}

bool fgc_http_done(const fgc_http_resp_t *r) {
    return r->state == S_DONE;
}

static int fail(fgc_http_resp_t *r, const char *why) {
    r->state = S_ERROR;
    r->error = why;
    return -1;
}

static int emit(fgc_http_resp_t *r, const char *p, size_t n) {
    if (n == 0 || r->on_body == NULL) return 0;
    return r->on_body(r->ctx, p, n) ? 0 : fail(r, "the body was refused by its reader");
}

/* Parses a decimal with no sign and no spaces; false on anything else or past `max`. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out) {
    uint64_t v = 0;
    if (*s == '\0') return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (v > (max - (uint64_t)(*s - '0')) / 10) return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static int status_line(fgc_http_resp_t *r, const char *s) {
    if (*s == '\0') return 0; /* RFC 9112 §2.2: an empty line before the status line is ignored */
    if (strncmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return fail(r, "status line is not HTTP/1.0 or HTTP/1.1");
    if (!isdigit((unsigned char)s[9]) || !isdigit((unsigned char)s[10]) ||
        !isdigit((unsigned char)s[11]) || (s[12] != ' ' && s[12] != '\0'))
        return fail(r, "status line has no three-digit status");
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status < 100 || status > 599) return fail(r, "status out of range");
    r->status = status;
    r->minor_version = s[7] - '0';
    r->close = r->minor_version == 0;
    r->state = S_HEADER;
    return 0;
}

/* The headers the crowd reads; every other header is skipped. */
static int header_value(fgc_http_resp_t *r, const char *name, const char *v) {
    if (strcasecmp(name, "content-length") == 0) {
        uint64_t n;
        if (r->line_long || !parse_u64(v, (uint64_t)INT64_MAX, &n))
            return fail(r, "bad Content-Length");
        if (r->content_length >= 0 && (uint64_t)r->content_length != n)
            return fail(r, "two different Content-Length headers");
        r->content_length = (int64_t)n;
    } else if (strcasecmp(name, "transfer-encoding") == 0) {
        if (r->line_long) return fail(r, "Transfer-Encoding header too long");
        if (!fg_token_list_has(v, "chunked")) return fail(r, "unsupported Transfer-Encoding");
        r->chunked = true;
    } else if (strcasecmp(name, "connection") == 0) {
        if (fg_token_list_has(v, "close")) r->close = true;
        if (fg_token_list_has(v, "keep-alive") && r->minor_version == 0) r->close = false;
    } else if (strcasecmp(name, "retry-after") == 0) {
        uint64_t s;
        /* A date instead of seconds is allowed by RFC 9110; the crowd then waits one second. */
        r->retry_after_s = parse_u64(v, 1u << 30, &s) ? (int)s : 1;
    }
    return 0;
}

/* The end of the head: decides how the body is delimited. */
static int head_end(fgc_http_resp_t *r) {
    if (r->status < 200) { /* an interim answer (100 Continue): the real one follows */
        int minor = r->minor_version;
        fgc_http_resp_init(r, r->on_body, r->ctx);
        r->minor_version = minor;
        return 0;
    }
    if (r->status == 204 || r->status == 304) {
        r->state = S_DONE;
    } else if (r->chunked) {
        r->state = S_CHUNK_SIZE;
    } else if (r->content_length >= 0) {
        r->left = (uint64_t)r->content_length;
        r->state = r->left == 0 ? S_DONE : S_LENGTH;
    } else {
        r->close = true;
        r->state = S_CLOSE;
    }
    return 0;
}

static int header_line(fgc_http_resp_t *r, char *s) {
    if (*s == '\0') return head_end(r);
    if (*s == ' ' || *s == '\t') return fail(r, "obsolete header line folding");
    char *colon = strchr(s, ':');
    if (colon == NULL || colon == s) return fail(r, "header line without a name");
    *colon = '\0';
    for (const char *p = s; *p; p++)
        if (!isgraph((unsigned char)*p)) return fail(r, "bad character in a header name");
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    return header_value(r, s, v);
}

static int chunk_size_line(fgc_http_resp_t *r, const char *s) {
    if (r->line_long) return fail(r, "chunk-size line too long");
    uint64_t size = 0;
    const char *p = s;
    for (; isxdigit((unsigned char)*p); p++) {
        int d = isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10);
        size = size * 16 + (uint64_t)d;
        if (size > CHUNK_BYTES_MAX) return fail(r, "chunk too large");
    }
    if (p == s || (*p != '\0' && *p != ';' && *p != ' ' && *p != '\t'))
        return fail(r, "bad chunk size");
    r->left = size;
    r->state = size == 0 ? S_TRAILER : S_CHUNK_DATA;
    return 0;
}

/* A complete line (CR LF or LF removed) in the state it belongs to. */
static int line_done(fgc_http_resp_t *r) {
    char *s = r->line;
    switch (r->state) {
    case S_STATUS:
        if (r->line_long) return fail(r, "status line too long");
        return status_line(r, s);
    case S_HEADER: return header_line(r, s);
    case S_CHUNK_SIZE: return chunk_size_line(r, s);
    case S_CHUNK_END:
        if (*s != '\0' || r->line_long) return fail(r, "chunk data not followed by CRLF");
        r->state = S_CHUNK_SIZE;
        return 0;
    case S_TRAILER:
        if (*s == '\0') r->state = S_DONE;
        return 0;
    default: FG_ASSERT(!"line in a body state"); return -1;
    }
}

/* Takes bytes of a line from p[0..n); returns how many, or -1. */
static ssize_t line_bytes(fgc_http_resp_t *r, const char *p, size_t n) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) + 1 : n;
    bool counted = r->state == S_STATUS || r->state == S_HEADER || r->state == S_TRAILER;
    if (counted) {
        r->head_bytes += take;
        if (r->head_bytes > FGC_HEAD_BYTES_MAX) return fail(r, "answer head over 16 KiB");
    }
    size_t data = nl ? take - 1 : take;
    size_t room = FGC_LINE_BYTES_MAX - r->line_len;
    size_t keep = data < room ? data : room;
    memcpy(r->line + r->line_len, p, keep);
    r->line_len += keep;
    if (keep < data) r->line_long = true;
    if (nl == NULL) return (ssize_t)take;
    if (r->line_len > 0 && r->line[r->line_len - 1] == '\r') r->line_len--;
    r->line[r->line_len] = '\0';
    int rc = line_done(r);
    r->line_len = 0;
    r->line_long = false;
    return rc < 0 ? -1 : (ssize_t)take;
}

/* Takes counted body bytes (Content-Length or chunk data); returns how many, or -1. */
static ssize_t counted_bytes(fgc_http_resp_t *r, const char *p, size_t n) {
    size_t take = (uint64_t)n < r->left ? n : (size_t)r->left;
    if (emit(r, p, take) < 0) return -1;
    r->left -= take;
    if (r->left == 0) r->state = r->state == S_LENGTH ? S_DONE : S_CHUNK_END;
    return (ssize_t)take;
}

ssize_t fgc_http_feed(fgc_http_resp_t *r, const char *p, size_t n) {
    if (r->state == S_ERROR) return -1;
    size_t i = 0;
    while (i < n && r->state != S_DONE) {
        ssize_t k;
        if (r->state == S_LENGTH || r->state == S_CHUNK_DATA) {
            k = counted_bytes(r, p + i, n - i);
        } else if (r->state == S_CLOSE) {
            k = emit(r, p + i, n - i) < 0 ? -1 : (ssize_t)(n - i);
        } else {
            k = line_bytes(r, p + i, n - i);
        }
        if (k < 0) return -1;
        i += (size_t)k;
    }
    return (ssize_t)i;
}

int fgc_http_eof(fgc_http_resp_t *r) {
    if (r->state == S_CLOSE) r->state = S_DONE;
    if (r->state == S_DONE) return 0;
    if (r->state == S_ERROR) return -1;
    return fail(r, r->status == 0 ? "connection closed before an answer"
                                  : "connection closed in the middle of an answer");
}

void fgc_http_request(fg_buf_t *out, const char *method, const char *host, const char *path,
                      const char *token, const char *idem, const char *body, size_t body_len) {
    fg_buf_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host);
    if (token != NULL) fg_buf_printf(out, "Authorization: Bearer %s\r\n", token);
    if (idem != NULL) fg_buf_printf(out, "Idempotency-Key: %s\r\n", idem);
    if (body != NULL) {
        fg_buf_printf(out, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      body_len);
        fg_buf_add(out, body, body_len);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        fg_buf_str(out, "Content-Length: 0\r\n\r\n");
    } else {
        fg_buf_str(out, "\r\n");
    }
}
