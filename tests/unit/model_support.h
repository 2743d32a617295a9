/*
 * model_support.h — what the two reference-model tests share: test_engine_model.c (the engine
 * against a model) and test_sim.c (the engine and a ledger under a simulator with crashes).
 *
 * It holds the world both drive (four markets, four SKUs, the starting offers and buyer mix),
 * the seeded PRNG (splitmix64; a seed gives the same sequence in both tests), the model's pools
 * and sales with the rules that only read them, the divergence macros, and the small helpers both
 * wrote out the same (grow, env_long, env_seed, token_of, the sale layouts, the outcome table).
 * What differs between the two models (holds, orders, buyers, the undo log) stays in each test.
 *
 * Nothing here keeps state; everything runs on the test's own thread.
 */
#ifndef FG_TESTS_MODEL_SUPPORT_H
#define FG_TESTS_MODEL_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#define T0         1800000000000LL
#define RECENT     64 /* commands pick mostly among the newest holds and orders */
#define RECENT_OPS 24 /* commands printed on failure */

/* ---------------------------------------------------------------- the world */

enum { M_DE, M_FR, M_IN, M_US, NMARKETS };
enum { K_BLK, K_WHT, K_CASE, K_GHOST, NSKUS }; /* K_GHOST is in no catalog */
#define NERRS 12                               /* fg_err_t values, FG_OK to FG_ERR_CAPACITY */

extern const char *const MARKETS[NMARKETS];
extern const char *const CURRENCIES[NMARKETS];
extern const char *const SKUS[NSKUS];
extern const char *const ERR_NAMES[NERRS];

/* The offers a world starts with, in the order they are put. */
typedef struct {
    int sku, market;
    bool blocked;
    int64_t price;
    const char *reason;
} offer_seed_t;
#define OFFER_SEEDS 7
extern const offer_seed_t OFFER_SEED[OFFER_SEEDS];

/* Starting buyer i is in market BUYER_MIX[i % 20]: DE 35%, FR 25%, IN 30%, US 10% (where the
 * phone is blocked). */
extern const int BUYER_MIX[20];

/* The error's name ("SOLD_OUT"), "?" for a value out of range. */
const char *err_name(fg_err_t e);

/* ---------------------------------------------------------------- PRNG (splitmix64) */

typedef struct {
    uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); the modulo bias is far below anything that matters here. */
static inline int rng_below(rng_t *r, int n) {
    return (int)(rng_next(r) % (uint64_t)n);
}

/* An id among the newest of `count` (mostly the very newest, whose holds are still alive),
 * sometimes any, sometimes unknown. */
uint64_t pick_id(rng_t *rng, size_t count);

/* A hold's arguments as a client sends them: `*market` (the buyer's own on entry) sometimes
 * another, the SKU (mostly the phone, now and then the ghost) and the quantity (mostly 1 or 2,
 * now and then invalid). */
void draw_hold(rng_t *rng, int *market, int *sku, int *qty);

/* An add_stock's arguments: the SKU, the market (-1: none) and the units (now and then 0). */
void draw_stock(rng_t *rng, int *sku, int *market, int64_t *add);

/* The country an order ships to: mostly `country`, sometimes another market or "XX". */
const char *draw_country(rng_t *rng, const char *country);

/* A sale to act on: mostly one of the two traded (`slot`), sometimes any of `nsales` (often
 * closed), rarely none (-1). */
int pick_sale_of(rng_t *rng, int nsales, const int slot[2]);

/* ---------------------------------------------------------------- divergence */

/* Both need the includer's `diverge(r, fmt, ...)`, which fails the test with the run's seed,
 * step and replay command. */
#define MEQ(r, what, got, want)                                                                    \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_) diverge((r), "%s: engine %lld, model %lld", (what), g_, w_);                 \
    } while (0)

/* Like MEQ, with a label formatted only when the values differ (this runs millions of times). */
#define MEQF(r, got, want, ...)                                                                    \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_) {                                                                            \
            char what_[160];                                                                       \
            snprintf(what_, sizeof what_, __VA_ARGS__);                                            \
            diverge((r), "%s: engine %lld, model %lld", what_, g_, w_);                            \
        }                                                                                          \
    } while (0)

/* Prints the last RECENT_OPS commands from the ring `recent` (rows of `row_bytes`), then the
 * current one, `op`, at `now`, to stderr. */
void dump_recent(const char *recent, size_t row_bytes, long step, const char *op, int64_t now);

/* ---------------------------------------------------------------- the model: pools and sales */

typedef struct {
    bool exists, blocked;
    int64_t price;
} moffer_t;

typedef struct {
    int sku;
    int markets[4];
    int nm;
    int64_t stock, held, sold;
} mpool_t;

typedef struct {
    char id[FG_ID_BYTES_MAX + 1];
    int64_t opens, closes, created; /* created: kept by test_sim only */
    int limit, ttl_s;
    bool paused, closed;
    int npools;
    mpool_t pools[4];
} msale_t;

static inline int64_t m_avail(const mpool_t *p) {
    return p->stock - p->held - p->sold;
}

static inline bool m_closed(const msale_t *s, int64_t now) {
    return s->closed || (s->closes != 0 && now >= s->closes);
}

fg_sale_state_t m_state(const msale_t *s, int64_t now);

/* The pool of sale `s` that sells `sku` in `market`, -1 when none. */
int m_pool_of(const msale_t *s, int sku, int market);

/* The first checks of a hold, in the engine's order: quantity, the buyer's market, the SKU in
 * the sale, the offer, the sale's state. FG_OK with *pool set, or the refusal. The caller checks
 * the buyer's limit and the pool's units next. */
fg_err_t m_hold_admit(const msale_t *s, const moffer_t *offer, int buyer_market, int sku,
                      int market, int qty, int64_t now, int *pool);

/* The pool add_stock adds to (market < 0: the sale's only pool of `sku`), checked as the engine
 * does. FG_OK with *pool set, or FG_ERR_INVALID. */
fg_err_t m_stock_pool(const msale_t *s, int sku, int market, int64_t add, int *pool);

/* Sale number `n` in both forms, from layout 0 (A) or 1 (B), its times drawn from `rng` at
 * `now`; `op` gets the command's text. ms->created is left 0. */
void sale_make(rng_t *rng, int n, int layout, int64_t now, fg_sale_row_t *d, msale_t *ms, char *op,
               size_t op_bytes);

/* ---------------------------------------------------------------- engine setup and helpers */

/* Fills an offer of `sku` in `market`; `reason` may be NULL. */
void offer_make(fg_offer_t *o, int sku, int market, bool blocked, int64_t price,
                const char *reason);

/* Puts the four markets and the two products (the phone in two SKUs, the case) into `e`,
 * asserting each succeeds: NMARKETS market records and 2 product records follow. */
void catalog_put(fg_engine_t *e);

/* A buyer's token (its hash, as the engine keeps it), made from the email. */
void token_of(const char *email, uint8_t out[32]);

/* Grows the zero-filled array `p` of `*cap` elements of `size` bytes to hold `need`; aborts the
 * test when memory runs out. The caller owns the result. */
void *grow(void *p, size_t *cap, size_t need, size_t size);

/* The environment variable `name` as a positive number, `dflt` when unset; fails the test when
 * it is not one. */
long env_long(const char *name, long dflt);

/* The environment variable `name` as a seed, `dflt` when unset. */
uint64_t env_seed(const char *name, uint64_t dflt);

/* Seconds on the monotonic clock. */
double mono_s(void);

/* Prints, per command, how often each answer came, to stderr. */
void print_outcomes(const long (*outcomes)[NERRS], int nops, const char *const *op_names);

#endif
