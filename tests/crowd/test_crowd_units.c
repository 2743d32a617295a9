/*
 * test_crowd_units.c — unit tests of floodgate-crowd's decoders and counters: the HTTP/1.1
 * response parser (every answer also fed in every two-piece split and byte by byte, since a
 * read may end anywhere), the request writer, buyer tokens and ids, and the latency histogram.
 *
 * Plain C, no framework: each check prints both values when it fails; the exit status is the
 * number of failures (0: all passed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crowd/http.h"
#include "crowd/ids.h"
#include "crowd/latency.h"
#include "util/buf.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* ---- HTTP response parser ---------------------------------------------------------------- */

typedef struct {
    fg_buf_t body;
    bool refuse;
} sink_t;

static bool sink(void *ctx, const char *p, size_t n) {
    sink_t *s = ctx;
    if (s->refuse) return false;
    fg_buf_add(&s->body, p, n);
    return true;
}

typedef struct {
    int rc; /* 0 complete, 1 incomplete, -1 error */
    int status;
    bool close;
    int retry_after_s;
    size_t consumed; /* bytes the answer used */
    char body[256];
} result_t;

/* Feeds `raw` split into pieces at the offsets in `cuts` (ascending), then EOF when `eof`. */
static result_t parse_split(const char *raw, size_t len, const size_t *cuts, int ncuts, bool eof) {
    fgc_http_resp_t r;
    sink_t s = {0};
    fg_buf_init(&s.body, 4096);
    fgc_http_resp_init(&r, sink, &s);
    result_t out = {.rc = 1};
    size_t at = 0;
    for (int k = 0; k <= ncuts && out.rc == 1; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        ssize_t n = fgc_http_feed(&r, raw + at, end - at);
        if (n < 0) {
            out.rc = -1;
            break;
        }
        out.consumed += (size_t)n;
        at = end;
        if (fgc_http_done(&r)) out.rc = 0;
    }
    if (out.rc == 1 && eof) out.rc = fgc_http_eof(&r) == 0 ? 0 : -1;
    out.status = r.status;
    out.close = r.close;
    out.retry_after_s = r.retry_after_s;
    snprintf(out.body, sizeof out.body, "%s", s.body.data ? s.body.data : "");
    fg_buf_free(&s.body);
    return out;
}

static result_t parse_whole(const char *raw, bool eof) {
    return parse_split(raw, strlen(raw), NULL, 0, eof);
}

/* The same result whole, in every two-piece split, and byte by byte. */
static void check_all_splits(const char *name, const char *raw, bool eof) {
    size_t len = strlen(raw);
    result_t whole = parse_whole(raw, eof);
    for (size_t cut = 1; cut < len; cut++) {
        result_t r = parse_split(raw, len, &cut, 1, eof);
        CHECK(r.rc == whole.rc && r.status == whole.status && strcmp(r.body, whole.body) == 0,
              "%s split at %zu: rc %d/%d status %d/%d body '%s'/'%s'", name, cut, r.rc, whole.rc,
              r.status, whole.status, r.body, whole.body);
    }
    size_t *cuts = malloc(len * sizeof *cuts);
    if (cuts == NULL) abort();
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    result_t r = parse_split(raw, len, cuts, (int)len - 1, eof);
    free(cuts);
    CHECK(r.rc == whole.rc && strcmp(r.body, whole.body) == 0,
          "%s byte by byte: rc %d/%d body '%s'/'%s'", name, r.rc, whole.rc, r.body, whole.body);
}

static void test_content_length(void) {
    const char *raw = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                      "Content-Length: 12\r\n\r\n{\"id\":\"h_1\"}";
    result_t r = parse_whole(raw, false);
    CHECK(r.rc == 0, "rc %d", r.rc);
    CHECK(r.status == 201, "status %d", r.status);
    CHECK(strcmp(r.body, "{\"id\":\"h_1\"}") == 0, "body '%s'", r.body);
    CHECK(!r.close && r.retry_after_s == -1, "close %d retry_after %d", r.close, r.retry_after_s);
    check_all_splits("content-length", raw, false);
}

static void test_chunked(void) {
    const char *raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5;ext=1\r\n{\"a\":\r\nB\r\n1}\n{\"b\":2}\n\r\n0\r\nX-Trailer: y\r\n\r\n";
    result_t r = parse_whole(raw, false);
    CHECK(r.rc == 0 && r.status == 200, "rc %d status %d", r.rc, r.status);
    CHECK(strcmp(r.body, "{\"a\":1}\n{\"b\":2}\n") == 0, "body '%s'", r.body);
    check_all_splits("chunked", raw, false);
}

static void test_until_close(void) {
    const char *raw = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it";
    result_t r = parse_whole(raw, true);
    CHECK(r.rc == 0 && r.close && strcmp(r.body, "all of it") == 0, "rc %d close %d body '%s'",
          r.rc, r.close, r.body);
    check_all_splits("until-close", raw, true);
    r = parse_whole("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    CHECK(r.rc == 0 && r.close, "HTTP/1.0 closes: rc %d close %d", r.rc, r.close);
    r = parse_whole("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                    false);
    CHECK(r.rc == 0 && !r.close, "HTTP/1.0 keep-alive: rc %d close %d", r.rc, r.close);
}

static void test_interim_and_empty(void) {
    const char *raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    result_t r = parse_whole(raw, false);
    CHECK(r.rc == 0 && r.status == 204 && r.consumed == strlen(raw), "rc %d status %d used %zu",
          r.rc, r.status, r.consumed);
    check_all_splits("interim", raw, false);
}

static void test_retry_after_and_pipelined(void) {
    const char *raw = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\n"
                      "Content-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n";
    result_t r = parse_whole(raw, false);
    CHECK(r.rc == 0 && r.status == 503 && r.retry_after_s == 3, "rc %d status %d ra %d", r.rc,
          r.status, r.retry_after_s);
    CHECK(r.consumed == strlen(raw) - strlen("HTTP/1.1 200 OK\r\n"),
          "stops at the answer's end: used %zu of %zu", r.consumed, strlen(raw));
    r = parse_whole("HTTP/1.1 429 Too Many\r\nRetry-After: Wed, 21 Oct 2026 07:28:00 GMT\r\n"
                    "Content-Length: 0\r\n\r\n",
                    false);
    CHECK(r.rc == 0 && r.retry_after_s == 1, "a date means 1 s: ra %d", r.retry_after_s);
}

static void test_malformed(void) {
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
        "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        result_t r = parse_whole(bad[i], false);
        CHECK(r.rc == -1, "malformed answer %zu accepted (rc %d): %s", i, r.rc, bad[i]);
    }
    result_t r = parse_whole("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true);
    CHECK(r.rc == -1, "EOF inside a body: rc %d", r.rc);
    r = parse_whole("", true);
    CHECK(r.rc == -1, "EOF before an answer: rc %d", r.rc);
}

static void test_bounds(void) {
    fg_buf_t big;
    fg_buf_init(&big, 1 << 20);
    fg_buf_str(&big, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 400; i++)
        fg_buf_printf(&big, "X-Filler-%d: %040d\r\n", i, i);
    fg_buf_str(&big, "Content-Length: 0\r\n\r\n");
    result_t r = parse_whole(big.data, false);
    CHECK(r.rc == -1, "a head over 16 KiB must fail: rc %d (%zu bytes)", r.rc, big.len);
    fg_buf_reset(&big);
    fg_buf_str(&big, "HTTP/1.1 200 OK\r\nX-Long: ");
    for (int i = 0; i < 3000; i++)
        fg_buf_str(&big, "a");
    fg_buf_str(&big, "\r\nContent-Length: 2\r\n\r\nok");
    r = parse_whole(big.data, false);
    CHECK(r.rc == 0 && strcmp(r.body, "ok") == 0, "a long ignored header is skipped: rc %d", r.rc);
    fg_buf_free(&big);

    fgc_http_resp_t p;
    sink_t s = {.refuse = true};
    fg_buf_init(&s.body, 16);
    fgc_http_resp_init(&p, sink, &s);
    const char *raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    CHECK(fgc_http_feed(&p, raw, strlen(raw)) == -1, "a refused body fails the answer%s", "");
    fg_buf_free(&s.body);
}

static void test_request_writer(void) {
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fgc_http_request(&b, "POST", "127.0.0.1:8080", "/v1/buyers", "tok", "key-1", "{}", 2);
    const char *want = "POST /v1/buyers HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                       "Authorization: Bearer tok\r\nIdempotency-Key: key-1\r\n"
                       "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    CHECK(strcmp(b.data, want) == 0, "request:\n%s\nwant:\n%s", b.data, want);
    fg_buf_reset(&b);
    fgc_http_request(&b, "GET", "h", "/readyz", NULL, NULL, NULL, 0);
    CHECK(strcmp(b.data, "GET /readyz HTTP/1.1\r\nHost: h\r\n\r\n") == 0, "GET: %s", b.data);
    fg_buf_reset(&b);
    fgc_http_request(&b, "POST", "h", "/x", NULL, NULL, NULL, 0);
    CHECK(strstr(b.data, "Content-Length: 0\r\n\r\n") != NULL, "empty POST: %s", b.data);
    fg_buf_free(&b);
}

/* ---- ids and tokens ---------------------------------------------------------------------- */

static void test_ids(void) {
    uint32_t v = 0;
    CHECK(fgc_id_parse("h_345", 'h', &v) && v == 345, "h_345 -> %u", (unsigned)v);
    CHECK(fgc_id_parse("o_4294967295", 'o', &v) && v == 4294967295u, "max -> %u", (unsigned)v);
    CHECK(!fgc_id_parse("o_4294967296", 'o', &v), "past 32 bits%s", "");
    CHECK(!fgc_id_parse("h_0", 'h', &v) && !fgc_id_parse("h_01", 'h', &v), "no zero%s", "");
    CHECK(!fgc_id_parse("b_12", 'h', &v) && !fgc_id_parse("h_", 'h', &v), "prefix%s", "");
    CHECK(!fgc_id_parse("h_1x", 'h', &v) && !fgc_id_parse(NULL, 'h', &v), "junk%s", "");

    const char *tok = "fgb_12_XbvUPfCw6HohIVL4prrQ_-78JSizFwYGkGjaEtqG_-0";
    uint8_t secret[FGC_TOKEN_SECRET_BYTES];
    uint32_t id = 0;
    char back[FGC_TOKEN_TEXT_BYTES_MAX];
    CHECK(fgc_token_parse(tok, &id, secret) && id == 12, "parse %s -> id %u", tok, (unsigned)id);
    fgc_token_format(id, secret, back, sizeof back);
    CHECK(strcmp(back, tok) == 0, "round trip: %s != %s", back, tok);
    CHECK(!fgc_token_parse("fgb_12_XbvUPfCw6HohIVL4prrQ_-78JSizFwYGkGjaEtqG_-", &id, secret),
          "short secret%s", "");
    CHECK(!fgc_token_parse("fgb_12_XbvUPfCw6HohIVL4prrQ_-78JSizFwYGkGjaEtqG_-1", &id, secret),
          "non-canonical last character%s", "");
    CHECK(!fgc_token_parse("fga_12_XbvUPfCw6HohIVL4prrQ_-78JSizFwYGkGjaEtqG_-0", &id, secret),
          "prefix%s", "");
}

/* ---- latency histogram ------------------------------------------------------------------- */

static void test_latency(void) {
    fgc_latency_t *h = malloc(sizeof *h);
    fgc_latency_init(h);
    CHECK(fgc_latency_quantile(h, 0.5) == 0, "empty: %lld",
          (long long)fgc_latency_quantile(h, 0.5));
    for (int64_t v = 1; v <= 100000; v++)
        fgc_latency_add(h, v);
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (int i = 0; i < 4; i++) {
        double want = qs[i] * 100000, got = (double)fgc_latency_quantile(h, qs[i]);
        CHECK(got >= want && got <= want * 1.008 + 1, "q%.3f: %.0f, want %.0f within 0.8%%", qs[i],
              got, want);
    }
    CHECK(fgc_latency_quantile(h, 1.0) == 100000, "max %lld",
          (long long)fgc_latency_quantile(h, 1.0));
    fgc_latency_init(h);
    for (int i = 0; i < 999; i++)
        fgc_latency_add(h, 100);
    fgc_latency_add(h, 5000000000LL);
    CHECK(fgc_latency_quantile(h, 0.999) == 100, "p99.9 of 999x100 + one huge: %lld",
          (long long)fgc_latency_quantile(h, 0.999));
    CHECK(h->max_us == 5000000000LL, "max %lld", (long long)h->max_us);
    fgc_latency_add(h, -5);
    fgc_latency_add(h, INT64_MAX);
    CHECK(h->total == 1002, "out-of-range values are counted: %llu", (unsigned long long)h->total);
    free(h);
}

int main(void) {
    test_content_length();
    test_chunked();
    test_until_close();
    test_interim_and_empty();
    test_retry_after_and_pipelined();
    test_malformed();
    test_bounds();
    test_request_writer();
    test_ids();
    test_latency();
    if (failures == 0) printf("crowd units: all passed\n");
    return failures > 255 ? 255 : failures;
}
