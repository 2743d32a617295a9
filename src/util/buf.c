/*
 * buf.c — bounded growable buffer; see buf.h.
 */
#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

void fg_buf_init(fg_buf_t *b, size_t max) {
    memset(b, 0, sizeof *b);
    b->max = max;
}

void fg_buf_free(fg_buf_t *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

char *fg_buf_take(fg_buf_t *b) {
    char *d = b->data;
    if (d == NULL) {
        d = malloc(1);
        if (d != NULL) d[0] = '\0';
    }
    b->data = NULL;
    b->len = b->cap = 0;
    b->overflow = false;
    return d;
}

void fg_buf_reset(fg_buf_t *b) {
    b->len = 0;
    b->overflow = false;
    if (b->data != NULL) b->data[0] = '\0';
}

/* Makes room for n more bytes plus a NUL; false (and overflow set) when it cannot. */
bool fg_buf_reserve(fg_buf_t *b, size_t n) {
    if (b->overflow) return false;
    if (n > b->max || b->len > b->max - n) {
        b->overflow = true;
        return false;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) {
        b->overflow = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void fg_buf_add_grow(fg_buf_t *b, const void *p, size_t n) {
    if (!fg_buf_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void fg_buf_str(fg_buf_t *b, const char *s) {
    fg_buf_add(b, s, strlen(s));
}

void fg_buf_printf(fg_buf_t *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->overflow = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        fg_buf_add(b, small, (size_t)n);
        return;
    }
    if (!fg_buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void fg_buf_i64(fg_buf_t *b, int64_t v) {
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324252627282930"
                                   "31323334353637383940414243444546474849505152535455565758596061"
                                   "62636465666768697071727374757677787980818283848586878889909192"
                                   "93949596979899";
    char tmp[24];
    char *p = tmp + sizeof tmp;
    /* By hand, not snprintf, two digits a step: ids, times and counts in every answer. Negated
     * as unsigned: INT64_MIN. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) {
        size_t i = (size_t)(u % 100) * 2;
        u /= 100;
        *--p = pairs[i + 1];
        *--p = pairs[i];
    }
    if (u >= 10) {
        *--p = pairs[u * 2 + 1];
        *--p = pairs[u * 2];
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    fg_buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* The length of the UTF-8 sequence that starts at s (RFC 3629: no overlong form, no surrogate,
 * nothing past U+10FFFF), or 0 when the bytes there are not one. s[0] is 0x80 or above. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len = c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

/* True for the bytes a JSON string carries as they are. */
static bool json_plain(unsigned char c) {
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

void fg_buf_json_strn(fg_buf_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t plain = 0;
    while (plain < n && json_plain((unsigned char)s[plain]))
        plain++;
    if (plain == n && fg_buf_reserve(b, n + 2)) {
        /* Nearly every string (ids, codes, names): quoted as it is, with one room check. */
        char *d = b->data + b->len;
        d[0] = '"';
        memcpy(d + 1, s, n);
        d[n + 1] = '"';
        d[n + 2] = '\0';
        b->len += n + 2;
        return;
    }
    fg_buf_add(b, "\"", 1);
    size_t start = 0;
    for (size_t i = plain; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (json_plain(c)) continue;
        size_t len = c >= 0x80 ? utf8_len((const unsigned char *)s + i, n - i) : 0;
        if (len > 0) {
            i += len - 1;
            continue;
        }
        fg_buf_add(b, s + start, i - start);
        start = i + 1;
        switch (c) {
        case '"': fg_buf_add(b, "\\\"", 2); break;
        case '\\': fg_buf_add(b, "\\\\", 2); break;
        case '\n': fg_buf_add(b, "\\n", 2); break;
        case '\r': fg_buf_add(b, "\\r", 2); break;
        case '\t': fg_buf_add(b, "\\t", 2); break;
        default: {
            /* JSON text is UTF-8: a byte that is not (an echoed path, a cut name) becomes
             * U+FFFD, the replacement character, so the answer stays valid JSON. */
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            fg_buf_add(b, c >= 0x80 ? "\\ufffd" : esc, 6);
        }
        }
    }
    fg_buf_add(b, s + start, n - start);
    fg_buf_add(b, "\"", 1);
}

void fg_buf_json_str(fg_buf_t *b, const char *s) {
    fg_buf_json_strn(b, s, strlen(s));
}

void fg_buf_json_key(fg_buf_t *b, const char *key, bool comma) {
    if (comma) fg_buf_add(b, ",", 1);
    fg_buf_json_str(b, key);
    fg_buf_add(b, ":", 1);
}

void fg_buf_json_time(fg_buf_t *b, int64_t unix_ms) {
    char tmp[40];
    tmp[0] = '"';
    /* digits, '-', ':', '.', 'T' and 'Z' only: nothing to escape */
    size_t n = fg_clock_format_rfc3339(unix_ms, tmp + 1, sizeof tmp - 2);
    tmp[n + 1] = '"';
    fg_buf_add(b, tmp, n + 2);
}

void fg_buf_csv_field(fg_buf_t *b, const char *s) {
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fg_buf_str(b, s);
        return;
    }
    fg_buf_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') fg_buf_add(b, "\"", 1);
        fg_buf_add(b, p, 1);
    }
    fg_buf_add(b, "\"", 1);
}

void fg_buf_problem_open(fg_buf_t *b, int status, const char *code, const char *detail) {
    fg_buf_str(b, "{\"type\":\"https://floodgate.dev/problems/");
    fg_buf_str(b, code);
    fg_buf_str(b, "\",\"title\":");
    fg_buf_json_str(b, code);
    fg_buf_printf(b, ",\"status\":%d,\"detail\":", status);
    fg_buf_json_str(b, detail);
    fg_buf_str(b, ",\"code\":");
    fg_buf_json_str(b, code);
}
