/*
 * clock.c — see clock.h.
 */
#include "util/clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t fg_clock_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fg_clock_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Writes v as n digits, zero-padded (v < 10^n). */
static char *put_digits(char *p, int64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

/* y-m-d of a day count from 1970-01-01 (proleptic Gregorian; the inverse of days_from_civil). */
static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

void fg_clock_split_ms(int64_t unix_ms, int64_t *day, int64_t *sod, int64_t *ms) {
    int64_t secs = unix_ms / 1000;
    *ms = unix_ms % 1000;
    if (*ms < 0) {
        *ms += 1000;
        secs -= 1;
    }
    *day = secs / 86400;
    *sod = secs % 86400;
    if (*sod < 0) {
        *sod += 86400;
        *day -= 1;
    }
}

void fg_clock_put_date(int64_t day, char out[FG_CLOCK_DATE_BYTES]) {
    int64_t y, m, d;
    civil_from_days(day, &y, &m, &d);
    if (y < 0) y = 0;
    if (y > 9999) y = 9999;
    char *p = put_digits(out, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p = 'T';
}

void fg_clock_put_time_of_day(int64_t sod, int64_t ms, char out[FG_CLOCK_TIME_OF_DAY_BYTES]) {
    FG_ASSERT(sod >= 0 && sod < 86400 && ms >= 0 && ms < 1000);
    char *p = put_digits(out, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    *p++ = '.';
    p = put_digits(p, ms, 3);
    *p = 'Z';
}

/* By hand, not gmtime_r + snprintf: every hold's answer has two of these, and glibc's gmtime_r
 * takes a process-wide lock. Years outside 0..9999 are clamped (none is ever stored). */
size_t fg_clock_format_rfc3339(int64_t unix_ms, char *out, size_t cap) {
    FG_ASSERT(cap >= FG_CLOCK_DATE_BYTES + FG_CLOCK_TIME_OF_DAY_BYTES + 1);
    int64_t day, sod, ms;
    fg_clock_split_ms(unix_ms, &day, &sod, &ms);
    fg_clock_put_date(day, out);
    fg_clock_put_time_of_day(sod, ms, out + FG_CLOCK_DATE_BYTES);
    out[FG_CLOCK_DATE_BYTES + FG_CLOCK_TIME_OF_DAY_BYTES] = '\0';
    return FG_CLOCK_DATE_BYTES + FG_CLOCK_TIME_OF_DAY_BYTES;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int fg_clock_parse_rfc3339(const char *s, int64_t *unix_ms) {
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec;
    size_t n = strlen(s);
    if (n < 20 || n > 40) return -1;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap) return -1;
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (*p >= '0' && *p <= '9') {
            if (nd < 3) ms = ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0 || nd > 9) return -1;
        for (; nd < 3; nd++)
            ms *= 10;
    }
    int64_t off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off_min = (oh * 60 + om) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0') return -1;
    if (sec == 60) sec = 59; /* leap second: clamp, as Unix time does */
    int64_t days = days_from_civil(y, mo, d);
    int64_t t = ((days * 24 + h) * 60 + mi) * 60 + sec - off_min * 60;
    *unix_ms = t * 1000 + ms;
    return 0;
}
