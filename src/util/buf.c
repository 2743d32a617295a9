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
bool fg_buf_reserve_grow(fg_buf_t *b, size_t n) {
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

/* "00" to "99": numbers are printed two digits per division. */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

/* The number of decimal digits of u (1 for 0; UINT64_MAX has 20), without a division: the bit
 * length gives it to within one (1233 / 4096 is log10(2) to four places), a power of ten settles
 * it. */
static size_t u64_digits(uint64_t u) {
    static const uint64_t pow10[20] = {
        1ULL,
        10ULL,
        100ULL,
        1000ULL,
        10000ULL,
        100000ULL,
        1000000ULL,
        10000000ULL,
        100000000ULL,
        1000000000ULL,
        10000000000ULL,
        100000000000ULL,
        1000000000000ULL,
        10000000000000ULL,
        100000000000000ULL,
        1000000000000000ULL,
        10000000000000000ULL,
        100000000000000000ULL,
        1000000000000000000ULL,
        10000000000000000000ULL,
    };
    size_t bits = 64 - (size_t)__builtin_clzll(u | 1);
    size_t t = bits * 1233 >> 12; /* at most 19: digits - 1 or digits */
    return t + ((u | 1) >= pow10[t]);
}

/* Writes the decimal digits of u so that they end just before end. */
static void put_u64_before(char *end, uint64_t u) {
    while (u >= 100) {
        size_t r = (size_t)(u % 100) * 2;
        u /= 100;
        end -= 2;
        end[0] = digit_pairs[r];
        end[1] = digit_pairs[r + 1];
    }
    if (u >= 10) {
        end[-2] = digit_pairs[u * 2];
        end[-1] = digit_pairs[u * 2 + 1];
    } else {
        end[-1] = (char)('0' + u);
    }
}

void fg_buf_i64(fg_buf_t *b, int64_t v) {
    /* By hand, not snprintf, and straight into the buffer: ids and counts in every answer.
     * Negated as unsigned: INT64_MIN. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = (v < 0) + u64_digits(u);
    if (!fg_buf_reserve(b, n)) return;
    char *d = b->data + b->len;
    if (v < 0) d[0] = '-';
    put_u64_before(d + n, u);
    d[n] = '\0';
    b->len += n;
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

/* 1 for the bytes a JSON string carries as they are: printable ASCII apart from '"' and '\'.
 * A table, one load a byte, because every answer scans its ids and names; NUL is not plain,
 * so a scan of a C string stops at its end. Bytes 0x80 and above (0, as the rest) go to the
 * UTF-8 check. */
static const unsigned char json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 controls */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 controls */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 '"' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50 '\' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 DEL needs no escape */
};

/* s[0..n) quoted as it is: nothing in it needs an escape. One room check for the whole. */
static void add_quoted(fg_buf_t *b, const char *s, size_t n) {
    if (!fg_buf_reserve(b, n + 2)) return;
    char *d = b->data + b->len;
    d[0] = '"';
    memcpy(d + 1, s, n);
    d[n + 1] = '"';
    d[n + 2] = '\0';
    b->len += n + 2;
}

/* s[0..n) quoted and escaped; s[0..plain) is known to need no escape. */
static void add_escaped(fg_buf_t *b, const char *s, size_t n, size_t plain) {
    static const char hex[] = "0123456789abcdef";
    fg_buf_add(b, "\"", 1);
    size_t start = 0;
    for (size_t i = plain; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (json_plain[c]) continue;
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

void fg_buf_json_strn(fg_buf_t *b, const char *s, size_t n) {
    size_t plain = 0;
    while (plain < n && json_plain[(unsigned char)s[plain]])
        plain++;
    if (plain == n)
        add_quoted(b, s, n); /* nearly every string: ids, codes, names */
    else
        add_escaped(b, s, n, plain);
}

void fg_buf_json_str(fg_buf_t *b, const char *s) {
    /* One pass instead of strlen and a scan: the scan stops at the NUL too. */
    size_t plain = 0;
    while (json_plain[(unsigned char)s[plain]])
        plain++;
    if (s[plain] == '\0')
        add_quoted(b, s, plain);
    else
        add_escaped(b, s, plain + strlen(s + plain), plain);
}

void fg_buf_json_key(fg_buf_t *b, const char *key, bool comma) {
    if (comma) fg_buf_add(b, ",", 1);
    fg_buf_json_str(b, key);
    fg_buf_add(b, ":", 1);
}

/* The date parts of the last days this thread formatted, by the day's parity: answers show
 * times of a day and maybe the next (a hold made before midnight expires after it), and the
 * calendar arithmetic is most of the cost of a time. */
typedef struct {
    bool set;
    int64_t day; /* days since 1970-01-01 */
    char date[FG_CLOCK_DATE_BYTES]; /* "YYYY-MM-DDT" */
} known_day_t;
static _Thread_local known_day_t known_days[2];

void fg_buf_json_time(fg_buf_t *b, int64_t unix_ms) {
    if (!fg_buf_reserve(b, FG_BUF_JSON_TIME_BYTES)) return;
    _Static_assert(FG_BUF_JSON_TIME_BYTES == FG_CLOCK_DATE_BYTES + FG_CLOCK_TIME_OF_DAY_BYTES + 2,
                   "a quoted time is its two parts and the quotes");
    int64_t day, sod, ms; /* the pieces fg_clock_format_rfc3339 is made of */
    fg_clock_split_ms(unix_ms, &day, &sod, &ms);
    known_day_t *known = &known_days[(uint64_t)day & 1];
    if (!known->set || known->day != day) {
        fg_clock_put_date(day, known->date);
        known->day = day;
        known->set = true;
    }
    /* digits, '-', ':', '.', 'T' and 'Z' only: nothing to escape */
    char *d = b->data + b->len;
    d[0] = '"';
    memcpy(d + 1, known->date, FG_CLOCK_DATE_BYTES);
    fg_clock_put_time_of_day(sod, ms, d + 1 + FG_CLOCK_DATE_BYTES);
    d[FG_BUF_JSON_TIME_BYTES - 1] = '"';
    d[FG_BUF_JSON_TIME_BYTES] = '\0';
    b->len += FG_BUF_JSON_TIME_BYTES;
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
