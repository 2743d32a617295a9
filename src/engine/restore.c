/*
 * restore.c — rebuilds the engine from the ledger at start (and after a failed commit).
 *
 * The ledger hands rows to this visitor; each becomes engine state through the engine's restore
 * calls, which re-check the invariants as they go, so a ledger that would break I1 or I2 is
 * refused rather than served. A full scan (fg_engine_verify) runs at the end.
 */
#include <stdio.h>
#include <stdlib.h>

#include "engine/writer.h"
#include "util/clock.h"
#include "util/log.h"

typedef struct {
    fg_engine_t *e;
    char *err;
    size_t errlen;
    uint64_t rows;
} restore_ctx_t;

static int fail(restore_ctx_t *c, const char *what) {
    snprintf(c->err, c->errlen, "restoring %s: %s", what, fg_engine_detail(c->e));
    return -1;
}

static int on_market(void *ctx, const fg_market_t *m) {
    restore_ctx_t *c = ctx;
    bool created;
    c->rows++;
    return fg_engine_market_put(c->e, m, &created) == FG_OK ? 0 : fail(c, "market");
}

static int on_product(void *ctx, fg_product_t *p) {
    restore_ctx_t *c = ctx;
    bool created;
    c->rows++;
    if (fg_engine_product_put(c->e, p, &created) == FG_OK) return 0;
    fg_product_free(p); /* the ledger hands it over even when refused */
    return fail(c, "product");
}

static int on_offer(void *ctx, const fg_offer_t *o) {
    restore_ctx_t *c = ctx;
    bool created;
    c->rows++;
    return fg_engine_offer_put(c->e, o, &created) == FG_OK ? 0 : fail(c, "offer");
}

static int on_sale(void *ctx, const fg_sale_row_t *s) {
    restore_ctx_t *c = ctx;
    c->rows++;
    return fg_engine_restore_sale(c->e, s) == FG_OK ? 0 : fail(c, "sale");
}

static int on_buyer(void *ctx, const fg_buyer_row_t *b) {
    restore_ctx_t *c = ctx;
    c->rows++;
    return fg_engine_restore_buyer(c->e, b) == FG_OK ? 0 : fail(c, "buyer");
}

static int on_hold(void *ctx, const fg_hold_row_t *h) {
    restore_ctx_t *c = ctx;
    c->rows++;
    return fg_engine_restore_hold(c->e, h) == FG_OK ? 0 : fail(c, "hold");
}

static int on_order(void *ctx, const fg_order_row_t *o) {
    restore_ctx_t *c = ctx;
    c->rows++;
    if (fg_engine_restore_order(c->e, o) == FG_OK) return 0;
    free((char *)o->shipping_json);
    return fail(c, "order");
}

static int on_idem(void *ctx, const fg_idem_row_t *r) {
    restore_ctx_t *c = ctx;
    c->rows++;
    return fg_engine_restore_idem(c->e, r) == FG_OK ? 0 : fail(c, "idempotency record");
}

static int on_webhook(void *ctx, const fg_webhook_row_t *w) {
    restore_ctx_t *c = ctx;
    c->rows++;
    return fg_engine_restore_webhook(c->e, w) == FG_OK ? 0 : fail(c, "webhook signature");
}

static int fetch_answer(void *ctx, int64_t rowid, fg_idem_row_t *row,
                        char key[FG_IDEM_KEY_BYTES_MAX + 1], char **body) {
    return fg_ledger_answer_get(ctx, rowid, row, key, body);
}

int fg_engine_load(fg_ledger_t *ledger, int64_t now_ms, fg_engine_t **out, char *err,
                   size_t errlen) {
    static const fg_ledger_visitor_t visitor = {
        .market = on_market,
        .product = on_product,
        .offer = on_offer,
        .sale = on_sale,
        .buyer = on_buyer,
        .hold = on_hold,
        .order = on_order,
        .idem = on_idem,
        .webhook = on_webhook,
    };
    fg_engine_t *e = fg_engine_new();
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    restore_ctx_t c = {.e = e, .err = err, .errlen = errlen};
    /* Committed answers are read back from the ledger, so they need not stay in memory. */
    fg_engine_set_answer_store(e, fetch_answer, ledger);
    fg_engine_set_restoring(e, true);
    int64_t t0 = fg_clock_mono_ns();
    if (fg_ledger_load(ledger, &visitor, &c, now_ms - FG_IDEM_TTL_MS,
                       now_ms / 1000 - 2 * FG_WEBHOOK_TOLERANCE_S, err, errlen) != 0) {
        fg_engine_free(e);
        return -1;
    }
    /* Answers older than FG_IDEM_TTL_MS were not read; the engine forgets from the same line. */
    fg_engine_idem_expire(e, now_ms);
    fg_engine_set_restoring(e, false);
    /* Rows that each passed their checks can still disagree (an ordered hold whose order is
     * missing): the whole state is checked, and a ledger that breaks an invariant refused. */
    char why[256];
    if (fg_engine_verify(e, why, sizeof why) != 0) {
        snprintf(err, errlen, "ledger: the restored state breaks an invariant: %s", why);
        fg_engine_free(e);
        return -1;
    }
    FG_LOG_INFO("event=restored rows=%llu buyers=%llu active_holds=%llu orders=%llu ms=%.1f",
                (unsigned long long)c.rows, (unsigned long long)fg_engine_buyer_count(e),
                (unsigned long long)fg_engine_active_holds(e),
                (unsigned long long)fg_engine_order_count(e),
                (double)(fg_clock_mono_ns() - t0) / 1e6);
    *out = e;
    return 0;
}
