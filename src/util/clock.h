/*
 * clock.h — wall-clock reads and RFC 3339 conversion.
 *
 * Only the writer loop and the HTTP layer read the clock; the engine takes time as an input so
 * that tests can drive it with a fake clock (DESIGN.md §4).
 */
#ifndef FG_CLOCK_H
#define FG_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "util/check.h"

int64_t fg_clock_now_ms(void);  /* CLOCK_REALTIME, Unix milliseconds */
int64_t fg_clock_mono_ns(void); /* CLOCK_MONOTONIC, for latency measurement */

/* Splits a time into days since 1970-01-01, second of the day (0..86399) and millisecond
 * (0..999), flooring: a time before 1970 borrows a second and a day. */
void fg_clock_split_ms(int64_t unix_ms, int64_t *day, int64_t *sod, int64_t *ms);
/* The two parts of an RFC 3339 time, no NUL: "YYYY-MM-DDT" of a day count (years clamped to
 * 0..9999), and "HH:MM:SS.mmmZ". */
#define FG_CLOCK_DATE_BYTES        11
#define FG_CLOCK_TIME_OF_DAY_BYTES 13
void fg_clock_put_date(int64_t day, char out[FG_CLOCK_DATE_BYTES]);
void fg_clock_put_time_of_day(int64_t sod, int64_t ms, char out[FG_CLOCK_TIME_OF_DAY_BYTES]);
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL) and returns 24; `cap` must be at least
 * 25. */
size_t fg_clock_format_rfc3339(int64_t unix_ms, char *out, size_t cap);
/* Parses an RFC 3339 time ("Z" or "+hh:mm" offset, optional fraction) into Unix ms.
 * Returns 0 on success, -1 when the text is not a valid time. */
FG_MUST_USE int fg_clock_parse_rfc3339(const char *s, int64_t *unix_ms);

#endif
