/*
 * ev_parse.c — request heads and chunked bodies; see ev_parse.h.
 */
#include "http/ev_parse.h"

#include <string.h>
#include <strings.h>

#include "util/check.h"
#include "util/token.h"

static const struct {
    const char *name;
    size_t len;
} known_headers[FG_EV_H_COUNT] = {
    [FG_EV_H_AUTHORIZATION] = {"Authorization", 13},
    [FG_EV_H_IDEMPOTENCY_KEY] = {"Idempotency-Key", 15},
    [FG_EV_H_SIGNATURE] = {"Floodgate-Signature", 19},
    [FG_EV_H_LAST_EVENT_ID] = {"Last-Event-ID", 13},
    [FG_EV_H_CONTENT_LENGTH] = {"Content-Length", 14},
    [FG_EV_H_TRANSFER_ENCODING] = {"Transfer-Encoding", 17},
    [FG_EV_H_HOST] = {"Host", 4},
    [FG_EV_H_CONNECTION] = {"Connection", 10},
    [FG_EV_H_EXPECT] = {"Expect", 6},
};

/* ---------------------------------------------------------------- bytes HTTP allows */

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

/* RFC 9110 5.5: a field value has no control byte but tab (obs-text, 0x80-0xff, is allowed). */
static bool is_field_value(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
    }
    return true;
}

/* RFC 9112 3.2: a request target is visible ASCII; anything else must be percent-encoded. */
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

static bool is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* ---------------------------------------------------------------- heads */

size_t fg_ev_skip_lines(const char *p, size_t n) {
    size_t at = 0;
    while (at < n) {
        if (p[at] == '\r') {
            if (at + 1 >= n || p[at + 1] != '\n') return at;
            at += 2;
            continue;
        }
        if (p[at] != '\0') return at;
        const char *end = memmem(p + at, n - at, "\r\n", 2);
        if (end == NULL) return at;
        at = (size_t)(end - p) + 2;
    }
    return at;
}

size_t fg_ev_head_end(const char *p, size_t n, size_t *scan) {
    size_t from = *scan;
    if (from > n) from = n;
    const char *end = memmem(p + from, n - from, "\r\n\r\n", 4);
    if (end == NULL) {
        /* the terminator may straddle what has come and what comes next */
        *scan = n >= 3 ? n - 3 : 0;
        return 0;
    }
    return (size_t)(end - p) + 4;
}

/* The request line p[0..len): method SP target SP version. The target runs to the last space,
 * as libmicrohttpd read it, so a target with a space in it is refused by fg_ev_check. */
static fg_ev_head_rc_t parse_request_line(char *p, size_t len, fg_ev_head_t *h) {
    char *sp1 = memchr(p, ' ', len);
    if (sp1 == NULL) return FG_EV_HEAD_DROP;
    char *sp2 = memrchr(p, ' ', len);
    if (sp2 == sp1) return FG_EV_HEAD_BAD; /* HTTP/0.9: no version */
    char *version = sp2 + 1;
    size_t vlen = len - (size_t)(version - p);
    if (vlen == 8 && memcmp(version, "HTTP/1.1", 8) == 0)
        h->minor_version = 1;
    else if (vlen == 8 && memcmp(version, "HTTP/1.0", 8) == 0)
        h->minor_version = 0;
    else if (vlen == 8 && memcmp(version, "HTTP/", 5) == 0 && is_digit(version[5]) &&
             version[6] == '.' && is_digit(version[7]))
        return FG_EV_HEAD_VERSION;
    else
        return FG_EV_HEAD_BAD;
    h->method = p;
    h->method_len = (size_t)(sp1 - p);
    *sp1 = '\0';
    h->target = sp1 + 1;
    h->target_len = (size_t)(sp2 - h->target);
    *sp2 = '\0';
    p[len] = '\0'; /* the CR of the line's end */
    return FG_EV_HEAD_OK;
}

static int known_header(const char *name, size_t n) {
    for (int i = 0; i < FG_EV_H_COUNT; i++)
        if (known_headers[i].len == n && strncasecmp(name, known_headers[i].name, n) == 0) return i;
    return -1;
}

/* One header line p[0..len), not yet ended by a NUL. */
static fg_ev_head_rc_t parse_header_line(char *p, size_t len, fg_ev_head_t *h) {
    char *colon = memchr(p, ':', len);
    if (colon == NULL) return FG_EV_HEAD_BAD;
    size_t nlen = (size_t)(colon - p);
    if (memchr(p, '\0', nlen) != NULL) return FG_EV_HEAD_BAD;
    char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (!is_token(p, nlen) || !is_field_value(v, (size_t)(end - v))) h->bad_byte = true;
    int k = known_header(p, nlen);
    if (k >= 0 && h->count[k]++ == 0) {
        *end = '\0';
        h->value[k] = v;
    }
    return FG_EV_HEAD_OK;
}

/* 1*DIGIT, at most 64 bits. */
static fg_ev_head_rc_t parse_length(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (*s == '\0') return FG_EV_HEAD_BAD;
    for (; *s != '\0'; s++) {
        if (!is_digit(*s)) return FG_EV_HEAD_BAD;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            /* a number, but a length no body can have: libmicrohttpd's 413; the digits that
             * follow are still checked, so "99999999999999999999x" stays a 400 */
            for (s++; *s != '\0'; s++)
                if (!is_digit(*s)) return FG_EV_HEAD_BAD;
            return FG_EV_HEAD_TOO_BIG;
        }
        v = v * 10 + d;
    }
    *out = v;
    return FG_EV_HEAD_OK;
}

fg_ev_head_rc_t fg_ev_head_parse(char *p, size_t len, fg_ev_head_t *h) {
    FG_ASSERT(len >= 4 && memcmp(p + len - 4, "\r\n\r\n", 4) == 0);
    memset(h, 0, sizeof *h);
    char *eol = memmem(p, len, "\r\n", 2);
    FG_ASSERT(eol != NULL);
    size_t at = (size_t)(eol - p);
    fg_ev_head_rc_t rc = parse_request_line(p, at, h);
    if (rc != FG_EV_HEAD_OK) return rc;
    at += 2;
    while (at < len - 2) {
        eol = memmem(p + at, len - at, "\r\n", 2);
        FG_ASSERT(eol != NULL);
        rc = parse_header_line(p + at, (size_t)(eol - (p + at)), h);
        if (rc != FG_EV_HEAD_OK) return rc;
        at = (size_t)(eol - p) + 2;
    }
    if (h->count[FG_EV_H_CONTENT_LENGTH] > 0)
        return parse_length(h->value[FG_EV_H_CONTENT_LENGTH], &h->content_length);
    return FG_EV_HEAD_OK;
}

bool fg_ev_connection_has(const fg_ev_head_t *h, const char *token) {
    return fg_token_list_has(h->value[FG_EV_H_CONNECTION], token);
}

fg_ev_refusal_t fg_ev_check(const fg_ev_head_t *h) {
    const int *n = h->count;
    bool http10 = h->minor_version == 0;
    /* The API's codes are fixed (docs/api.md): a malformed message is a bad field of it, and
     * the detail names which. */
    const char *bad = "invalid_field";
    if (!is_token(h->method, h->method_len))
        return (fg_ev_refusal_t){400, bad, "the method is not a token"};
    if (!is_target(h->target, h->target_len))
        return (fg_ev_refusal_t){400, bad,
                                 "the request target has a space, control or non-ASCII byte"};
    if (h->bad_byte)
        return (fg_ev_refusal_t){400, bad,
                                 "a header name is not a token, or a value has a control byte"};
    if (n[FG_EV_H_HOST] > 1 || (n[FG_EV_H_HOST] == 0 && !http10))
        return (fg_ev_refusal_t){400, bad, "an HTTP/1.1 request needs exactly one Host header"};
    if (n[FG_EV_H_TRANSFER_ENCODING] > 0 && n[FG_EV_H_CONTENT_LENGTH] > 0)
        return (fg_ev_refusal_t){400, bad, "Content-Length and Transfer-Encoding together"};
    if (n[FG_EV_H_CONTENT_LENGTH] > 1)
        return (fg_ev_refusal_t){400, bad, "more than one Content-Length"};
    if (n[FG_EV_H_TRANSFER_ENCODING] > 1)
        return (fg_ev_refusal_t){400, bad, "more than one Transfer-Encoding"};
    if (n[FG_EV_H_TRANSFER_ENCODING] > 0 && http10)
        return (fg_ev_refusal_t){400, bad, "Transfer-Encoding in an HTTP/1.0 request"};
    const char *coding = h->value[FG_EV_H_TRANSFER_ENCODING];
    if (coding != NULL && strcasecmp(coding, "chunked") != 0)
        return (fg_ev_refusal_t){501, "not_implemented",
                                 "only the chunked transfer coding is implemented"};
    if (!is_known_method(h->method))
        return (fg_ev_refusal_t){501, "not_implemented", "the method is not implemented"};
    return (fg_ev_refusal_t){0};
}

/* ---------------------------------------------------------------- chunked bodies */

enum {
    CH_SIZE_FIRST, /* the first hex digit of a chunk size */
    CH_SIZE,       /* more digits, an extension, or the CR */
    CH_BWS,        /* whitespace after the size: only a ';' may follow */
    CH_EXT,        /* a chunk extension, skipped to the CR */
    CH_SIZE_LF,    /* the LF of the size line */
    CH_DATA,       /* chunk bytes */
    CH_DATA_CR,    /* the CRLF after them */
    CH_DATA_LF,
    CH_TRAILER,    /* the start of a trailer line, or the CR of the empty line that ends all */
    CH_TRAILER_IN, /* inside a trailer line */
    CH_TRAILER_LF, /* the LF of a trailer line */
    CH_END_LF,     /* the LF of the last empty line */
    CH_DONE,
};

void fg_ev_chunked_init(fg_ev_chunked_t *c) {
    c->state = CH_SIZE_FIRST;
    c->size = 0;
}

/* One framing byte (any state but CH_DATA). */
static fg_ev_chunked_rc_t chunked_byte(fg_ev_chunked_t *c, char ch) {
    int hex = hex_value(ch);
    switch (c->state) {
    case CH_SIZE_FIRST:
        if (hex < 0) return FG_EV_CHUNKED_BAD;
        c->size = (uint64_t)hex;
        c->state = CH_SIZE;
        return FG_EV_CHUNKED_MORE;
    case CH_SIZE:
        if (hex >= 0) {
            if (c->size > (UINT64_MAX >> 4)) return FG_EV_CHUNKED_TOO_BIG;
            c->size = (c->size << 4) | (uint64_t)hex;
        } else if (ch == ';') {
            c->state = CH_EXT; /* ";name=value" pairs (RFC 9112 7.1.1) */
        } else if (ch == ' ' || ch == '\t') {
            c->state = CH_BWS;
        } else if (ch == '\r') {
            c->state = CH_SIZE_LF;
        } else {
            return FG_EV_CHUNKED_BAD;
        }
        return FG_EV_CHUNKED_MORE;
    case CH_BWS:
        if (ch == ';')
            c->state = CH_EXT;
        else if (ch != ' ' && ch != '\t')
            return FG_EV_CHUNKED_BAD;
        return FG_EV_CHUNKED_MORE;
    case CH_EXT:
        if (ch == '\r')
            c->state = CH_SIZE_LF;
        else if (ch == '\n' || ch == '\0')
            return FG_EV_CHUNKED_BAD;
        return FG_EV_CHUNKED_MORE;
    case CH_SIZE_LF:
        if (ch != '\n') return FG_EV_CHUNKED_BAD;
        c->state = c->size == 0 ? CH_TRAILER : CH_DATA;
        return FG_EV_CHUNKED_MORE;
    case CH_DATA_CR:
        if (ch != '\r') return FG_EV_CHUNKED_BAD;
        c->state = CH_DATA_LF;
        return FG_EV_CHUNKED_MORE;
    case CH_DATA_LF:
        if (ch != '\n') return FG_EV_CHUNKED_BAD;
        c->state = CH_SIZE_FIRST;
        return FG_EV_CHUNKED_MORE;
    case CH_TRAILER:
        c->state = ch == '\r' ? CH_END_LF : CH_TRAILER_IN;
        return ch == '\n' ? FG_EV_CHUNKED_BAD : FG_EV_CHUNKED_MORE;
    case CH_TRAILER_IN:
        if (ch == '\r')
            c->state = CH_TRAILER_LF;
        else if (ch == '\n')
            return FG_EV_CHUNKED_BAD;
        return FG_EV_CHUNKED_MORE;
    case CH_TRAILER_LF:
        if (ch != '\n') return FG_EV_CHUNKED_BAD;
        c->state = CH_TRAILER;
        return FG_EV_CHUNKED_MORE;
    case CH_END_LF:
        if (ch != '\n') return FG_EV_CHUNKED_BAD;
        c->state = CH_DONE;
        return FG_EV_CHUNKED_DONE;
    default: FG_ASSERT(!"a chunked state with no byte rule"); return FG_EV_CHUNKED_BAD;
    }
}

fg_ev_chunked_rc_t fg_ev_chunked_decode(fg_ev_chunked_t *c, char *buf, size_t n, size_t *used,
                                        size_t *data_len) {
    FG_ASSERT(c->state != CH_DONE);
    size_t in = 0, out = 0;
    fg_ev_chunked_rc_t rc = FG_EV_CHUNKED_MORE;
    while (in < n && rc == FG_EV_CHUNKED_MORE) {
        if (c->state == CH_DATA) {
            size_t take = n - in;
            if ((uint64_t)take > c->size) take = (size_t)c->size;
            memmove(buf + out, buf + in, take);
            out += take;
            in += take;
            c->size -= take;
            if (c->size == 0) c->state = CH_DATA_CR;
            continue;
        }
        rc = chunked_byte(c, buf[in++]);
    }
    *used = in;
    *data_len = out;
    return rc;
}
