/*
 * hold_body.c — the body of POST /v1/sales/{id}/holds: {"sku", "market"?, "quantity"?}.
 *
 * Every hold of a launch sends one, so it is read twice over: first by a small reader that
 * takes only the plain, valid shape (an object of the three known keys, each once, ASCII
 * strings without escapes, a quantity of plain digits, values already within their limits),
 * and only when that reader declines by jansson and the field checks every other body goes
 * through. The fast reader never refuses anything: whatever it does not take, the full path
 * reads and answers, so every error and every unusual but valid body (escapes, null, UTF-8,
 * a lower-case market) is handled in one place. What the fast reader takes, the full path
 * would take with the same result (tests/unit/test_hold_body.c and tests/fuzz/fuzz_api.c
 * check both on the same bodies).
 */
#include <string.h>

#include "api/internal.h"

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string of printable ASCII with no escape; its bytes are [*s, *s + *n). */
static const char *plain_string(const char *p, const char *end, const char **s, size_t *n) {
    if (p >= end || *p != '"') return NULL;
    const char *start = ++p;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f || c == '\\') return NULL;
        p++;
    }
    if (p >= end) return NULL;
    *s = start;
    *n = (size_t)(p - start);
    return p + 1;
}

enum { KEY_SKU = 1, KEY_MARKET = 2, KEY_QUANTITY = 4 };

static int key_of(const char *s, size_t n) {
    if (n == 3 && memcmp(s, "sku", 3) == 0) return KEY_SKU;
    if (n == 6 && memcmp(s, "market", 6) == 0) return KEY_MARKET;
    if (n == 8 && memcmp(s, "quantity", 8) == 0) return KEY_QUANTITY;
    return 0;
}

/* One member's value; false declines the body. */
static const char *value(const char *p, const char *end, int key, fg_hold_body_t *out) {
    const char *s;
    size_t n;
    if (key == KEY_QUANTITY) {
        /* 1 to FG_LIMIT_PER_BUYER_MAX, digits only: no sign, fraction, exponent or leading 0 */
        int64_t v = 0;
        const char *start = p;
        while (p < end && *p >= '0' && *p <= '9' && p - start < 4) {
            v = v * 10 + (*p - '0');
            p++;
        }
        if (p == start || *start == '0' || v > FG_LIMIT_PER_BUYER_MAX) return NULL;
        if (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E'))
            return NULL;
        out->quantity = v;
        return p;
    }
    p = plain_string(p, end, &s, &n);
    if (p == NULL) return NULL;
    if (key == KEY_SKU) {
        if (n < 1 || n > FG_ID_BYTES_MAX) return NULL;
        memcpy(out->sku, s, n);
        out->sku[n] = '\0';
        return p;
    }
    if (n != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z') return NULL;
    out->market[0] = s[0];
    out->market[1] = s[1];
    out->market[2] = '\0';
    return p;
}

bool fg__hold_body_fast(const char *body, size_t len, fg_hold_body_t *out) {
    const char *p = body, *end = body + len;
    int seen = 0;
    out->sku[0] = '\0';
    out->market[0] = '\0';
    out->quantity = 1;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{') return false;
    p = skip_ws(p, end);
    while (p < end && *p != '}') {
        const char *k;
        size_t kn;
        if (seen != 0) {
            if (*p++ != ',') return false;
            p = skip_ws(p, end);
        }
        p = plain_string(p, end, &k, &kn);
        if (p == NULL) return false;
        int key = key_of(k, kn);
        if (key == 0 || (seen & key) != 0) return false;
        seen |= key;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':') return false;
        p = value(skip_ws(p, end), end, key, out);
        if (p == NULL) return false;
        p = skip_ws(p, end);
    }
    if (p >= end || (seen & KEY_SKU) == 0) return false;
    return skip_ws(p + 1, end) == end;
}

bool fg__hold_body_full(const fg_api_request_t *rq, fg_hold_body_t *out, fg_api_answer_t *ans) {
    static const char *const keys[] = {"sku", "market", "quantity", NULL};
    out->sku[0] = '\0';
    out->market[0] = '\0';
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return false;
    out->quantity = 1;
    bool ok =
        fg__only_keys(body, keys, "", ans) &&
        fg__str_field(body, "sku", "sku", true, FG_ID_BYTES_MAX, out->sku, sizeof out->sku, ans) &&
        fg__str_field(body, "market", "market", false, 2, out->market, sizeof out->market, ans) &&
        fg__int_field(body, "quantity", "quantity", false, 1, FG_LIMIT_PER_BUYER_MAX,
                      &out->quantity, ans);
    json_decref(body);
    if (ok && out->market[0] != '\0' && !fg__valid_market(out->market)) {
        fg_api_problem(ans, 400, "invalid_field", "market: two upper-case letters");
        ok = false;
    }
    return ok;
}

bool fg__hold_body(const fg_api_request_t *rq, fg_hold_body_t *out, fg_api_answer_t *ans) {
    return fg__hold_body_fast(rq->body, rq->body_len, out) || fg__hold_body_full(rq, out, ans);
}
