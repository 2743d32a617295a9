/*
 * model_support.c — the world, model rules and helpers shared by test_engine_model.c and
 * test_sim.c (see model_support.h). Each function here was written out the same in both tests.
 */
#include "model_support.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const MARKETS[NMARKETS] = {"DE", "FR", "IN", "US"};
const char *const CURRENCIES[NMARKETS] = {"EUR", "EUR", "INR", "USD"};
const char *const SKUS[NSKUS] = {"px-blk-128", "px-wht-256", "case-1", "ghost-9"};

const char *const ERR_NAMES[NERRS] = {
    "OK",          "NOT_FOUND",    "INVALID",         "SOLD_OUT",     "SALE_NOT_OPEN", "LIMIT",
    "NOT_OFFERED", "HOLD_EXPIRED", "HOLD_NOT_ACTIVE", "BUYER_EXISTS", "UNAUTHORIZED",  "CAPACITY",
};
_Static_assert(FG_ERR_CAPACITY + 1 == NERRS, "ERR_NAMES must name every fg_err_t");

const offer_seed_t OFFER_SEED[OFFER_SEEDS] = {
    {K_BLK, M_DE, false, 79900, NULL},   {K_BLK, M_FR, false, 81900, NULL},
    {K_BLK, M_IN, false, 6999900, NULL}, {K_BLK, M_US, true, 0, "not certified"},
    {K_WHT, M_DE, false, 89900, NULL},   {K_WHT, M_FR, false, 89900, NULL},
    {K_CASE, M_DE, false, 1999, NULL},
};

const int BUYER_MIX[20] = {M_DE, M_DE, M_DE, M_DE, M_DE, M_DE, M_DE, M_FR, M_FR, M_FR,
                           M_FR, M_FR, M_IN, M_IN, M_IN, M_IN, M_IN, M_IN, M_US, M_US};

const char *err_name(fg_err_t e) {
    return (unsigned)e < (unsigned)NERRS ? ERR_NAMES[e] : "?";
}

/* ---------------------------------------------------------------- picking */

uint64_t pick_id(rng_t *rng, size_t count) {
    int x = rng_below(rng, 100);
    if (count == 0 || x < 4) return count + 1 + (uint64_t)rng_below(rng, 100);
    if (x < 12) return (uint64_t)rng_below(rng, (int)count) + 1;
    size_t span = x < 65 ? 4 : RECENT;
    if (span > count) span = count;
    return count - (uint64_t)rng_below(rng, (int)span);
}

int pick_sale_of(rng_t *rng, int nsales, const int slot[2]) {
    int x = rng_below(rng, 100);
    if (x < 3) return -1;
    if (x < 8) return rng_below(rng, nsales);
    return slot[rng_below(rng, 2)];
}

void draw_hold(rng_t *rng, int *market, int *sku, int *qty) {
    if (rng_below(rng, 100) < 12) *market = rng_below(rng, NMARKETS);
    int x = rng_below(rng, 100);
    *sku = x < 62 ? K_BLK : x < 88 ? K_WHT : x < 94 ? K_CASE : K_GHOST;
    int qx = rng_below(rng, 100);
    *qty = qx < 60 ? 1 : qx < 88 ? 2 : qx < 97 ? 3 : qx < 98 ? 0 : qx < 99 ? -2 : 101;
}

void draw_stock(rng_t *rng, int *sku, int *market, int64_t *add) {
    *sku = rng_below(rng, 100) < 70 ? K_BLK : rng_below(rng, 10) ? K_WHT : K_CASE;
    *market = rng_below(rng, 100) < 30 ? -1 : rng_below(rng, NMARKETS);
    *add = rng_below(rng, 100) < 95 ? 1 + rng_below(rng, 3) : 0;
}

const char *draw_country(rng_t *rng, const char *country) {
    int x = rng_below(rng, 100);
    if (x < 8) return MARKETS[rng_below(rng, NMARKETS)];
    if (x < 9) return "XX";
    return country;
}

/* ---------------------------------------------------------------- failure output */

void dump_recent(const char *recent, size_t row_bytes, long step, const char *op, int64_t now) {
    fprintf(stderr, "  last commands (oldest first):\n");
    for (long i = step - RECENT_OPS + 1; i < step; i++)
        if (i >= 0)
            fprintf(stderr, "    #%ld %s\n", i, recent + (size_t)(i % RECENT_OPS) * row_bytes);
    fprintf(stderr, "    #%ld %s (now=T0%+lld)  <- this step\n", step, op, (long long)(now - T0));
}

void print_outcomes(const long (*outcomes)[NERRS], int nops, const char *const *op_names) {
    for (int op = 0; op < nops; op++) {
        char line[512];
        size_t len = 0;
        for (int e = 0; e < NERRS && len < sizeof line - 40; e++)
            if (outcomes[op][e])
                len += (size_t)snprintf(line + len, sizeof line - len, " %s=%ld", ERR_NAMES[e],
                                        outcomes[op][e]);
        fprintf(stderr, "  %-9s%s\n", op_names[op], len ? line : " (none)");
    }
}

/* ---------------------------------------------------------------- model rules */

fg_sale_state_t m_state(const msale_t *s, int64_t now) {
    if (m_closed(s, now)) return FG_SALE_CLOSED;
    if (s->paused) return FG_SALE_PAUSED;
    if (now < s->opens) return FG_SALE_SCHEDULED;
    for (int i = 0; i < s->npools; i++)
        if (m_avail(&s->pools[i]) > 0) return FG_SALE_OPEN;
    return FG_SALE_SOLD_OUT;
}

int m_pool_of(const msale_t *s, int sku, int market) {
    for (int i = 0; i < s->npools; i++) {
        if (s->pools[i].sku != sku) continue;
        for (int k = 0; k < s->pools[i].nm; k++)
            if (s->pools[i].markets[k] == market) return i;
    }
    return -1;
}

fg_err_t m_hold_admit(const msale_t *s, const moffer_t *o, int buyer_market, int sku, int market,
                      int qty, int64_t now, int *pool) {
    if (qty < 1 || qty > FG_LIMIT_PER_BUYER_MAX) return FG_ERR_INVALID;
    if (market != buyer_market) return FG_ERR_INVALID;
    bool in_sale = false;
    for (int i = 0; i < s->npools; i++)
        in_sale |= s->pools[i].sku == sku;
    if (!in_sale) return FG_ERR_INVALID;
    *pool = m_pool_of(s, sku, market);
    if (!o->exists || o->blocked || *pool < 0) return FG_ERR_NOT_OFFERED;
    fg_sale_state_t st = m_state(s, now);
    if (st == FG_SALE_SOLD_OUT) return FG_ERR_SOLD_OUT;
    if (st != FG_SALE_OPEN) return FG_ERR_SALE_NOT_OPEN;
    return FG_OK;
}

fg_err_t m_stock_pool(const msale_t *s, int sku, int market, int64_t add, int *pool) {
    if (add < 1 || add > FG_STOCK_MAX) return FG_ERR_INVALID;
    int matches = 0;
    *pool = -1;
    for (int i = 0; i < s->npools; i++) {
        if (s->pools[i].sku != sku) continue;
        if (market >= 0 && m_pool_of(s, sku, market) != i) continue;
        *pool = i;
        matches++;
    }
    if (matches != 1) return FG_ERR_INVALID;
    if (s->pools[*pool].stock + add > FG_STOCK_MAX) return FG_ERR_INVALID;
    return FG_OK;
}

static void pool_def(fg_pool_def_t *p, mpool_t *mp, int sku, int64_t stock, int m1, int m2,
                     int m3) {
    memset(p, 0, sizeof *p);
    memset(mp, 0, sizeof *mp);
    snprintf(p->sku, sizeof p->sku, "%s", SKUS[sku]);
    p->stock = mp->stock = stock;
    mp->sku = sku;
    int ms[3] = {m1, m2, m3};
    for (int i = 0; i < 3; i++) {
        if (ms[i] < 0) continue;
        p->markets[p->market_count++] = fg_mcode(MARKETS[ms[i]]);
        mp->markets[mp->nm++] = ms[i];
    }
}

/* Layout A has the phone in a pool shared by DE and FR plus pools of its own for IN and US; B
 * shares one pool between FR, IN and US (where the phone is blocked) and the white phone
 * between DE and FR. The first two sales open at fixed times; later ones within 20 s. Sales are
 * short (3 to 12 minutes, a few hundred steps), so that they close while buyers still hold
 * units. */
void sale_make(rng_t *rng, int n, int layout, int64_t now, fg_sale_row_t *d, msale_t *ms, char *op,
               size_t op_bytes) {
    memset(d, 0, sizeof *d);
    memset(ms, 0, sizeof *ms);
    snprintf(d->id, sizeof d->id, "s%d", n);
    snprintf(ms->id, sizeof ms->id, "%s", d->id);
    snprintf(d->name, sizeof d->name, "Flash %d", n);
    int64_t opens =
        n < 2 ? T0 + (layout == 0 ? 5000 : 0) : (now / 1000 + rng_below(rng, 21)) * 1000;
    int64_t closes = 0;
    if (n == 1 || (n >= 2 && rng_below(rng, 3) != 0))
        closes = opens + (180 + rng_below(rng, 541)) * 1000LL;
    d->opens_at_ms = ms->opens = opens;
    d->closes_at_ms = ms->closes = closes;
    d->limit_per_buyer = ms->limit = 2;
    d->hold_ttl_s = ms->ttl_s = 10 + rng_below(rng, 21);
    if (layout == 0) {
        d->pool_count = ms->npools = 4;
        pool_def(&d->pools[0], &ms->pools[0], K_BLK, 4, M_DE, M_FR, -1);
        pool_def(&d->pools[1], &ms->pools[1], K_BLK, 2, M_IN, -1, -1);
        pool_def(&d->pools[2], &ms->pools[2], K_BLK, 2, M_US, -1, -1);
        pool_def(&d->pools[3], &ms->pools[3], K_WHT, 2, M_DE, -1, -1);
    } else {
        d->pool_count = ms->npools = 3;
        pool_def(&d->pools[0], &ms->pools[0], K_BLK, 3, M_DE, -1, -1);
        pool_def(&d->pools[1], &ms->pools[1], K_BLK, 3, M_FR, M_IN, M_US);
        pool_def(&d->pools[2], &ms->pools[2], K_WHT, 2, M_DE, M_FR, -1);
    }
    snprintf(op, op_bytes, "new_sale %s layout=%c opens=+%lld closes=%lld ttl=%d", d->id,
             'A' + layout, (long long)(opens - now), (long long)closes, d->hold_ttl_s);
}

/* ---------------------------------------------------------------- engine setup and helpers */

void offer_make(fg_offer_t *o, int sku, int market, bool blocked, int64_t price,
                const char *reason) {
    memset(o, 0, sizeof *o);
    snprintf(o->sku, sizeof o->sku, "%s", SKUS[sku]);
    snprintf(o->market, sizeof o->market, "%s", MARKETS[market]);
    o->blocked = blocked;
    o->price_minor = price;
    if (reason) snprintf(o->reason, sizeof o->reason, "%s", reason);
}

void catalog_put(fg_engine_t *e) {
    bool created;
    for (int i = 0; i < NMARKETS; i++) {
        fg_market_t mk = {0};
        snprintf(mk.code, sizeof mk.code, "%s", MARKETS[i]);
        snprintf(mk.name, sizeof mk.name, "Market %s", MARKETS[i]);
        snprintf(mk.currency, sizeof mk.currency, "%s", CURRENCIES[i]);
        cr_assert_eq(fg_engine_market_put(e, &mk, &created), FG_OK);
    }
    const char *const phone[] = {SKUS[K_BLK], SKUS[K_WHT]}, *const cases[] = {SKUS[K_CASE]};
    const struct {
        const char *id;
        int n;
        const char *const *skus;
    } products[] = {{"phone-x", 2, phone}, {"case", 1, cases}};
    for (int i = 0; i < 2; i++) {
        fg_product_t p = {0};
        snprintf(p.id, sizeof p.id, "%s", products[i].id);
        snprintf(p.name, sizeof p.name, "Product %s", products[i].id);
        p.specs_json = strdup("{}");
        p.sku_count = products[i].n;
        p.skus = calloc((size_t)p.sku_count, sizeof *p.skus);
        cr_assert_not_null(p.skus);
        for (int k = 0; k < p.sku_count; k++) {
            snprintf(p.skus[k].id, sizeof p.skus[k].id, "%s", products[i].skus[k]);
            p.skus[k].attributes_json = strdup("{}");
        }
        cr_assert_eq(fg_engine_product_put(e, &p, &created), FG_OK);
    }
}

void token_of(const char *email, uint8_t out[32]) {
    memset(out, 0, 32);
    for (size_t i = 0; email[i] && i < 32; i++)
        out[i] = (uint8_t)(email[i] * 7 + i);
}

void *grow(void *p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * size);
    cr_assert_not_null(q, "out of memory");
    memset((char *)q + *cap * size, 0, (c - *cap) * size);
    *cap = c;
    return q;
}

long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return dflt;
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 0);
    cr_assert(errno == 0 && *end == '\0' && n > 0, "%s=\"%s\" is not a positive number", name, v);
    return n;
}

uint64_t env_seed(const char *name, uint64_t dflt) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return dflt;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    cr_assert(errno == 0 && *end == '\0', "%s=\"%s\" is not a number", name, v);
    return n;
}

double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
