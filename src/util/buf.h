/*
 * buf.h — a growable byte buffer with a maximum, for building answers (JSON, CSV, SSE).
 *
 * Every buffer has a cap: appending past it sets `overflow` and keeps the buffer as it was, so a
 * caller checks once at the end instead of after every append. The buffer owns `data`;
 * fg_buf_free releases it, fg_buf_take hands it to the caller.
 */
#ifndef FG_BUF_H
#define FG_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *data; /* NUL-terminated while len < cap */
    size_t len;
    size_t cap;
    size_t max;    /* hard limit on len */
    bool overflow; /* an append did not fit (or memory ran out) */
} fg_buf_t;

void fg_buf_init(fg_buf_t *b, size_t max);
void fg_buf_free(fg_buf_t *b);
/* Returns data (caller frees) and resets the buffer. Never NULL: an empty buffer gives "". */
char *fg_buf_take(fg_buf_t *b);
void fg_buf_reset(fg_buf_t *b);

/* True when n more bytes and the NUL fit in the memory held, under max, with no overflow yet:
 * an append that needs neither growth nor the limit check. Once data is held, len < cap and
 * len <= max, so neither subtraction wraps; before (cap 0) there is never room. */
static inline bool fg_buf_has_room(const fg_buf_t *b, size_t n) {
    return !b->overflow && n < b->cap - b->len && n <= b->max - b->len;
}
/* fg_buf_reserve when the room is not there yet: grows, or sets overflow and says false. */
bool fg_buf_reserve_grow(fg_buf_t *b, size_t n);
/* Makes room for n more bytes at once (one allocation instead of several as it grows); false,
 * with overflow set, when they do not fit under max. Inline: answers reserve for most pieces,
 * and the room is nearly always there already. */
static inline bool fg_buf_reserve(fg_buf_t *b, size_t n) {
    return fg_buf_has_room(b, n) || fg_buf_reserve_grow(b, n);
}
/* fg_buf_add when the bytes do not fit the memory held (grows it, or sets overflow). */
void fg_buf_add_grow(fg_buf_t *b, const void *p, size_t n);
/* Inline, because answers are built of many short pieces: when there is room, a copy and no
 * call. Pieces longer than FG_BUF_INLINE_MAX always take the call, so a length known to be huge
 * when compiled leaves no copy here. */
#define FG_BUF_INLINE_MAX 4096
static inline void fg_buf_add(fg_buf_t *b, const void *p, size_t n) {
    if (n <= FG_BUF_INLINE_MAX && fg_buf_has_room(b, n)) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    fg_buf_add_grow(b, p, n);
}
void fg_buf_str(fg_buf_t *b, const char *s);
/* A string literal, its length known when compiled. */
#define FG_BUF_LIT(b, lit) fg_buf_add((b), "" lit, sizeof(lit) - 1)
void fg_buf_printf(fg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The longest number fg_buf_i64 writes: "-9223372036854775808". */
#define FG_BUF_I64_BYTES_MAX 20
void fg_buf_i64(fg_buf_t *b, int64_t v);

/* JSON helpers: a quoted, escaped string (bytes that are not UTF-8 become U+FFFD); "key":
 * prefix with a leading comma when `comma`. */
void fg_buf_json_str(fg_buf_t *b, const char *s);
void fg_buf_json_strn(fg_buf_t *b, const char *s, size_t n);
void fg_buf_json_key(fg_buf_t *b, const char *key, bool comma);
/* An RFC 3339 UTC time with milliseconds, quoted: "2026-11-23T12:00:00.000Z". */
#define FG_BUF_JSON_TIME_BYTES 26
void fg_buf_json_time(fg_buf_t *b, int64_t unix_ms);
/* An RFC 9457 problem object up to its last member, without the closing brace (callers may add
 * members): {"type","title","status","detail","code". */
void fg_buf_problem_open(fg_buf_t *b, int status, const char *code, const char *detail);
/* A CSV field, quoted when it holds a comma, quote or newline (RFC 4180). */
void fg_buf_csv_field(fg_buf_t *b, const char *s);

#endif
