/*
 * ev_parse.h — HTTP/1.1 request heads and chunked bodies, parsed in place, for http/ev.c.
 *
 * Pure functions over bytes: no socket, no clock, no allocation, so every framing rule is
 * unit-tested directly (tests/unit/test_ev_parse.c). The head parser writes NULs into the
 * buffer it is given (after the method, the target, the version and each value it keeps), so
 * the strings it returns point into that buffer and live as long as it does.
 *
 * The rules are those floodgate enforced with libmicrohttpd (http/server.c), so that both HTTP
 * layers answer a hostile request alike: what libmicrohttpd refused itself (a request line or a
 * header line it could not parse, a malformed Content-Length or chunk size) is a refusal here
 * (fg_ev_head_rc_t, fg_ev_chunked_rc_t); what floodgate refused on top of it (smuggling shapes,
 * forbidden bytes, a missing Host, unknown methods) is fg_ev_check.
 */
#ifndef FG_EV_PARSE_H
#define FG_EV_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The headers the server and the API read; any other is checked for bytes and skipped. */
typedef enum {
    FG_EV_H_AUTHORIZATION,
    FG_EV_H_IDEMPOTENCY_KEY,
    FG_EV_H_SIGNATURE, /* Floodgate-Signature */
    FG_EV_H_LAST_EVENT_ID,
    FG_EV_H_CONTENT_LENGTH,
    FG_EV_H_TRANSFER_ENCODING,
    FG_EV_H_HOST,
    FG_EV_H_CONNECTION,
    FG_EV_H_EXPECT,
    FG_EV_H_COUNT
} fg_ev_header_t;

/* A parsed request head. Strings point into the parsed buffer. */
typedef struct {
    char *method; /* NUL-terminated; method_len bytes (it may hold a NUL: then not a token) */
    size_t method_len;
    char *target; /* NUL-terminated; target_len bytes, any byte HTTP forbids included */
    size_t target_len;
    int minor_version;                /* HTTP/1.<minor>: 0 or 1 */
    const char *value[FG_EV_H_COUNT]; /* the first value of each, trimmed; NULL when absent */
    int count[FG_EV_H_COUNT];         /* how many times each came */
    bool bad_byte;                    /* a name is not a token, or a value has a control byte */
    uint64_t content_length;          /* of the first Content-Length, when there is one */
} fg_ev_head_t;

/* What fg_ev_head_parse found. Every value but OK closes the connection. */
typedef enum {
    FG_EV_HEAD_OK,
    FG_EV_HEAD_DROP,    /* a request line with no space: not HTTP; 400, and the connection closes */
    FG_EV_HEAD_BAD,     /* 400: request line, header line or Content-Length malformed */
    FG_EV_HEAD_TOO_BIG, /* 413: a Content-Length past 64 bits */
    FG_EV_HEAD_VERSION, /* 505: a well-formed HTTP version other than 1.0 and 1.1 */
} fg_ev_head_rc_t;

/* How many leading bytes of p[0..n) are lines to skip before a request line: empty lines
 * (RFC 9112 2.2) and lines that start with a NUL, which libmicrohttpd read as empty. Stops at
 * the first byte of anything else, or at a line not yet ended. */
size_t fg_ev_skip_lines(const char *p, size_t n);

/* The length of the head at the start of p[0..n), up to and with its "\r\n\r\n"; 0 when it has
 * not all arrived. *scan carries where the search stopped between calls on a growing buffer
 * (start it at 0). */
size_t fg_ev_head_end(const char *p, size_t n, size_t *scan);

/* Parses the head p[0..len) that fg_ev_head_end measured, writing NULs into it. Lines end with
 * CRLF only: a bare CR or LF inside a line is a byte of that line (a control byte: refused). */
fg_ev_head_rc_t fg_ev_head_parse(char *p, size_t len, fg_ev_head_t *h);

/* A refusal of a parsed head; status 0 when the request may go on. */
typedef struct {
    int status;
    const char *code; /* the API's problem code (docs/api.md) */
    const char *detail;
} fg_ev_refusal_t;

/* What floodgate refuses in a head that parsed: a method that is not a token, bytes HTTP
 * forbids in the target, names or values, a missing or repeated Host in HTTP/1.1, and every
 * framing a proxy in front could read differently (RFC 9112 6.1 and 6.3): Content-Length with
 * Transfer-Encoding, two Content-Lengths, two Transfer-Encodings, Transfer-Encoding in HTTP/1.0
 * (400), a coding other than chunked (501); then unknown methods (501). The connection is
 * closed after any of them. */
fg_ev_refusal_t fg_ev_check(const fg_ev_head_t *h);

/* True when the head's Connection header has `token` (case-insensitive, comma-separated). */
bool fg_ev_connection_has(const fg_ev_head_t *h, const char *token);

/* A chunked body (RFC 9112 7.1), decoded as it arrives. Chunk sizes are strict: hex digits
 * only (no sign, no "0x", no spaces before them), at most 64 bits; extensions are skipped;
 * trailer lines are skipped. */
typedef struct {
    int state;
    uint64_t size; /* the chunk size being read, then the bytes of the chunk still to come */
} fg_ev_chunked_t;

typedef enum {
    FG_EV_CHUNKED_MORE,    /* every byte given was used; the body goes on */
    FG_EV_CHUNKED_DONE,    /* the body ended; bytes after *used belong to the next request */
    FG_EV_CHUNKED_BAD,     /* 400: malformed framing */
    FG_EV_CHUNKED_TOO_BIG, /* 413: a chunk size past 64 bits */
} fg_ev_chunked_rc_t;

void fg_ev_chunked_init(fg_ev_chunked_t *c);

/* Decodes buf[0..n) in place: the chunk data found is moved to buf[0..*data_len) (data never
 * moves forward, so this is safe), *used says how many input bytes were consumed. */
fg_ev_chunked_rc_t fg_ev_chunked_decode(fg_ev_chunked_t *c, char *buf, size_t n, size_t *used,
                                        size_t *data_len);

#endif
