/*
 * test_hold_body.c — a hold's body (src/api/hold_body.c): the hand reader takes only bodies the
 * full path (jansson and the field checks) reads the same way, and declines the rest, which the
 * full path then answers as before. Also the short form in which a new hold's answer is stored
 * for its Idempotency-Key (src/api/holds.c): it replays byte for byte, and damaged text does not.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "asserts.h"

typedef struct {
    const char *body;
    bool fast;          /* the hand reader takes it */
    int status;         /* the full path: 0 taken, else the refusal's status */
    const char *sku;    /* when taken */
    const char *market; /* when taken */
    int64_t quantity;   /* when taken */
} hold_case_t;

static const hold_case_t cases[] = {
    /* the plain shape, in any order, with JSON whitespace */
    {"{\"sku\":\"p-128\"}", true, 0, "p-128", "", 1},
    {"{\"sku\":\"p-128\",\"market\":\"DE\",\"quantity\":2}", true, 0, "p-128", "DE", 2},
    {" {\r\n\t\"quantity\" : 100 , \"market\":\"IN\",\"sku\" : \"a b/c\" }\n ", true, 0, "a b/c",
     "IN", 100},
    {"{\"sku\":\"0123456789012345678901234567890123456789012345678901234567890123\"}", true, 0,
     "0123456789012345678901234567890123456789012345678901234567890123", "", 1},
    /* valid, but not the plain shape: the full path reads them */
    {"{\"sku\":\"p\\u002d1\"}", false, 0, "p-1", "", 1},
    {"{\"sku\":\"p-1\",\"market\":null}", false, 0, "p-1", "", 1},
    {"{\"sku\":\"p-1\",\"market\":\"\"}", false, 0, "p-1", "", 1},
    {"{\"sku\":\"caf\xc3\xa9\"}", false, 0, "caf\xc3\xa9", "", 1},
    /* refused, each by the full path */
    {"", false, 400, NULL, NULL, 0},
    {"{}", false, 400, NULL, NULL, 0},
    {"[]", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"sku\":\"p-2\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"colour\":\"red\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"market\":\"de\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"market\":\"DEU\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":0}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":101}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":1000000000000000000000}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":-1}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":01}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":1.0}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":1e1}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",\"quantity\":\"1\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\"} x", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\",}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p-1\"", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p\x7f\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"p\\u0000\"}", false, 400, NULL, NULL, 0},
    {"{\"sku\":\"01234567890123456789012345678901234567890123456789012345678901234\"}", false,
     400, NULL, NULL, 0},
};

static fg_api_request_t request(const char *body) {
    fg_api_request_t rq;
    memset(&rq, 0, sizeof rq);
    rq.body = body;
    rq.body_len = strlen(body);
    return rq;
}

Test(hold_body, hand_reader_takes_only_what_the_full_path_reads_alike) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const hold_case_t *c = &cases[i];
        fg_api_request_t rq = request(c->body);
        fg_hold_body_t fast, full;
        fg_api_answer_t ans = {0};
        bool took = fg__hold_body_fast(rq.body, rq.body_len, &fast);
        cr_assert_eq(took, c->fast, "case %zu %s: hand reader %s", i, c->body,
                     took ? "took it" : "declined");
        bool ok = fg__hold_body_full(&rq, &full, &ans);
        cr_assert_eq(ok, c->status == 0, "case %zu %s: full path status %d", i, c->body,
                     ans.status);
        if (!ok) {
            EQ(ans.status, c->status);
            cr_assert_not_null(ans.body, "case %zu: a refusal says why", i);
            free(ans.body);
            continue;
        }
        STREQ(full.sku, c->sku);
        STREQ(full.market, c->market);
        EQ(full.quantity, c->quantity);
        if (took) {
            STREQ(fast.sku, full.sku);
            STREQ(fast.market, full.market);
            EQ(fast.quantity, full.quantity);
        }
    }
}

Test(hold_body, both_paths_answer_through_one_call) {
    fg_api_request_t rq = request("{\"sku\":\"p\\u002d1\",\"quantity\":3}");
    fg_hold_body_t b;
    fg_api_answer_t ans = {0};
    cr_assert(fg__hold_body(&rq, &b, &ans));
    STREQ(b.sku, "p-1");
    EQ(b.quantity, 3);
    rq = request("{\"sku\":\"p-1\",\"quantity\":0}");
    cr_assert(!fg__hold_body(&rq, &b, &ans));
    EQ(ans.status, 400);
    STREQ(ans.code, "invalid_field");
    cr_assert(strstr(ans.body, "quantity: an integer from 1 to 100") != NULL, "%s", ans.body);
    free(ans.body);
}

/* Every prefix of a valid body: the hand reader never reads past the end or takes a cut one. */
Test(hold_body, hand_reader_declines_every_cut_body) {
    const char *whole = "{\"sku\":\"p-128\",\"market\":\"DE\",\"quantity\":12}";
    size_t n = strlen(whole);
    for (size_t len = 0; len < n; len++) {
        char *cut = malloc(len ? len : 1); /* exactly len bytes: ASan sees a read past them */
        cr_assert_not_null(cut);
        memcpy(cut, whole, len);
        fg_hold_body_t b;
        cr_assert(!fg__hold_body_fast(cut, len, &b), "took %zu of %zu bytes", len, n);
        free(cut);
    }
}

/* A new hold's answer stored in short (holds.c) replays byte for byte. */
Test(hold_stored, replays_the_same_answer) {
    fg_hold_view_t v = {.id = 123456789,
                        .sale_id = "nova-launch",
                        .sku = "nova-x-256.black_1",
                        .market = "DE",
                        .quantity = 3,
                        .state = FG_HOLD_HELD,
                        .created_at_ms = 1800000000123LL,
                        .expires_at_ms = 1800000120123LL};
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg__render_hold_view(&b, &v);
    char *answer = fg_buf_take(&b);
    char *stored = fg__hold_stored(&v);
    cr_assert_not_null(stored);
    cr_assert(strlen(stored) < strlen(answer) / 2, "stored %s", stored);
    char *again = fg__hold_replay(stored);
    STREQ(again, answer);
    /* answers stored whole replay as they are */
    char *whole = fg__hold_replay(answer);
    STREQ(whole, answer);
    free(whole);
    free(again);
    free(stored);
    free(answer);
}

Test(hold_stored, damaged_text_does_not_replay) {
    static const char *const bad[] = {
        "",
        "h1",
        "h2 1 1 1 1 DE s k",
        "h1 0 1800000000123 1800000120123 1 DE s k",
        "h1 1 1800000000123 1800000120123 0 DE s k",
        "h1 1 1800000000123 1800000120123 101 DE s k",
        "h1 1 1800000000123 1800000120123 1 de s k",
        "h1 1 1800000000123 1800000120123 1 DE s",
        "h1 1 1800000000123 1800000120123 1 DE s k extra",
        "h1 1 1800000000123 1800000120123 1 DE s/x k",
        "h1 1 -5 1800000120123 1 DE s k",
        "h1 99999999999999999999 1 1 1 DE s k",
        "h1 1 1 1 1 DE  k",
        "h1 1 1 1 1 DE s k ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *r = fg__hold_replay(bad[i]);
        cr_assert_null(r, "replayed \"%s\" as %s", bad[i], r);
    }
    char *ok = fg__hold_replay("h1 1 0 0 1 DE s k");
    cr_assert_not_null(ok);
    free(ok);
}
