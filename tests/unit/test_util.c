/*
 * test_util.c — unit tests of src/util: the bounded buffer (JSON escaping, overflow, CSV
 * quoting), RFC 3339 time formatting and parsing, and the open-addressing hash map.
 *
 * Property tests (JSON escaping parsed back by jansson, time round trips, the map against a naive
 * model) use a seeded splitmix64 generator; the seed is fixed and printed in failure messages.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/map.h"
#include "util/pack.h"
#include "asserts.h"

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define SEED 0x0f100d6a7eULL

/* ---------------------------------------------------------------- buf: basics and limits */

Test(buf, add_appends_and_keeps_a_terminating_nul) {
    fg_buf_t b;
    fg_buf_init(&b, 1024);
    fg_buf_str(&b, "flood");
    fg_buf_add(&b, "gate!!", 4);
    EQ(b.len, 9);
    STREQ(b.data, "floodgate");
    cr_assert(!b.overflow);
    fg_buf_add(&b, "", 0);
    EQ(b.len, 9);
    fg_buf_free(&b);
    cr_assert_null(b.data);
}

Test(buf, printf_formats_short_and_long_text) {
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg_buf_printf(&b, "%s=%d;", "units", 42);
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fg_buf_printf(&b, "[%s]", big); /* longer than the 256-byte fast path */
    EQ(b.len, 9 + 601);
    cr_assert(strncmp(b.data, "units=42;[xxx", 13) == 0, "got \"%.20s...\"", b.data);
    EQ(b.data[b.len - 1], ']');
    EQ(strlen(b.data), b.len);
    cr_assert(!b.overflow);
    fg_buf_free(&b);
}

Test(buf, append_that_does_not_fit_sets_overflow_and_keeps_content) {
    fg_buf_t b;
    fg_buf_init(&b, 10);
    fg_buf_str(&b, "12345678");
    fg_buf_str(&b, "abc"); /* 11 > 10 */
    cr_assert(b.overflow);
    EQ(b.len, 8);
    STREQ(b.data, "12345678");
    /* Overflow is sticky: even what would fit is refused until reset. */
    fg_buf_str(&b, "9");
    EQ(b.len, 8);
    fg_buf_reset(&b);
    cr_assert(!b.overflow);
    EQ(b.len, 0);
    STREQ(b.data, "");
    fg_buf_str(&b, "0123456789"); /* exactly max fits */
    cr_assert(!b.overflow);
    EQ(b.len, 10);
    STREQ(b.data, "0123456789");
    fg_buf_free(&b);
}

Test(buf, long_printf_past_max_sets_overflow) {
    fg_buf_t b;
    fg_buf_init(&b, 300);
    fg_buf_str(&b, "head");
    char big[400];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fg_buf_printf(&b, "%s", big);
    cr_assert(b.overflow);
    EQ(b.len, 4);
    STREQ(b.data, "head");
    fg_buf_free(&b);
}

Test(buf, huge_append_does_not_wrap_the_length_check) {
    fg_buf_t b;
    fg_buf_init(&b, 64);
    fg_buf_str(&b, "abc");
    fg_buf_add(&b, "x", SIZE_MAX - 1); /* len + n would wrap; must be refused, not copied */
    cr_assert(b.overflow);
    EQ(b.len, 3);
    fg_buf_free(&b);
}

Test(buf, take_hands_over_data_and_resets) {
    fg_buf_t b;
    fg_buf_init(&b, 100);
    char *empty = fg_buf_take(&b);
    cr_assert_not_null(empty, "an empty buffer gives \"\", not NULL");
    STREQ(empty, "");
    free(empty);
    fg_buf_str(&b, "answer");
    char *d = fg_buf_take(&b);
    STREQ(d, "answer");
    free(d);
    cr_assert_null(b.data);
    EQ(b.len, 0);
    EQ(b.max, 100); /* reusable with the same limit */
    fg_buf_str(&b, "again");
    STREQ(b.data, "again");
    fg_buf_free(&b);
}

Test(buf, i64_prints_extremes) {
    fg_buf_t b;
    fg_buf_init(&b, 200);
    fg_buf_i64(&b, INT64_MIN);
    fg_buf_str(&b, " ");
    fg_buf_i64(&b, INT64_MAX);
    fg_buf_str(&b, " ");
    fg_buf_i64(&b, 0);
    fg_buf_str(&b, " ");
    fg_buf_i64(&b, -1);
    STREQ(b.data, "-9223372036854775808 9223372036854775807 0 -1");
    fg_buf_free(&b);
}

Test(buf, i64_matches_printf_at_every_digit_count) {
    rng_t r = {SEED ^ 0x164};
    fg_buf_t b;
    fg_buf_init(&b, 64);
    char want[32];
    for (int i = 0; i < 20000; i++) {
        int64_t v;
        if (i < 40) { /* 10^k - 1 and 10^k, both signs: where the digit count changes */
            int64_t p = 1;
            for (int k = 0; k < i / 4 && p <= INT64_MAX / 10; k++) p *= 10;
            v = (i % 4 < 2 ? p - 1 : p) * (i % 2 ? -1 : 1);
        } else {
            v = (int64_t)(rng_next(&r) >> (rng_next(&r) % 64));
            if (rng_next(&r) & 1) v = -v;
        }
        fg_buf_reset(&b);
        fg_buf_i64(&b, v);
        snprintf(want, sizeof want, "%lld", (long long)v);
        STREQ(b.data, want);
    }
    fg_buf_free(&b);
}

/* Pieces that land exactly on the allocation's end and on max take the same path as any. */
Test(buf, adds_across_growth_and_up_to_max_keep_every_byte) {
    for (size_t max = 250; max <= 1030; max += 26) {
        fg_buf_t b;
        fg_buf_init(&b, max);
        char want[1100];
        size_t len = 0;
        for (size_t piece = 1; !b.overflow; piece = piece % 37 + 1) {
            char chunk[40];
            for (size_t i = 0; i < piece; i++) chunk[i] = (char)('a' + (len + i) % 26);
            fg_buf_add(&b, chunk, piece);
            if (len + piece > max) break;
            memcpy(want + len, chunk, piece);
            len += piece;
            EQ(b.len, len);
        }
        cr_assert(b.overflow, "max %zu: the add past max sets overflow", max);
        EQ(b.len, len);
        cr_assert_eq(memcmp(b.data, want, len), 0, "max %zu: content", max);
        cr_assert_eq(b.data[len], '\0');
        fg_buf_free(&b);
    }
}

/* Numbers, quoted strings and times are written in place: one that does not fit under max sets
 * overflow and leaves the buffer as it was, and one that fits lands exactly on max. */
Test(buf, numbers_strings_and_times_at_max_fit_whole_or_not_at_all) {
    for (size_t max = 1; max <= 64; max++) {
        for (int kind = 0; kind < 3; kind++) {
            fg_buf_t b;
            fg_buf_init(&b, max);
            char want[128];
            size_t len = 0;
            for (int k = 0; !b.overflow; k++) {
                char piece[64];
                size_t before = b.len;
                if (kind == 0) {
                    int64_t v = -(int64_t)(k * 7919) * 1000003;
                    snprintf(piece, sizeof piece, "%lld", (long long)v);
                    fg_buf_i64(&b, v);
                } else if (kind == 1) {
                    char id[32];
                    snprintf(id, sizeof id, "id-%d", k * 37);
                    snprintf(piece, sizeof piece, "\"%s\"", id);
                    fg_buf_json_str(&b, id);
                } else {
                    char t[32];
                    fg_clock_format_rfc3339(1795435200123LL + k * 86399999LL, t, sizeof t);
                    snprintf(piece, sizeof piece, "\"%s\"", t);
                    fg_buf_json_time(&b, 1795435200123LL + k * 86399999LL);
                }
                size_t n = strlen(piece);
                if (len + n > max) {
                    cr_assert(b.overflow, "max %zu kind %d: %s past max sets overflow", max, kind,
                              piece);
                    EQ(b.len, before);
                    break;
                }
                cr_assert(!b.overflow, "max %zu kind %d: %s fits", max, kind, piece);
                memcpy(want + len, piece, n);
                len += n;
                EQ(b.len, len);
            }
            if (len > 0) {
                cr_assert_eq(memcmp(b.data, want, len), 0, "max %zu kind %d: content", max, kind);
                cr_assert_eq(b.data[len], '\0');
            }
            fg_buf_free(&b);
        }
    }
}

/* ---------------------------------------------------------------- buf: JSON */

static char *json_of(const char *s, size_t n) {
    fg_buf_t b;
    fg_buf_init(&b, 1 << 20);
    fg_buf_json_strn(&b, s, n);
    cr_assert(!b.overflow);
    return fg_buf_take(&b);
}

Test(buf_json, escapes_quote_backslash_and_whitespace_controls) {
    char *j = json_of("a\"b\\c\nd\re\tf", 11);
    STREQ(j, "\"a\\\"b\\\\c\\nd\\re\\tf\"");
    free(j);
}

Test(buf_json, escapes_other_controls_as_u00xx) {
    const char s[] = {0x01, 0x08, 0x0c, 0x1f, 0x7f, 'z'};
    char *j = json_of(s, sizeof s);
    /* DEL (0x7f) needs no escape in JSON. */
    STREQ(j, "\"\\u0001\\u0008\\u000c\\u001f\x7fz\"");
    free(j);
}

Test(buf_json, escapes_embedded_nul) {
    char *j = json_of("a\0b", 3);
    STREQ(j, "\"a\\u0000b\"");
    free(j);
}

Test(buf_json, passes_utf8_through) {
    char *j = json_of("Müller – 東京 🙂", strlen("Müller – 東京 🙂"));
    STREQ(j, "\"Müller – 東京 🙂\"");
    free(j);
    j = json_of("", 0);
    STREQ(j, "\"\"");
    free(j);
}

/* Up to max_parts - 1 pieces drawn at random, joined into s (NUL-terminated; pieces are at most
 * 4 bytes, so s needs 4 * max_parts bytes); returns the length. */
static size_t random_pieces(rng_t *r, const char *const *pieces, size_t count, int max_parts,
                            char *s) {
    size_t n = 0;
    int parts = (int)(rng_next(r) % (uint64_t)max_parts);
    for (int k = 0; k < parts; k++) {
        const char *p = pieces[rng_next(r) % count];
        memcpy(s + n, p, strlen(p));
        n += strlen(p);
    }
    s[n] = '\0';
    return n;
}

/* Random strings of control characters, quotes, backslashes, ASCII and multi-byte UTF-8: the
 * escaped form must parse (jansson, strict) back to the same bytes. */
Test(buf_json, escaped_strings_parse_back_to_the_original) {
    rng_t r = {SEED};
    static const char *const pieces[] = {"\"", "\\", "\n", "\r", "\t", "\x01", "\x1f", "\x7f",
                                         "a",  "Z",  " ",  "/",  "é",  "€",    "😀",   "\\u"};
    for (int iter = 0; iter < 3000; iter++) {
        char s[512];
        size_t n = random_pieces(&r, pieces, sizeof pieces / sizeof pieces[0], 40, s);
        fg_buf_t b;
        fg_buf_init(&b, 4096);
        fg_buf_str(&b, "[");
        fg_buf_json_strn(&b, s, n);
        fg_buf_str(&b, "]");
        json_error_t err;
        json_t *v = json_loads(b.data, JSON_DECODE_ANY, &err);
        cr_assert_not_null(v, "seed %llx iter %d: %s does not parse: %s",
                           (unsigned long long)SEED, iter, b.data, err.text);
        const char *back = json_string_value(json_array_get(v, 0));
        cr_assert_not_null(back);
        cr_assert_eq(json_string_length(json_array_get(v, 0)), n, "iter %d: length differs",
                     iter);
        cr_assert(memcmp(back, s, n) == 0, "iter %d: %s parsed back differently", iter, b.data);
        json_decref(v);
        fg_buf_free(&b);
    }
}

Test(buf_json, key_adds_comma_only_when_asked) {
    fg_buf_t b;
    fg_buf_init(&b, 200);
    fg_buf_str(&b, "{");
    fg_buf_json_key(&b, "id", false);
    fg_buf_i64(&b, 7);
    fg_buf_json_key(&b, "na\"me", true);
    fg_buf_json_str(&b, "x");
    fg_buf_json_key(&b, "at", true);
    fg_buf_json_time(&b, 1795435200000LL);
    fg_buf_str(&b, "}");
    STREQ(b.data, "{\"id\":7,\"na\\\"me\":\"x\",\"at\":\"2026-11-23T12:00:00.000Z\"}");
    fg_buf_free(&b);
}

Test(buf_json, escaping_past_max_sets_overflow) {
    fg_buf_t b;
    fg_buf_init(&b, 8);
    fg_buf_json_str(&b, "\"\"\"\""); /* 10 bytes escaped, plus quotes */
    cr_assert(b.overflow);
    cr_assert_leq(b.len, 8);
    fg_buf_free(&b);
}

/* fg_buf_json_str (one pass over a C string) and fg_buf_json_strn (a length) agree on every
 * string, whether it needs escapes from its first byte, its last, or none. */
Test(buf_json, str_and_strn_agree) {
    rng_t r = {SEED ^ 0x57};
    static const char *const pieces[] = {"\"", "\\", "\n", "\x01", "\x7f", "a", "Z",   "-",
                                         ".",  "_",  "9",  " ",    "é",    "😀", "\xff"};
    for (int iter = 0; iter < 3000; iter++) {
        char s[256];
        size_t n = random_pieces(&r, pieces, sizeof pieces / sizeof pieces[0], 30, s);
        fg_buf_t a, b;
        fg_buf_init(&a, 4096);
        fg_buf_init(&b, 4096);
        fg_buf_json_str(&a, s);
        fg_buf_json_strn(&b, s, n);
        cr_assert(!a.overflow && !b.overflow);
        cr_assert_str_eq(a.data, b.data, "iter %d", iter);
        fg_buf_free(&a);
        fg_buf_free(&b);
    }
}

/* Times are written as fg_clock_format_rfc3339 writes them, whichever days came before: the
 * date of a day already seen is reused, so days in turn, far apart and before 1970 are mixed. */
Test(buf_json, time_matches_the_clock_format_across_days) {
    rng_t r = {SEED ^ 0x71};
    fg_buf_t b;
    fg_buf_init(&b, 256);
    char t[32], want[40];
    int64_t base = 1795435200000LL; /* 2026-11-23T12:00:00Z */
    for (int i = 0; i < 20000; i++) {
        int64_t ms;
        switch (i % 4) {
        case 0: ms = base + (int64_t)(rng_next(&r) % 1000); break;             /* the same day */
        case 1: ms = base + (int64_t)(rng_next(&r) % (5 * 86400000LL)); break; /* days near */
        case 2: ms = -(int64_t)(rng_next(&r) % (3 * 86400000LL)); break;       /* before 1970 */
        default: ms = (int64_t)(rng_next(&r) % 400000000000000LL) - 100000000000000LL;
        }
        fg_clock_format_rfc3339(ms, t, sizeof t);
        snprintf(want, sizeof want, "\"%s\"", t);
        fg_buf_reset(&b);
        fg_buf_json_time(&b, ms);
        cr_assert_str_eq(b.data, want, "from %lld", (long long)ms);
    }
    fg_buf_free(&b);
}

/* ---------------------------------------------------------------- buf: CSV */

static char *csv_of(const char *s) {
    fg_buf_t b;
    fg_buf_init(&b, 1024);
    fg_buf_csv_field(&b, s);
    return fg_buf_take(&b);
}

Test(buf_csv, plain_field_is_not_quoted) {
    char *c = csv_of("Berlin 10115");
    STREQ(c, "Berlin 10115");
    free(c);
    c = csv_of("");
    STREQ(c, "");
    free(c);
}

Test(buf_csv, comma_newline_and_cr_are_quoted) {
    char *c = csv_of("Main St, 5");
    STREQ(c, "\"Main St, 5\"");
    free(c);
    c = csv_of("line1\nline2");
    STREQ(c, "\"line1\nline2\"");
    free(c);
    c = csv_of("a\rb");
    STREQ(c, "\"a\rb\"");
    free(c);
}

Test(buf_csv, quotes_are_doubled_inside_quotes) {
    char *c = csv_of("say \"hi\"");
    STREQ(c, "\"say \"\"hi\"\"\"");
    free(c);
    c = csv_of("\"");
    STREQ(c, "\"\"\"\"");
    free(c);
}

Test(buf_csv, field_past_max_sets_overflow) {
    fg_buf_t b;
    fg_buf_init(&b, 6);
    fg_buf_csv_field(&b, "a,b,c,d");
    cr_assert(b.overflow);
    fg_buf_free(&b);
}

/* ---------------------------------------------------------------- clock: format */

static void fmt(int64_t ms, char out[32]) { fg_clock_format_rfc3339(ms, out, 32); }

Test(clock, format_writes_utc_with_milliseconds) {
    char s[32];
    fmt(0, s);
    STREQ(s, "1970-01-01T00:00:00.000Z");
    fmt(1800000000000LL, s);
    STREQ(s, "2027-01-15T08:00:00.000Z");
    fmt(1709210096789LL, s);
    STREQ(s, "2024-02-29T12:34:56.789Z");
    fmt(1798761599000LL + 999, s);
    STREQ(s, "2026-12-31T23:59:59.999Z");
    fmt(253402300799999LL, s);
    STREQ(s, "9999-12-31T23:59:59.999Z");
    EQ(strlen(s), 24);
}

Test(clock, format_before_the_epoch_borrows_a_second) {
    char s[32];
    fmt(-1, s);
    STREQ(s, "1969-12-31T23:59:59.999Z");
    fmt(-1000, s);
    STREQ(s, "1969-12-31T23:59:59.000Z");
}

/* The hand-made calendar agrees with the C library's for random times, years 1 to 9999. */
Test(clock, format_agrees_with_gmtime) {
    rng_t r = {SEED};
    char s[32], want[64];
    for (int i = 0; i < 20000; i++) {
        int64_t span = 253402300800000LL + 62135596800000LL;
        int64_t ms = (int64_t)(rng_next(&r) % (uint64_t)span) - 62135596800000LL;
        fmt(ms, s);
        int64_t secs = ms / 1000, rem = ms % 1000;
        if (rem < 0) {
            rem += 1000;
            secs -= 1;
        }
        time_t t = (time_t)secs;
        struct tm tm;
        cr_assert_not_null(gmtime_r(&t, &tm));
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
        cr_assert_str_eq(s, want, "from %lld", (long long)ms);
    }
}

Test(clock, format_fits_the_documented_minimum_buffer) {
    char s[25];
    memset(s, '#', sizeof s);
    fg_clock_format_rfc3339(1795435200123LL, s, sizeof s);
    STREQ(s, "2026-11-23T12:00:00.123Z");
}

/* ---------------------------------------------------------------- clock: parse */

static int64_t parse_ok(const char *s) {
    int64_t ms = -12345;
    int rc = fg_clock_parse_rfc3339(s, &ms);
    cr_assert_eq(rc, 0, "\"%s\" must parse", s);
    return ms;
}

Test(clock, parse_reads_utc_times) {
    EQ(parse_ok("2026-11-23T12:00:00Z"), 1795435200000LL);
    EQ(parse_ok("1970-01-01T00:00:00Z"), 0);
    EQ(parse_ok("2024-02-29T12:34:56.789Z"), 1709210096789LL);
    EQ(parse_ok("9999-12-31T23:59:59.999Z"), 253402300799999LL);
    EQ(parse_ok("2026-11-23t12:00:00z"), 1795435200000LL); /* RFC 3339 allows lower case */
}

Test(clock, parse_reads_fractions_of_any_length_up_to_nine_digits) {
    EQ(parse_ok("2026-11-23T12:00:00.5Z"), 1795435200500LL);
    EQ(parse_ok("2026-11-23T12:00:00.05Z"), 1795435200050LL);
    EQ(parse_ok("2026-11-23T12:00:00.123Z"), 1795435200123LL);
    EQ(parse_ok("2026-11-23T12:00:00.123999Z"), 1795435200123LL); /* truncated, not rounded */
    EQ(parse_ok("2026-11-23T12:00:00.000000001Z"), 1795435200000LL);
}

Test(clock, parse_applies_offsets) {
    EQ(parse_ok("2026-11-23T12:00:00+00:00"), 1795435200000LL);
    EQ(parse_ok("2026-11-23T12:00:00-00:00"), 1795435200000LL);
    EQ(parse_ok("2026-11-23T13:00:00+01:00"), 1795435200000LL);
    EQ(parse_ok("2026-11-23T12:00:00+05:30"), 1795415400000LL);
    EQ(parse_ok("2026-11-23T04:00:00-08:00"), 1795435200000LL);
    EQ(parse_ok("2026-11-23T12:00:00.250-08:00"), 1795435200000LL + 8 * 3600000LL + 250);
    /* An offset moves the date across a year boundary. */
    EQ(parse_ok("2027-01-01T01:59:59+02:00"), 1798761599000LL);
    EQ(parse_ok("2026-11-23T12:00:00+23:59"), 1795435200000LL - (23 * 60 + 59) * 60000LL);
}

Test(clock, parse_knows_leap_years) {
    EQ(parse_ok("2024-02-29T12:34:56.789Z"), 1709210096789LL);
    EQ(parse_ok("2000-02-29T00:00:00Z"), 951782400000LL); /* divisible by 400 */
    int64_t ms;
    cr_assert_neq(fg_clock_parse_rfc3339("2023-02-29T00:00:00Z", &ms), 0, "2023 is not leap");
    cr_assert_neq(fg_clock_parse_rfc3339("2100-02-29T00:00:00Z", &ms), 0, "2100 is not leap");
    cr_assert_neq(fg_clock_parse_rfc3339("2024-02-30T00:00:00Z", &ms), 0);
    EQ(parse_ok("2026-03-01T00:00:00Z"), 1772323200000LL);
}

Test(clock, parse_clamps_a_leap_second) {
    EQ(parse_ok("2016-12-31T23:59:60Z"), 1483228799000LL);
}

Test(clock, parse_refuses_invalid_text) {
    static const char *const bad[] = {
        "",
        "2026-11-23",
        "2026-11-23T12:00:00",        /* no offset */
        "2026-11-23 12:00:00Z",       /* space instead of T */
        "2026-11-23T12:00Z",          /* no seconds */
        "2026-13-01T00:00:00Z",       /* month 13 */
        "2026-00-01T00:00:00Z",       /* month 0 */
        "2026-11-00T00:00:00Z",       /* day 0 */
        "2026-04-31T00:00:00Z",       /* April has 30 days */
        "2026-11-23T24:00:00Z",       /* hour 24 */
        "2026-11-23T12:60:00Z",       /* minute 60 */
        "2026-11-23T12:00:61Z",       /* second 61 */
        "2026-11-23T12:00:00+24:00",  /* offset hour 24 */
        "2026-11-23T12:00:00+01:60",  /* offset minute 60 */
        "2026-11-23T12:00:00+0100",   /* offset without colon */
        "2026-11-23T12:00:00+01",     /* short offset */
        "2026-11-23T12:00:00+",       /* sign only */
        "2026-11-23T12:00:00.Z",      /* dot without digits */
        "2026-11-23T12:00:00.1234567890Z", /* ten fraction digits */
        "2026-11-23T12:00:00Zjunk",   /* trailing text */
        "2026-11-23T12:00:00Z ",      /* trailing space */
        "1969-12-31T23:59:59Z",       /* before 1970 */
        "+2026-11-23T12:00:00Z",
        "2026-1-23T12:00:00Z",        /* one-digit month */
        "2026/11/23T12:00:00Z",
        "2026-11-23T12:00:00UTC",
        "２０２６-11-23T12:00:00Z",   /* full-width digits */
        "2026-11-23T12:00:00.12345678901234567890123Z", /* too long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 777;
        int rc = fg_clock_parse_rfc3339(bad[i], &ms);
        cr_assert_eq(rc, -1, "\"%s\" must be refused (got %d, ms %lld)", bad[i], rc,
                     (long long)ms);
        EQ(ms, 777); /* untouched on failure */
    }
}

/* Every millisecond from 1970 to 9999 formats and parses back to itself. */
Test(clock, format_then_parse_round_trips) {
    rng_t r = {SEED};
    char s[32];
    for (int i = 0; i < 20000; i++) {
        int64_t ms = (int64_t)(rng_next(&r) % 253402300800000ULL);
        if (i < 4) ms = (int64_t[]){0, 951782400000LL, 1709210096789LL, 253402300799999LL}[i];
        fmt(ms, s);
        int64_t back = -1;
        cr_assert_eq(fg_clock_parse_rfc3339(s, &back), 0, "\"%s\" (from %lld) must parse", s,
                     (long long)ms);
        cr_assert_eq(back, ms, "\"%s\": parsed %lld, formatted from %lld", s, (long long)back,
                     (long long)ms);
    }
}

/* ---------------------------------------------------------------- map */

Test(map, put_get_del_basics) {
    fg_map_t m;
    fg_map_init(&m);
    uint64_t v = 99;
    cr_assert(!fg_map_get(&m, 5, &v), "an empty map has nothing");
    cr_assert(!fg_map_del(&m, 5));
    EQ(fg_map_put(&m, 5, 50), 0);
    EQ(fg_map_put(&m, 6, 60), 0);
    cr_assert(fg_map_get(&m, 5, &v));
    EQ(v, 50);
    cr_assert(fg_map_get(&m, 6, NULL), "val may be NULL");
    EQ(m.count, 2);
    EQ(fg_map_put(&m, 5, 55), 0); /* replaces */
    EQ(m.count, 2);
    cr_assert(fg_map_get(&m, 5, &v));
    EQ(v, 55);
    cr_assert(fg_map_del(&m, 5));
    cr_assert(!fg_map_get(&m, 5, &v));
    cr_assert(!fg_map_del(&m, 5), "deleting twice finds nothing");
    EQ(m.count, 1);
    cr_assert(!fg_map_get(&m, 0, &v), "key 0 is never present");
    cr_assert(!fg_map_del(&m, 0));
    fg_map_free(&m);
    EQ(m.cap, 0);
}

Test(map, growth_keeps_every_entry) {
    fg_map_t m;
    fg_map_init(&m);
    for (uint64_t k = 1; k <= 100000; k++) EQ(fg_map_put(&m, k, k * 3), 0);
    EQ(m.count, 100000);
    cr_assert_leq(m.count * 4, m.cap * 3, "load factor stays at most 3/4");
    for (uint64_t k = 1; k <= 100000; k++) {
        uint64_t v = 0;
        cr_assert(fg_map_get(&m, k, &v), "key %llu lost after growth", (unsigned long long)k);
        cr_assert_eq(v, k * 3);
    }
    cr_assert(!fg_map_get(&m, 100001, NULL));
    fg_map_free(&m);
}

/* The map's own mixer, copied to build keys that share a home slot (see map.c). */
static uint64_t mix_copy(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Keys whose probe runs wrap from the last slot of a 16-slot table to the first: deleting from
 * the middle of such a run must keep every later key reachable. */
Test(map, delete_in_a_wrapping_probe_run_keeps_later_keys) {
    uint64_t keys[6];
    int n = 0;
    for (uint64_t k = 1; n < 4; k++)
        if ((mix_copy(k) & 15) == 15) keys[n++] = k; /* home slot 15 */
    for (uint64_t k = 1; n < 6; k++)
        if ((mix_copy(k) & 15) == 0) keys[n++] = k; /* home slot 0, displaced by the run */
    for (int victim = 0; victim < 6; victim++) {
        fg_map_t m;
        fg_map_init(&m);
        for (int i = 0; i < 6; i++) EQ(fg_map_put(&m, keys[i], (uint64_t)i + 100), 0);
        EQ(m.cap, 16); /* 6 keys stay in the first table */
        cr_assert(fg_map_del(&m, keys[victim]));
        for (int i = 0; i < 6; i++) {
            uint64_t v = 0;
            bool found = fg_map_get(&m, keys[i], &v);
            cr_assert_eq(found, i != victim, "after deleting key %d, key %d found=%d", victim, i,
                         found);
            if (found) EQ(v, (uint64_t)i + 100);
        }
        size_t occupied = 0;
        for (size_t i = 0; i < m.cap; i++) occupied += m.slots[i].key != 0;
        EQ(occupied, 5);
        fg_map_free(&m);
    }
}

/* Insert-and-delete churn with the live count kept small: without tombstones the table does not
 * grow, and lookups stay correct. */
Test(map, churn_of_deletes_and_reinserts_does_not_grow_the_table) {
    fg_map_t m;
    fg_map_init(&m);
    uint64_t next = 1;
    for (int round = 0; round < 200; round++) {
        uint64_t first = next;
        for (int i = 0; i < 500; i++) EQ(fg_map_put(&m, next++, (uint64_t)round), 0);
        for (uint64_t k = first; k < next; k++) cr_assert(fg_map_del(&m, k));
        EQ(m.count, 0);
    }
    cr_assert_leq(m.cap, 1024, "cap %zu: the table grew under churn", m.cap);
    for (uint64_t k = 1; k < next; k += 97) cr_assert(!fg_map_get(&m, k, NULL));
    fg_map_free(&m);
}

/* Random put/get/del against a naive array model, on a small key space so that keys are
 * deleted and re-inserted many times and probe runs collide. */
Test(map, random_operations_match_a_naive_model) {
    enum { KEYS = 3000, OPS = 400000 };
    static uint64_t model_val[KEYS];
    static bool model_has[KEYS];
    uint64_t keyof[KEYS];
    rng_t r = {SEED};
    for (int i = 0; i < KEYS; i++) {
        /* Small ids, huge values and near-duplicates all mixed. */
        keyof[i] = i % 3 == 0 ? (uint64_t)i + 1 : i % 3 == 1 ? rng_next(&r) | 1 : (uint64_t)i << 40;
    }
    fg_map_t m;
    fg_map_init(&m);
    size_t count = 0;
    for (int op = 0; op < OPS; op++) {
        int k = (int)(rng_next(&r) % KEYS);
        int what = (int)(rng_next(&r) % 10);
        if (what < 4) {
            uint64_t v = rng_next(&r);
            EQ(fg_map_put(&m, keyof[k], v), 0);
            if (!model_has[k]) count++;
            model_has[k] = true;
            model_val[k] = v;
        } else if (what < 7) {
            bool had = fg_map_del(&m, keyof[k]);
            cr_assert_eq(had, model_has[k], "seed %llx op %d: del(%llu) got %d, want %d",
                         (unsigned long long)SEED, op, (unsigned long long)keyof[k], had,
                         model_has[k]);
            if (had) count--;
            model_has[k] = false;
        } else {
            uint64_t v = 0;
            bool has = fg_map_get(&m, keyof[k], &v);
            cr_assert_eq(has, model_has[k], "seed %llx op %d: get(%llu) got %d, want %d",
                         (unsigned long long)SEED, op, (unsigned long long)keyof[k], has,
                         model_has[k]);
            if (has)
                cr_assert_eq(v, model_val[k], "op %d: get(%llu) value %llu, want %llu", op,
                             (unsigned long long)keyof[k], (unsigned long long)v,
                             (unsigned long long)model_val[k]);
        }
        cr_assert_eq(m.count, count, "op %d: count %zu, model %zu", op, m.count, count);
        if (op % 50000 == 0 || op == OPS - 1) {
            /* Full sweep: every model key present with its value, and nothing else stored. */
            size_t stored = 0;
            for (size_t i = 0; i < m.cap; i++) stored += m.slots[i].key != 0;
            cr_assert_eq(stored, count, "op %d: %zu slots used, model has %zu", op, stored,
                         count);
            for (int i = 0; i < KEYS; i++) {
                uint64_t v = 0;
                bool has = fg_map_get(&m, keyof[i], &v);
                cr_assert_eq(has, model_has[i], "op %d: key %llu presence %d, want %d", op,
                             (unsigned long long)keyof[i], has, model_has[i]);
                if (has) cr_assert_eq(v, model_val[i]);
            }
        }
    }
    fg_map_free(&m);
}

/* A large map grows a little at a time: while it does, every key is in one table, lookups,
 * replacements and deletes reach keys in either, iteration sees each key once, and the old
 * table is gone well before the next growth is due. */
Test(map, a_large_map_grows_in_steps_and_loses_nothing) {
    enum { KEYS = 150000, OPS = 900000 };
    static uint64_t model_val[KEYS];
    static bool model_has[KEYS];
    static uint8_t seen[KEYS];
    rng_t r = {SEED ^ 0x5eed};
    fg_map_t m;
    fg_map_init(&m);
    size_t count = 0, growths_in_steps = 0, last_cap = 0, max_probe_old = 0;
    for (int op = 0; op < OPS; op++) {
        /* Mostly puts early on, so the map passes several step-wise growths. */
        int k = (int)(rng_next(&r) % KEYS);
        int what = (int)(rng_next(&r) % 10);
        uint64_t key = (uint64_t)k * 7919 + 1;
        if (what < (op < OPS / 2 ? 7 : 4)) {
            uint64_t v = rng_next(&r);
            EQ(fg_map_put(&m, key, v), 0);
            count += !model_has[k];
            model_has[k] = true;
            model_val[k] = v;
        } else if (what < 8) {
            bool had = fg_map_del(&m, key);
            cr_assert_eq(had, model_has[k], "op %d: del(%llu) got %d", op,
                         (unsigned long long)key, had);
            count -= had;
            model_has[k] = false;
        } else {
            uint64_t v = 0;
            bool has = fg_map_get(&m, key, &v);
            cr_assert_eq(has, model_has[k], "op %d: get(%llu) got %d", op,
                         (unsigned long long)key, has);
            if (has) cr_assert_eq(v, model_val[k], "op %d: get(%llu) value", op,
                                  (unsigned long long)key);
        }
        cr_assert_eq(m.count, count, "op %d: count %zu, model %zu", op, m.count, count);
        if (m.cap != last_cap) {
            /* A growth started: the one before it had finished. */
            if (m.old != NULL) {
                growths_in_steps++;
                cr_assert_eq(m.old_cap * 2, m.cap);
                cr_assert_geq(m.old_cap, FG_MAP_STEP_MIN_CAP);
            }
            last_cap = m.cap;
        }
        if (m.old != NULL && m.old_next > max_probe_old) max_probe_old = m.old_next;
        if (op % 100000 == 0 || (m.old != NULL && op % 997 == 0)) {
            memset(seen, 0, sizeof seen);
            uint64_t kk, vv;
            size_t n = 0;
            for (size_t it = 0; fg_map_next(&m, &it, &kk, &vv);) {
                cr_assert_eq((kk - 1) % 7919, 0);
                size_t i = (size_t)((kk - 1) / 7919);
                cr_assert(i < KEYS && model_has[i] && !seen[i], "op %d: key %llu iterated wrongly",
                          op, (unsigned long long)kk);
                cr_assert_eq(vv, model_val[i]);
                seen[i] = 1;
                n++;
            }
            cr_assert_eq(n, count, "op %d: iteration saw %zu of %zu", op, n, count);
            for (size_t i = 0; m.old != NULL && i < m.old_next; i++)
                cr_assert_eq(m.old[i].key, 0, "op %d: a moved slot of the old table is used", op);
        }
    }
    cr_assert_geq(growths_in_steps, 2, "the run passed %zu step-wise growths", growths_in_steps);
    fg_map_settle(&m);
    cr_assert_null(m.old);
    for (int i = 0; i < KEYS; i++) {
        uint64_t v = 0;
        cr_assert_eq(fg_map_get(&m, (uint64_t)i * 7919 + 1, &v), model_has[i]);
        if (model_has[i]) cr_assert_eq(v, model_val[i]);
    }
    fg_map_free(&m);
}

Test(map, a_growth_in_steps_ends_within_a_bounded_number_of_writes) {
    fg_map_t m;
    fg_map_init(&m);
    uint64_t k = 1;
    while (m.old == NULL || m.cap < 4 * FG_MAP_STEP_MIN_CAP) {
        EQ(fg_map_put(&m, k, k), 0);
        k++;
    }
    size_t old_cap = m.old_cap, puts = 0;
    cr_assert_eq(old_cap * 2, m.cap);
    while (m.old != NULL) {
        EQ(fg_map_put(&m, k++, 1), 0);
        puts++;
    }
    /* 32 looks at old slots per write: one per empty slot and one per entry moved (at most 3/4
     * of the slots), well before the next growth is due (after old_cap * 3/4 puts). */
    cr_assert_leq(puts, (old_cap + old_cap * 3 / 4) / 32 + 1, "%zu puts to move a table of %zu slots",
                  puts, old_cap);
    cr_assert_leq(m.count * 4, m.cap * 3);
    for (uint64_t i = 1; i < k; i++)
        cr_assert(fg_map_get(&m, i, NULL), "key %llu", (unsigned long long)i);
    fg_map_free(&m);
}

Test(map, hash_str_is_stable_and_never_zero) {
    uint64_t a = fg_hash_str("px-blk-128", 10), b = fg_hash_str("px-blk-128", 10);
    EQ(a, b);
    cr_assert_neq(a, 0);
    cr_assert_neq(fg_hash_str("px-blk-129", 10), a);
    cr_assert_neq(fg_hash_str("", 0), 0);
    /* Length matters, not only the bytes up to a NUL. */
    cr_assert_neq(fg_hash_str("ab\0c", 4), fg_hash_str("ab", 2));
}

/* ---------------------------------------------------------------- pack */

static uint64_t pk(uint64_t tag, uint64_t low) {
    return tag << FG_PACK_LOW_BITS | low;
}

/* Every entry with the tag, as a bit set of their low parts (all below 64 here). */
static uint64_t pack_lows(const fg_pack_t *p, uint64_t tag) {
    uint64_t seen = 0, e;
    size_t cur = FG_PACK_START;
    while (fg_pack_next(p, tag, &cur, &e)) {
        cr_assert_eq(fg_pack_tag(e), tag);
        seen |= UINT64_C(1) << (e & FG_PACK_LOW_MASK);
    }
    return seen;
}

Test(pack, entries_sharing_a_tag_are_all_found_and_others_are_not) {
    fg_pack_t p = {0};
    cr_assert_eq(pack_lows(&p, 5), 0, "an empty set has nothing");
    cr_assert_eq(fg_pack_add(&p, pk(5, 1)), 0);
    cr_assert_eq(fg_pack_add(&p, pk(5, 2)), 0);
    cr_assert_eq(fg_pack_add(&p, pk(5 + 16, 3)), 0); /* same home slot, another tag */
    cr_assert_eq(fg_pack_add(&p, pk(6, 4)), 0);
    cr_assert_eq(pack_lows(&p, 5), (1u << 1) | (1u << 2));
    cr_assert_eq(pack_lows(&p, 21), 1u << 3);
    cr_assert_eq(pack_lows(&p, 6), 1u << 4);
    cr_assert_eq(pack_lows(&p, 7), 0);
    cr_assert(fg_pack_has(&p, pk(5, 2)));
    cr_assert(!fg_pack_has(&p, pk(5, 9)));
    cr_assert_eq(p.count, 4);
    fg_pack_free(&p);
}

Test(pack, replace_and_remove_act_on_the_cursor_entry_only) {
    fg_pack_t p = {0};
    for (uint64_t i = 1; i <= 5; i++) cr_assert_eq(fg_pack_add(&p, pk(9, i)), 0);
    size_t cur = FG_PACK_START;
    uint64_t e;
    while (fg_pack_next(&p, 9, &cur, &e) && (e & FG_PACK_LOW_MASK) != 3) continue;
    fg_pack_replace(&p, cur, pk(9, 30));
    cr_assert_eq(pack_lows(&p, 9), (1u << 1) | (1u << 2) | (1u << 30) | (1u << 4) | (1u << 5));
    cur = FG_PACK_START;
    while (fg_pack_next(&p, 9, &cur, &e) && (e & FG_PACK_LOW_MASK) != 2) continue;
    fg_pack_remove(&p, cur);
    cr_assert_eq(pack_lows(&p, 9), (1u << 1) | (1u << 30) | (1u << 4) | (1u << 5),
                 "entries after a removed one in the probe run are still found");
    cr_assert_eq(p.count, 4);
    fg_pack_free(&p);
}

static bool drop_odd(uint64_t entry, void *ctx) {
    (*(int *)ctx)++;
    return (entry & 1) != 0;
}

Test(pack, growth_sweeps_and_tombstones_keep_every_live_entry) {
    enum { N = 100000 };
    fg_pack_t p = {0};
    /* Tags from a multiplicative hash; many share home slots once the table is small. */
    for (uint64_t i = 1; i <= N; i++)
        cr_assert_eq(fg_pack_add(&p, pk((i * 0x9e3779b97f4a7c15ULL) >> 36, i)), 0);
    cr_assert_eq(p.count, N);
    cr_assert(p.count * 4 <= p.cap * 3, "load stays at most 3/4");
    int calls = 0;
    fg_pack_sweep(&p, drop_odd, &calls);
    cr_assert_eq(calls, N);
    cr_assert_eq(p.count, N / 2);
    for (uint64_t i = 1; i <= N; i++)
        cr_assert_eq(fg_pack_has(&p, pk((i * 0x9e3779b97f4a7c15ULL) >> 36, i)), i % 2 == 0,
                     "entry %llu", (unsigned long long)i);
    /* Adding again reuses or cleans the tombstones without losing anyone. */
    size_t cap = p.cap;
    for (uint64_t i = 1; i <= N; i += 2)
        cr_assert_eq(fg_pack_add(&p, pk((i * 0x9e3779b97f4a7c15ULL) >> 36, i + 2 * N)), 0);
    cr_assert_eq(p.cap, cap, "as many entries as before fit the same table");
    for (uint64_t i = 1; i <= N; i++) {
        uint64_t low = i % 2 == 0 ? i : i + 2 * N;
        cr_assert(fg_pack_has(&p, pk((i * 0x9e3779b97f4a7c15ULL) >> 36, low)));
    }
    fg_pack_free(&p);
}

/* A large set is rebuilt a little at a time: walks, replacements, removals at a cursor in
 * either table, sweeps and scans all see the same entries as a plain model. */
Test(pack, a_large_set_rebuilt_in_steps_matches_a_model) {
    enum { N = 240000 };
    static uint64_t model[N]; /* the entry of item i, 0 when absent */
    rng_t r = {SEED ^ 0xbac};
    fg_pack_t p = {0};
    size_t count = 0, rebuilds_in_steps = 0;
    /* 2^18 tags for 240,000 items: many share a tag, as hash prefixes do in a big index. */
    for (int op = 0; op < 4 * N; op++) {
        size_t i = (size_t)(rng_next(&r) % N);
        uint64_t tag = (i * 0x9e3779b97f4a7c15ULL) >> 46;
        uint64_t low = (uint64_t)i << 8 | (rng_next(&r) & 0xff);
        int what = (int)(rng_next(&r) % 10);
        bool had_old = p.old != NULL;
        if (model[i] == 0 && what < (op < 2 * N ? 8 : 5)) {
            cr_assert_eq(fg_pack_add(&p, pk(tag, low)), 0);
            model[i] = pk(tag, low);
            count++;
        } else if (model[i] != 0) {
            size_t cur = FG_PACK_START;
            uint64_t e;
            while (fg_pack_next(&p, tag, &cur, &e) && e != model[i]) continue;
            cr_assert_eq(e, model[i], "op %d: item %zu not found by its tag", op, i);
            if (what < 6) {
                fg_pack_replace(&p, cur, pk(tag, low));
                model[i] = pk(tag, low);
            } else {
                fg_pack_remove(&p, cur);
                model[i] = 0;
                count--;
                cr_assert(!fg_pack_has(&p, pk(tag, e & FG_PACK_LOW_MASK)), "op %d: removed", op);
            }
        }
        if (!had_old && p.old != NULL) rebuilds_in_steps++;
        cr_assert_eq(p.count, count, "op %d: count %zu, model %zu", op, p.count, count);
        cr_assert_leq((p.count + p.tombs) * 4, p.cap * 3, "op %d: load", op);
        if (op % 200000 == 0 || (p.old != NULL && op % 4001 == 0)) {
            size_t n = 0;
            uint64_t e;
            for (size_t it = 0; fg_pack_scan(&p, &it, &e);) {
                size_t item = (size_t)((e & FG_PACK_LOW_MASK) >> 8);
                cr_assert(item < N && model[item] == e, "op %d: scan saw a stray entry", op);
                n++;
            }
            cr_assert_eq(n, count, "op %d: scan saw %zu of %zu", op, n, count);
        }
        if (op == 3 * N) {
            /* A sweep, once, in the middle of the churn (during a rebuild if one is on). */
            int calls = 0;
            fg_pack_sweep(&p, drop_odd, &calls);
            for (size_t k = 0; k < N; k++)
                if (model[k] & 1) {
                    model[k] = 0;
                    count--;
                }
            cr_assert_eq(p.count, count);
        }
    }
    cr_assert_geq(rebuilds_in_steps, 2, "the run passed %zu step-wise rebuilds", rebuilds_in_steps);
    for (size_t i = 0; i < N; i++)
        if (model[i] != 0) cr_assert(fg_pack_has(&p, model[i]), "item %zu", i);
    fg_pack_free(&p);
}
