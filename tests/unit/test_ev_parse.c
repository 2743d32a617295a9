/*
 * test_ev_parse.c — unit tests of src/http/ev_parse.c: request heads (request line, header
 * lines, Content-Length), the refusals floodgate adds (smuggling shapes, forbidden bytes,
 * Host, methods), and chunked bodies, fed whole and a byte at a time.
 *
 * The cases mirror tests/integration/test_hostile.py, which checks the same rules end to end;
 * here each rule is checked alone, with the byte that decides it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/ev_parse.h"
#include "asserts.h"

#define HEAD_BYTES_MAX 4096

/* Parses a NUL-terminated head (a copy: the parser writes into it). */
static fg_ev_head_rc_t parse(const char *text, fg_ev_head_t *h, char *copy) {
    size_t n = strlen(text);
    cr_assert_lt(n, HEAD_BYTES_MAX, "test head too long");
    memcpy(copy, text, n + 1);
    size_t scan = 0;
    size_t len = fg_ev_head_end(copy, n, &scan);
    cr_assert_eq(len, n, "head end: got %zu, want %zu for \"%s\"", len, n, text);
    return fg_ev_head_parse(copy, len, h);
}

/* The refusal of a head that parses; -1 when it does not parse. */
static int check_status(const char *text, const char **code) {
    static char copy[HEAD_BYTES_MAX];
    fg_ev_head_t h;
    if (parse(text, &h, copy) != FG_EV_HEAD_OK) return -1;
    fg_ev_refusal_t f = fg_ev_check(&h);
    if (code != NULL) *code = f.code;
    return f.status;
}

/* ---------------------------------------------------------------- heads */

Test(head, a_request_is_split_in_place) {
    char copy[HEAD_BYTES_MAX];
    fg_ev_head_t h;
    EQ(parse("POST /v1/buyers?x=1 HTTP/1.1\r\nHost: a\r\nidempotency-key:  k1 \r\n"
             "Content-Length: 12\r\nX-Other: v\r\nIdempotency-Key: k2\r\n\r\n",
             &h, copy),
       FG_EV_HEAD_OK);
    STREQ(h.method, "POST");
    STREQ(h.target, "/v1/buyers?x=1");
    EQ(h.minor_version, 1);
    STREQ(h.value[FG_EV_H_HOST], "a");
    STREQ(h.value[FG_EV_H_IDEMPOTENCY_KEY], "k1"); /* the first, trimmed, any case */
    EQ(h.count[FG_EV_H_IDEMPOTENCY_KEY], 2);
    EQ(h.content_length, 12);
    cr_assert_null(h.value[FG_EV_H_AUTHORIZATION]);
    cr_assert(!h.bad_byte);
    EQ(check_status("GET / HTTP/1.0\r\n\r\n", NULL), 0); /* HTTP/1.0 needs no Host */
}

Test(head, the_end_is_found_across_reads) {
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
    size_t scan = 0, end = strlen("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    for (size_t n = 0; n < end; n++)
        EQ(fg_ev_head_end(req, n, &scan), 0);
    EQ(fg_ev_head_end(req, strlen(req), &scan), end);
}

Test(head, empty_and_nul_lines_before_a_request_are_skipped) {
    EQ(fg_ev_skip_lines("\r\n\r\nGET", 7), 4);
    EQ(fg_ev_skip_lines("\0\1\2\r\n\r\n", 7), 7);
    EQ(fg_ev_skip_lines("\0\1\2", 3), 0); /* a line not yet ended waits */
    EQ(fg_ev_skip_lines("\r", 1), 0);
    EQ(fg_ev_skip_lines("X\r\n", 3), 0);
}

Test(head, malformed_request_lines_are_refused_as_before) {
    char copy[HEAD_BYTES_MAX];
    fg_ev_head_t h;
    EQ(parse("GET\r\n\r\n", &h, copy), FG_EV_HEAD_DROP);
    EQ(parse("GET /v1/markets\r\n\r\n", &h, copy), FG_EV_HEAD_BAD);
    EQ(parse("GET / http/1.1\r\n\r\n", &h, copy), FG_EV_HEAD_BAD);
    EQ(parse("GET / HTTP/1.1 x\r\n\r\n", &h, copy), FG_EV_HEAD_BAD);
    EQ(parse("GET / HTTP/1.10\r\n\r\n", &h, copy), FG_EV_HEAD_BAD);
    EQ(parse("GET / HTTP/9.9\r\n\r\n", &h, copy), FG_EV_HEAD_VERSION);
    EQ(parse("GET / HTTP/2.0\r\n\r\n", &h, copy), FG_EV_HEAD_VERSION);
    /* the target runs to the last space: a space in it is floodgate's refusal */
    EQ(parse("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", &h, copy), FG_EV_HEAD_OK);
    STREQ(h.target, "/a b");
    const char *code = NULL;
    EQ(check_status("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", &code), 400);
    STREQ(code, "invalid_field");
}

Test(head, header_lines_without_colon_or_with_nul_names_are_malformed) {
    char copy[HEAD_BYTES_MAX];
    fg_ev_head_t h;
    EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", &h, copy), FG_EV_HEAD_BAD);
    char nul[] = "GET / HTTP/1.1\r\nX-\0A: v\r\n\r\n";
    size_t scan = 0, len = fg_ev_head_end(nul, sizeof nul - 1, &scan);
    EQ(len, sizeof nul - 1);
    EQ(fg_ev_head_parse(nul, len, &h), FG_EV_HEAD_BAD);
}

Test(head, content_length_syntax) {
    char copy[HEAD_BYTES_MAX];
    fg_ev_head_t h;
    const char *bad[] = {"-5", "+5", "5, 5", "0x10", "", "5 5", "99999999999999999999x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n",
                 bad[i]);
        cr_assert_eq(parse(req, &h, copy), FG_EV_HEAD_BAD, "Content-Length: %s", bad[i]);
    }
    EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", &h,
             copy),
       FG_EV_HEAD_TOO_BIG);
    EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", &h,
             copy),
       FG_EV_HEAD_OK);
    cr_assert(h.content_length == UINT64_MAX);
    EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", &h,
             copy),
       FG_EV_HEAD_TOO_BIG);
}

Test(check, smuggling_shapes_are_refused) {
    const char *code = NULL;
    EQ(check_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n",
                    &code),
       400);
    STREQ(code, "invalid_field");
    EQ(check_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                    "Content-Length: 5\r\n\r\n",
                    NULL),
       400);
    EQ(check_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n",
                    NULL),
       400);
    EQ(check_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", NULL), 400);
    EQ(check_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", NULL),
       400);
    const char *codings[] = {"gzip", "chunked, gzip", "gzip, chunked", "xchunked", "chunked ,"};
    for (size_t i = 0; i < sizeof codings / sizeof codings[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n",
                 codings[i]);
        cr_assert_eq(check_status(req, &code), 501, "Transfer-Encoding: %s", codings[i]);
        STREQ(code, "not_implemented");
    }
    EQ(check_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", NULL), 0);
}

Test(check, forbidden_bytes_hosts_and_methods) {
    const char *code = NULL;
    const char *bad[] = {"X-A: a\x01"
                         "b",
                         "X-A: a\rb",
                         "X-A: a\nb",
                         "X-A: a\x7f"
                         "b",
                         "X(A): v",
                         "X-\xff"
                         "A: v",
                         "X A: v",
                         "Host : v",
                         ": v"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\n%s\r\n\r\n", bad[i]);
        cr_assert_eq(check_status(req, &code), 400, "header %zu", i);
        STREQ(code, "invalid_field");
    }
    EQ(check_status("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\nX-T: a\tb\r\n\r\n", NULL),
       0);
    EQ(check_status("GET / HTTP/1.1\r\n\r\n", NULL), 400);
    EQ(check_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", NULL), 400);
    EQ(check_status("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", NULL), 400);
    EQ(check_status("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", NULL), 400);
    EQ(check_status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", &code), 400);
    EQ(check_status("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", &code), 501);
    STREQ(code, "not_implemented");
    EQ(check_status("get / HTTP/1.1\r\nHost: a\r\n\r\n", NULL), 501);
    EQ(check_status("PATCH / HTTP/1.1\r\nHost: a\r\n\r\n", NULL), 0);
}

Test(check, connection_tokens) {
    char copy[HEAD_BYTES_MAX];
    fg_ev_head_t h;
    EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE \r\n\r\n", &h, copy),
       FG_EV_HEAD_OK);
    cr_assert(fg_ev_connection_has(&h, "close"));
    cr_assert(!fg_ev_connection_has(&h, "keep-alive"));
    EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h, copy), FG_EV_HEAD_OK);
    cr_assert(fg_ev_connection_has(&h, "keep-alive"));
    EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", &h, copy), FG_EV_HEAD_OK);
    cr_assert(!fg_ev_connection_has(&h, "close"));
}

/* ---------------------------------------------------------------- chunked bodies */

/* Decodes `in` (n bytes) whole, or a byte at a time; the data goes to out. Returns the last
 * result and sets *used to the input consumed in all. */
static fg_ev_chunked_rc_t decode(const char *in, size_t n, bool bytewise, char *out,
                                 size_t *out_len, size_t *used) {
    fg_ev_chunked_t c;
    fg_ev_chunked_init(&c);
    char *buf = malloc(n + 1);
    cr_assert_not_null(buf);
    memcpy(buf, in, n);
    fg_ev_chunked_rc_t rc = FG_EV_CHUNKED_MORE;
    *out_len = *used = 0;
    size_t step = bytewise ? 1 : n;
    for (size_t at = 0; at < n && rc == FG_EV_CHUNKED_MORE; at += step) {
        size_t take = n - at < step ? n - at : step, u = 0, d = 0;
        rc = fg_ev_chunked_decode(&c, buf + at, take, &u, &d);
        memcpy(out + *out_len, buf + at, d);
        *out_len += d;
        *used += u;
    }
    free(buf);
    return rc;
}

Test(chunked, bodies_decode_whole_and_byte_by_byte) {
    const char body[] = "5\r\nhello\r\n6;ext=1;x\r\n world\r\n0\r\nTrailer: t\r\n\r\nNEXT";
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        char out[64];
        size_t len = 0, used = 0;
        EQ(decode(body, sizeof body - 1, bytewise, out, &len, &used), FG_EV_CHUNKED_DONE);
        out[len] = '\0';
        STREQ(out, "hello world");
        EQ(used, sizeof body - 1 - 4); /* "NEXT" belongs to the next request */
    }
}

Test(chunked, malformed_sizes_are_refused) {
    const struct {
        const char *body;
        fg_ev_chunked_rc_t rc;
    } cases[] = {
        {"-5\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_BAD},
        {"zz\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_BAD},
        {"0x5\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_BAD},
        {" 5\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_BAD},
        {"5 5\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_BAD},
        {"5\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_BAD},
        {"5\r\nhelloXX0\r\n\r\n", FG_EV_CHUNKED_BAD},
        {"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_TOO_BIG},
        {"10000000000000005\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_TOO_BIG},
        {"5 ;x\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_DONE},
        {"00000000000000000005\r\nhello\r\n0\r\n\r\n", FG_EV_CHUNKED_DONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            char out[64];
            size_t len = 0, used = 0;
            fg_ev_chunked_rc_t rc =
                decode(cases[i].body, strlen(cases[i].body), bytewise, out, &len, &used);
            cr_assert_eq(rc, cases[i].rc, "case %zu (%s), bytewise %d: got %d, want %d", i,
                         cases[i].body, bytewise, rc, cases[i].rc);
        }
    }
}
