/*
 * setup.h — the crowd's own catalog and sale, created through the operator API.
 *
 * The catalog: markets DE, FR, IN (offered) and US (where the SKU is blocked, "not certified"),
 * one product with one SKU. It is created when missing and its offers are set every run, so a
 * run never depends on what an earlier one left. Each run gets a new sale of that SKU whose one
 * item sells in all four markets: a US buyer must be refused by the catalog's block, not by the
 * sale's item list.
 */
#ifndef FGC_SETUP_H
#define FGC_SETUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crowd/loop.h"

#define FGC_PRODUCT_ID      "crowd-phone"
#define FGC_SKU_ID          "crowd-phone-128-black"
#define FGC_MARKET_COUNT    4
#define FGC_MARKET_BLOCKED  3 /* index of the market where the SKU is blocked */
#define FGC_MARKETS_OFFERED 3

typedef struct {
    const char *code, *name, *currency;
    int64_t price_minor;       /* 0 where blocked */
    const char *shipping_json; /* a shipping address in the market, as an order body wants it */
} fgc_market_t;

extern const fgc_market_t fgc_markets[FGC_MARKET_COUNT];

/* Each call below is sent again, up to `retries` times (fgc_call_retry), while it gets no answer
 * or one that settles nothing: a server that is restarting is waited for, within that bound. */

/* GET /readyz: 0 when the server is ready, -1 (reason in err) otherwise. */
FG_MUST_USE int fgc_setup_ready(fgc_loop_t *l, int retries, char *err, size_t cap);

/* Markets, product and offers. Returns 0, or -1 with the reason in err. */
FG_MUST_USE int fgc_setup_catalog(fgc_loop_t *l, int retries, const char *admin_token, char *err,
                                  size_t cap);

/* Creates sale `sale_id` of `stock` units opening at `opens_at_ms` (Unix ms). `idem` is the
 * Idempotency-Key, the same on every try. Returns 0, or -1 with the reason in err. */
FG_MUST_USE int fgc_setup_sale(fgc_loop_t *l, int retries, const char *admin_token,
                               const char *sale_id, int64_t opens_at_ms, int64_t stock, int limit,
                               int hold_ttl_s, const char *idem, char *err, size_t cap);

#endif
