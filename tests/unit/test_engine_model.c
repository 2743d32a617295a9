/*
 * test_engine_model.c — the engine against a reference model, on seeded random command sequences.
 *
 * The model is deliberately naive: plain arrays of pools (stock, held, sold), holds (state,
 * expiry), orders and per-buyer counters, with every rule of engine.h written out again in the
 * most direct way. A seeded PRNG (splitmix64) drives ~50 buyers in four markets (DE, FR, IN and
 * US, where the phone is blocked, "not certified") through holds, releases, orders (instant and
 * webhook), payment verdicts, ticks and clock jumps, while an operator pauses, resumes, adds
 * stock, blocks offers and closes sales (a closed sale is replaced by a new one). Stock is small
 * and the limit is 2, so sell-outs, limits and expiries happen all the time.
 *
 * After every step the engine's answer, its change records (kind, id and state, as a multiset),
 * every pool's counters, every sale's state, the active holds and the next expiry must equal the
 * model's, and fg_engine_check must pass. Every RESTORE_EVERY steps the change records gathered so
 * far (the ledger's view) are restored into a fresh engine, which must equal the live one; the
 * run then goes on with the restored engine, as a restarted server would.
 *
 * FG_SEED=n replays a seed, FG_MODEL_STEPS=n sets the length. The seed is printed at the start,
 * in every failure message, and when an engine assertion aborts the process, with the command
 * that replays the run up to the failing step:
 *   FG_SEED=n FG_MODEL_STEPS=m build/tests/test_engine_model --filter '*random_commands'
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "model_support.h"

#define STEPS_DEFAULT 100000L
#define RESTORE_EVERY 10000L
#define SEED_DEFAULT 0x5eedf100d5a1e5ULL
#define BUYERS_START 50
#define BUYERS_MAX 160
#define SALES_MAX 900 /* below FG_SALES_MAX: the run stops replacing sales there */
#define OP_TEXT 200

/* ---------------------------------------------------------------- the model */

typedef struct {
    uint64_t id;
    int market;
    char email[32];
} mbuyer_t;

typedef struct {
    uint64_t id, buyer, order;
    int sale, pool, market, qty, state;
    long apos; /* index in the active list, -1 when not active */
    int64_t expires;
} mhold_t;

typedef struct {
    uint64_t id, hold;
    int state;
    int64_t total;
    int market;
} morder_t;

/* An expected or actual change record, reduced to what the model knows. */
typedef struct {
    int kind;
    uint64_t id;
    int state;
} rec_t;

typedef struct {
    moffer_t offers[NSKUS][NMARKETS];
    msale_t *sales;
    int nsales;
    int slot[2]; /* the two sales that are traded; closed ones get replaced */
    mbuyer_t buyers[BUYERS_MAX];
    int nbuyers;
    int32_t *cnt_held, *cnt_bought; /* [buyer id][sale] */
    mhold_t *holds;                 /* index id - 1 */
    size_t nholds, capholds;
    morder_t *orders; /* index id - 1 */
    size_t norders, caporders;
    size_t *active; /* indexes of active holds */
    size_t nactive, capactive;
    rec_t *exp; /* change records the current step must emit */
    size_t nexp, capexp;
    int64_t now;
} model_t;

/* ---------------------------------------------------------------- the ledger's view */

/* Keeps what a ledger keeps of the change records: catalog puts in order (pointers into the
 * engine that emitted them, which stays alive until the end of the run), and the last row of
 * each sale, buyer, hold and order. */
typedef struct {
    fg_change_t *cat;
    size_t ncat, capcat;
    fg_sale_row_t *sales; /* by sale index */
    int nsales;
    fg_buyer_row_t buyers[BUYERS_MAX + 1];
    uint64_t max_buyer;
    fg_hold_row_t *holds; /* by id */
    fg_order_row_t *orders;
    size_t caprows;
    uint64_t max_hold, max_order;
} ledger_t;

/* ---------------------------------------------------------------- the run */

enum { OP_HOLD, OP_RELEASE, OP_ORDER, OP_PAY, OP_TICK, OP_ADVANCE, OP_PAUSE, OP_RESUME,
       OP_STOCK, OP_CLOSE, OP_OFFER, OP_REGISTER, OP_NEWSALE, NOPS };
static const char *const OP_NAMES[NOPS] = {"hold",    "release", "order", "payment", "tick",
                                           "advance", "pause",   "resume", "add_stock", "close",
                                           "offer",   "register", "new_sale"};

typedef struct {
    uint64_t seed;
    long steps, step;
    rng_t rng;
    char op[OP_TEXT];
    char recent[RECENT_OPS][OP_TEXT + 40];
    fg_engine_t *e;
    fg_engine_t *retired[64]; /* engines replaced by a restore; the ledger points into them */
    int nretired;
    model_t m;
    ledger_t l;
    long outcomes[NOPS][NERRS];
    long expired_by_tick, restores;
    bool have_last_pay;
    uint64_t last_pay_order;
    bool last_pay_ok;
} run_t;

static run_t *g_run; /* for the abort handler */

static void run_dump_recent(const run_t *r) {
    dump_recent((const char *)r->recent, sizeof r->recent[0], r->step, r->op, r->m.now);
}

static void on_abort(int sig) {
    if (g_run != NULL) {
        fprintf(stderr,
                "\nengine assertion aborted the model test: seed=%llu step=%ld op=[%s]\n"
                "  replay: FG_SEED=%llu FG_MODEL_STEPS=%ld test_engine_model "
                "--filter '*random_commands'\n",
                (unsigned long long)g_run->seed, g_run->step, g_run->op,
                (unsigned long long)g_run->seed, g_run->step + 1);
        run_dump_recent(g_run);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Fails the test with the seed, the step, the command and the recent commands. */
static void diverge(const run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diverge(const run_t *r, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    run_dump_recent(r);
    cr_assert_fail("engine and model diverge: seed=%llu step=%ld op=[%s]\n  %s\n"
                   "  replay: FG_SEED=%llu FG_MODEL_STEPS=%ld test_engine_model "
                   "--filter '*random_commands'",
                   (unsigned long long)r->seed, r->step, r->op, msg,
                   (unsigned long long)r->seed, r->step + 1);
}

/* ---------------------------------------------------------------- model rules */

static void expect_rec(model_t *m, int kind, uint64_t id, int state) {
    m->exp = grow(m->exp, &m->capexp, m->nexp + 1, sizeof *m->exp);
    m->exp[m->nexp++] = (rec_t){kind, id, state};
}

static int32_t *cnt(int32_t *a, uint64_t buyer, int sale) {
    return &a[buyer * SALES_MAX + (uint64_t)sale];
}

static void m_activate(model_t *m, mhold_t *h) {
    m->active = grow(m->active, &m->capactive, m->nactive + 1, sizeof *m->active);
    h->apos = (long)m->nactive;
    m->active[m->nactive++] = (size_t)(h->id - 1);
}

static void m_deactivate(model_t *m, mhold_t *h) {
    size_t i = (size_t)h->apos;
    m->active[i] = m->active[--m->nactive];
    m->holds[m->active[i]].apos = (long)i;
    h->apos = -1;
}

/* An active hold's units go back to available. */
static void m_units_return(model_t *m, mhold_t *h, int end_state) {
    m_deactivate(m, h);
    m->sales[h->sale].pools[h->pool].held -= h->qty;
    *cnt(m->cnt_held, h->buyer, h->sale) -= h->qty;
    h->state = end_state;
}

static void m_units_sell(model_t *m, mhold_t *h) {
    m_deactivate(m, h);
    m->sales[h->sale].pools[h->pool].held -= h->qty;
    m->sales[h->sale].pools[h->pool].sold += h->qty;
    *cnt(m->cnt_held, h->buyer, h->sale) -= h->qty;
    *cnt(m->cnt_bought, h->buyer, h->sale) += h->qty;
}

static void m_expire(model_t *m, mhold_t *h) {
    m_units_return(m, h, FG_HOLD_EXPIRED);
    expect_rec(m, FG_CH_HOLD, h->id, FG_HOLD_EXPIRED);
    if (h->order != 0 && m->orders[h->order - 1].state == FG_ORDER_PENDING_PAYMENT) {
        m->orders[h->order - 1].state = FG_ORDER_CANCELLED;
        expect_rec(m, FG_CH_ORDER, h->order, FG_ORDER_CANCELLED);
    }
}

static void m_expire_if_due(model_t *m, mhold_t *h) {
    if (h->apos >= 0 && h->expires <= m->now) m_expire(m, h);
}

static fg_err_t m_hold(model_t *m, int si, uint64_t buyer, int sku, int market, int qty,
                       uint64_t *id) {
    if (si < 0) return FG_ERR_NOT_FOUND;
    msale_t *s = &m->sales[si];
    int pool;
    fg_err_t err = m_hold_admit(s, &m->offers[sku][market], m->buyers[buyer - 1].market, sku,
                                market, qty, m->now, &pool);
    if (err != FG_OK) return err;
    if (*cnt(m->cnt_held, buyer, si) + *cnt(m->cnt_bought, buyer, si) + qty > s->limit)
        return FG_ERR_LIMIT_REACHED;
    if (m_avail(&s->pools[pool]) < qty) return FG_ERR_SOLD_OUT;
    m->holds = grow(m->holds, &m->capholds, m->nholds + 1, sizeof *m->holds);
    mhold_t *h = &m->holds[m->nholds++];
    *h = (mhold_t){.id = m->nholds, .buyer = buyer, .sale = si, .pool = pool, .market = market,
                   .qty = qty, .state = FG_HOLD_HELD, .apos = -1,
                   .expires = m->now + (int64_t)s->ttl_s * 1000};
    m_activate(m, h);
    s->pools[pool].held += qty;
    *cnt(m->cnt_held, buyer, si) += qty;
    expect_rec(m, FG_CH_HOLD, h->id, FG_HOLD_HELD);
    *id = h->id;
    return FG_OK;
}

/* The buyer's hold, brought up to date; NULL with *err when the call must be refused. */
static mhold_t *m_active_hold(model_t *m, uint64_t buyer, uint64_t hold_id, fg_err_t *err) {
    if (hold_id < 1 || hold_id > m->nholds || m->holds[hold_id - 1].buyer != buyer) {
        *err = FG_ERR_NOT_FOUND;
        return NULL;
    }
    mhold_t *h = &m->holds[hold_id - 1];
    m_expire_if_due(m, h);
    *err = h->state == FG_HOLD_EXPIRED ? FG_ERR_HOLD_EXPIRED
           : h->state != FG_HOLD_HELD  ? FG_ERR_HOLD_NOT_ACTIVE
                                       : FG_OK;
    return *err == FG_OK ? h : NULL;
}

static fg_err_t m_release(model_t *m, uint64_t buyer, uint64_t hold_id) {
    fg_err_t err;
    mhold_t *h = m_active_hold(m, buyer, hold_id, &err);
    if (h == NULL) return err;
    m_units_return(m, h, FG_HOLD_RELEASED);
    expect_rec(m, FG_CH_HOLD, h->id, FG_HOLD_RELEASED);
    return FG_OK;
}

static fg_err_t m_order(model_t *m, uint64_t buyer, uint64_t hold_id, const char *country,
                        fg_pay_method_t method, uint64_t *order_id) {
    fg_err_t err;
    mhold_t *h = m_active_hold(m, buyer, hold_id, &err);
    if (h == NULL) return err;
    const msale_t *s = &m->sales[h->sale];
    if (m_closed(s, m->now)) return FG_ERR_SALE_NOT_OPEN;
    if (strcmp(country, MARKETS[h->market]) != 0) return FG_ERR_INVALID;
    const moffer_t *o = &m->offers[s->pools[h->pool].sku][h->market];
    if (!o->exists || o->blocked) return FG_ERR_NOT_OFFERED;
    m->orders = grow(m->orders, &m->caporders, m->norders + 1, sizeof *m->orders);
    morder_t *od = &m->orders[m->norders++];
    *od = (morder_t){.id = m->norders, .hold = h->id, .total = o->price * h->qty,
                     .market = h->market,
                     .state = method == FG_PAY_INSTANT ? FG_ORDER_PAID
                                                       : FG_ORDER_PENDING_PAYMENT};
    h->state = FG_HOLD_ORDERED;
    h->order = od->id;
    if (method == FG_PAY_INSTANT) m_units_sell(m, h);
    expect_rec(m, FG_CH_HOLD, h->id, FG_HOLD_ORDERED);
    expect_rec(m, FG_CH_ORDER, od->id, od->state);
    *order_id = od->id;
    return FG_OK;
}

static fg_err_t m_payment(model_t *m, uint64_t order_id, bool ok) {
    if (order_id < 1 || order_id > m->norders) return FG_ERR_NOT_FOUND;
    morder_t *o = &m->orders[order_id - 1];
    mhold_t *h = &m->holds[o->hold - 1];
    m_expire_if_due(m, h);
    if (o->state == FG_ORDER_PAID && ok) return FG_OK;
    if (o->state == FG_ORDER_CANCELLED && !ok) return FG_OK;
    if (o->state != FG_ORDER_PENDING_PAYMENT)
        return h->state == FG_HOLD_EXPIRED ? FG_ERR_HOLD_EXPIRED : FG_ERR_HOLD_NOT_ACTIVE;
    if (ok) {
        m_units_sell(m, h);
        o->state = FG_ORDER_PAID;
    } else {
        m_units_return(m, h, FG_HOLD_RELEASED);
        o->state = FG_ORDER_CANCELLED;
    }
    expect_rec(m, FG_CH_HOLD, h->id, h->state);
    expect_rec(m, FG_CH_ORDER, o->id, o->state);
    return FG_OK;
}

static int m_tick(model_t *m) {
    int n = 0;
    for (size_t i = 0; i < m->nactive;) {
        mhold_t *h = &m->holds[m->active[i]];
        if (h->expires <= m->now) {
            m_expire(m, h); /* moves the last active hold into slot i */
            n++;
        } else {
            i++;
        }
    }
    return n;
}

/* Sale pause/resume/close: refused only when the operator closed the sale (a sale closed by
 * its clock can still be paused). */
static fg_err_t m_flags(model_t *m, int si, int paused, bool close) {
    if (si < 0) return FG_ERR_NOT_FOUND;
    msale_t *s = &m->sales[si];
    if (s->closed) return FG_ERR_SALE_NOT_OPEN;
    if (paused >= 0) s->paused = paused != 0;
    if (close) s->closed = true;
    expect_rec(m, FG_CH_SALE, (uint64_t)si, 0);
    return FG_OK;
}

static fg_err_t m_add_stock(model_t *m, int si, int sku, int market, int64_t add) {
    if (si < 0) return FG_ERR_NOT_FOUND;
    msale_t *s = &m->sales[si];
    int pool;
    fg_err_t err = m_stock_pool(s, sku, market, add, &pool);
    if (err != FG_OK) return err;
    s->pools[pool].stock += add;
    expect_rec(m, FG_CH_SALE, (uint64_t)si, 0);
    return FG_OK;
}

/* ---------------------------------------------------------------- engine <-> model */

/* Creates sale number m->nsales in both, from one of two layouts (sale_make). */
static void new_sale(run_t *r, int layout) {
    model_t *m = &r->m;
    cr_assert_lt(m->nsales, SALES_MAX);
    fg_sale_row_t d;
    msale_t ms;
    sale_make(&r->rng, m->nsales, layout, m->now, &d, &ms, r->op, sizeof r->op);
    fg_err_t got = fg_engine_sale_create(r->e, &d, m->now);
    if (got != FG_OK) diverge(r, "sale_create: engine %s (%s), model OK", err_name(got),
                              fg_engine_detail(r->e));
    m->sales[m->nsales] = ms;
    expect_rec(m, FG_CH_SALE, (uint64_t)m->nsales, 0);
    m->slot[layout] = m->nsales++;
}

static void put_offer(run_t *r, int sku, int market, bool blocked, int64_t price,
                      const char *reason) {
    fg_offer_t o;
    offer_make(&o, sku, market, blocked, price, reason);
    bool created;
    fg_err_t got = fg_engine_offer_put(r->e, &o, &created);
    if (got != FG_OK) diverge(r, "offer_put: engine %s, model OK", err_name(got));
    r->m.offers[sku][market] = (moffer_t){.exists = true, .blocked = blocked, .price = price};
    expect_rec(&r->m, FG_CH_OFFER, 0, 0);
}

/* ---------------------------------------------------------------- ledger */

static int sale_index_of(const run_t *r, const char *id) {
    char *end = NULL;
    long v = strtol(id + 1, &end, 10);
    if (id[0] != 's' || *end != '\0' || v < 0 || v >= r->m.nsales)
        diverge(r, "change record names an unknown sale \"%s\"", id);
    return (int)v;
}

static void ledger_keep(run_t *r, const fg_change_t *c) {
    ledger_t *l = &r->l;
    switch ((fg_change_kind_t)c->kind) {
    case FG_CH_MARKET:
    case FG_CH_PRODUCT:
    case FG_CH_OFFER:
        l->cat = grow(l->cat, &l->capcat, l->ncat + 1, sizeof *l->cat);
        l->cat[l->ncat++] = *c;
        break;
    case FG_CH_SALE: {
        int si = sale_index_of(r, c->u.sale->id);
        l->sales[si] = *c->u.sale;
        if (si >= l->nsales) l->nsales = si + 1;
        break;
    }
    case FG_CH_BUYER:
        cr_assert_leq(c->u.buyer->id, BUYERS_MAX);
        l->buyers[c->u.buyer->id] = *c->u.buyer;
        if (c->u.buyer->id > l->max_buyer) l->max_buyer = c->u.buyer->id;
        break;
    case FG_CH_HOLD:
    case FG_CH_ORDER: {
        uint64_t id = c->kind == FG_CH_HOLD ? c->u.hold.id : c->u.order.id;
        size_t cap = l->caprows;
        l->holds = grow(l->holds, &cap, id + 1, sizeof *l->holds);
        cap = l->caprows;
        l->orders = grow(l->orders, &cap, id + 1, sizeof *l->orders);
        l->caprows = cap;
        if (c->kind == FG_CH_HOLD) {
            l->holds[id] = c->u.hold;
            if (id > l->max_hold) l->max_hold = id;
        } else {
            l->orders[id] = c->u.order;
            if (id > l->max_order) l->max_order = id;
        }
        break;
    }
    case FG_CH_IDEM:
    case FG_CH_WEBHOOK:
    case FG_CH_PRUNE:
        diverge(r, "unexpected change record kind %d", c->kind);
    }
}

static fg_product_t product_clone(const fg_product_t *src) {
    fg_product_t p = *src;
    p.specs_json = src->specs_json ? strdup(src->specs_json) : NULL;
    p.skus = calloc((size_t)src->sku_count, sizeof *p.skus);
    cr_assert_not_null(p.skus);
    for (int i = 0; i < src->sku_count; i++) {
        p.skus[i] = src->skus[i];
        if (src->skus[i].attributes_json)
            p.skus[i].attributes_json = strdup(src->skus[i].attributes_json);
    }
    return p;
}

#define RESTORE_OK(r, b, call, what, id)                                                     \
    do {                                                                                      \
        fg_err_t err_ = (call);                                                               \
        if (err_ != FG_OK)                                                                    \
            diverge((r), "restoring %s %llu: %s (%s)", (what), (unsigned long long)(id),      \
                    err_name(err_), fg_engine_detail(b));                                     \
    } while (0)

/* A fresh engine rebuilt from the ledger, the way the server starts. */
static fg_engine_t *ledger_restore(run_t *r) {
    const ledger_t *l = &r->l;
    fg_engine_t *b = fg_engine_new();
    cr_assert_not_null(b);
    fg_engine_set_restoring(b, true);
    bool created;
    for (size_t i = 0; i < l->ncat; i++) {
        const fg_change_t *c = &l->cat[i];
        if (c->kind == FG_CH_MARKET) {
            RESTORE_OK(r, b, fg_engine_market_put(b, c->u.market, &created), "market", i);
        } else if (c->kind == FG_CH_PRODUCT) {
            fg_product_t p = product_clone(c->u.product);
            RESTORE_OK(r, b, fg_engine_product_put(b, &p, &created), "product", i);
        } else {
            RESTORE_OK(r, b, fg_engine_offer_put(b, c->u.offer, &created), "offer", i);
        }
    }
    for (int i = 0; i < l->nsales; i++)
        RESTORE_OK(r, b, fg_engine_restore_sale(b, &l->sales[i]), "sale", (unsigned)i);
    for (uint64_t id = 1; id <= l->max_buyer; id++)
        if (l->buyers[id].id)
            RESTORE_OK(r, b, fg_engine_restore_buyer(b, &l->buyers[id]), "buyer", id);
    for (uint64_t id = 1; id <= l->max_hold; id++)
        if (l->holds[id].id)
            RESTORE_OK(r, b, fg_engine_restore_hold(b, &l->holds[id]), "hold", id);
    for (uint64_t id = 1; id <= l->max_order; id++) {
        if (l->orders[id].id == 0) continue;
        fg_order_row_t row = l->orders[id];
        row.shipping_json = strdup(row.shipping_json);
        RESTORE_OK(r, b, fg_engine_restore_order(b, &row), "order", id);
    }
    fg_engine_set_restoring(b, false);
    MEQ(r, "change records made while restoring", fg_engine_pending_changes(b), 0);
    fg_engine_check(b);
    return b;
}

/* ---------------------------------------------------------------- comparisons */

static void compare_sales(run_t *r, const fg_engine_t *e) {
    const model_t *m = &r->m;
    MEQ(r, "sale count", fg_engine_sale_count(e), m->nsales);
    for (int si = 0; si < m->nsales; si++) {
        const fg_sale_t *s = fg_engine_sale_at(e, si);
        const msale_t *ms = &m->sales[si];
        for (int p = 0; p < ms->npools; p++) {
            MEQF(r, s->def.pools[p].stock, ms->pools[p].stock, "sale %s pool %d stock", ms->id, p);
            MEQF(r, s->held[p], ms->pools[p].held, "sale %s pool %d held", ms->id, p);
            MEQF(r, s->sold[p], ms->pools[p].sold, "sale %s pool %d sold", ms->id, p);
            MEQF(r, fg_pool_available(s, p), m_avail(&ms->pools[p]), "sale %s pool %d available",
                 ms->id, p);
        }
        fg_sale_state_t got = fg_engine_sale_state(s, m->now), want = m_state(ms, m->now);
        if (got != want)
            diverge(r, "sale %s state: engine %s, model %s", ms->id, fg_sale_state_name(got),
                    fg_sale_state_name(want));
    }
    MEQ(r, "active holds", fg_engine_active_holds(e), m->nactive);
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < m->nactive; i++)
        if (m->holds[m->active[i]].expires < next) next = m->holds[m->active[i]].expires;
    MEQ(r, "next expiry", fg_engine_next_expiry_ms(e), next);
    MEQ(r, "order count", fg_engine_order_count(e), m->norders);
    MEQ(r, "buyer count", fg_engine_buyer_count(e), m->nbuyers);
}

static void compare_hold(run_t *r, const fg_engine_t *e, const mhold_t *mh) {
    const fg_hold_t *h = fg_engine_hold_get(e, mh->buyer, mh->id);
    if (h == NULL) diverge(r, "hold %llu: engine has none", (unsigned long long)mh->id);
    MEQF(r, h->state, mh->state, "hold %llu state", (unsigned long long)mh->id);
    MEQF(r, h->heap_pos >= 0, mh->apos >= 0, "hold %llu active", (unsigned long long)mh->id);
    MEQF(r, h->expires_at_ms, mh->expires, "hold %llu expires_at_ms", (unsigned long long)mh->id);
    MEQF(r, h->order_id, mh->order, "hold %llu order_id", (unsigned long long)mh->id);
    MEQF(r, h->quantity, mh->qty, "hold %llu quantity", (unsigned long long)mh->id);
}

static void compare_order(run_t *r, const fg_engine_t *e, const morder_t *mo) {
    const fg_order_t *o = fg_engine_order_get(e, 0, mo->id);
    if (o == NULL) diverge(r, "order %llu: engine has none", (unsigned long long)mo->id);
    MEQF(r, o->row.state, mo->state, "order %llu state", (unsigned long long)mo->id);
    MEQF(r, o->row.total_minor, mo->total, "order %llu total_minor", (unsigned long long)mo->id);
    MEQF(r, o->row.hold_id, mo->hold, "order %llu hold_id", (unsigned long long)mo->id);
    if (strcmp(o->row.currency, CURRENCIES[mo->market]) != 0)
        diverge(r, "order %llu currency: engine %s, model %s", (unsigned long long)mo->id,
                o->row.currency, CURRENCIES[mo->market]);
}

/* Everything the model knows, hold by hold and order by order (for restore checkpoints). */
static void compare_all(run_t *r, const fg_engine_t *e) {
    compare_sales(r, e);
    for (size_t i = 0; i < r->m.nholds; i++) compare_hold(r, e, &r->m.holds[i]);
    for (size_t i = 0; i < r->m.norders; i++) compare_order(r, e, &r->m.orders[i]);
    for (int i = 0; i < r->m.nbuyers; i++) {
        const mbuyer_t *b = &r->m.buyers[i];
        uint8_t tok[32];
        token_of(b->email, tok);
        MEQ(r, "buyer market", fg_engine_buyer_market(e, b->id), fg_mcode(MARKETS[b->market]));
        MEQ(r, "buyer auth", fg_engine_buyer_auth(e, b->id, tok), FG_OK);
    }
}

/* What the model does not track, compared between the live and the restored engine. */
static void compare_engines(run_t *r, const fg_engine_t *a, const fg_engine_t *b) {
    for (int si = 0; si < r->m.nsales; si++) {
        const fg_sale_t *sa = fg_engine_sale_at(a, si), *sb = fg_engine_sale_at(b, si);
        MEQ(r, "restored sale paused", sb->def.paused, sa->def.paused);
        MEQ(r, "restored sale closed", sb->def.closed, sa->def.closed);
        MEQF(r, sb->holds_total, sa->holds_total, "restored sale %s holds_total", sa->def.id);
        MEQF(r, sb->orders_total, sa->orders_total, "restored sale %s orders_total", sa->def.id);
        MEQF(r, sb->expired_total, sa->expired_total, "restored sale %s expired_total", sa->def.id);
        MEQF(r, sb->buyers_total, sa->buyers_total, "restored sale %s buyers_total", sa->def.id);
        /* released_total is not compared: a failed payment ends a hold RELEASED without
         * counting it live, restore counts it (test_engine.c restore_counts_released_...). */
    }
    for (size_t i = 0; i < r->m.nholds; i++) {
        const mhold_t *mh = &r->m.holds[i];
        const fg_hold_t *ha = fg_engine_hold_get(a, mh->buyer, mh->id);
        const fg_hold_t *hb = fg_engine_hold_get(b, mh->buyer, mh->id);
        MEQF(r, hb->ended_at_ms, ha->ended_at_ms, "restored hold %llu ended_at_ms",
             (unsigned long long)mh->id);
        MEQF(r, hb->created_at_ms, ha->created_at_ms, "restored hold %llu created_at_ms",
                 (unsigned long long)mh->id);
    }
    for (size_t i = 0; i < r->m.norders; i++) {
        const fg_order_t *oa = fg_engine_order_get(a, 0, i + 1);
        const fg_order_t *ob = fg_engine_order_get(b, 0, i + 1);
        if (strcmp(oa->row.shipping_json, ob->row.shipping_json) != 0)
            diverge(r, "restored order %zu shipping_json: \"%s\", live \"%s\"", i + 1,
                    ob->row.shipping_json, oa->row.shipping_json);
        MEQ(r, "restored order updated_at_ms", ob->row.updated_at_ms, oa->row.updated_at_ms);
    }
    for (uint64_t bid = 1; bid <= (uint64_t)r->m.nbuyers; bid++) {
        const fg_order_t *oa = fg_engine_buyer_orders(a, bid), *ob = fg_engine_buyer_orders(b, bid);
        for (; oa != NULL && ob != NULL; oa = oa->next_of_buyer, ob = ob->next_of_buyer)
            MEQ(r, "restored buyer's order list", ob->row.id, oa->row.id);
        if (oa != ob)
            diverge(r, "buyer %llu's order lists differ in length", (unsigned long long)bid);
    }
}

static int rec_cmp(const void *pa, const void *pb) {
    const rec_t *a = pa, *b = pb;
    if (a->kind != b->kind) return a->kind < b->kind ? -1 : 1;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return (a->state > b->state) - (a->state < b->state);
}

static void recs_text(const rec_t *v, size_t n, char *out, size_t cap) {
    static const char *const kinds[] = {"MARKET", "PRODUCT", "OFFER",   "SALE", "BUYER",
                                        "HOLD",   "ORDER",   "IDEM",    "WEBHOOK", "PRUNE"};
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len + 40 < cap; i++) {
        unsigned k = (unsigned)v[i].kind;
        len += (size_t)snprintf(out + len, cap - len, "%s%s(%llu,%d)", i ? " " : "",
                                k < sizeof kinds / sizeof kinds[0] ? kinds[k] : "?",
                                (unsigned long long)v[i].id, v[i].state);
    }
}

/* The step's change records must be the model's (as a multiset); then the ledger keeps them. */
static void check_changes(run_t *r) {
    fg_change_t *c = NULL;
    size_t n = fg_engine_take_changes(r->e, &c);
    rec_t *got = calloc(n + 1, sizeof *got);
    cr_assert_not_null(got);
    for (size_t i = 0; i < n; i++) {
        got[i].kind = c[i].kind;
        switch ((fg_change_kind_t)c[i].kind) {
        case FG_CH_HOLD:
            got[i].id = c[i].u.hold.id;
            got[i].state = c[i].u.hold.state;
            break;
        case FG_CH_ORDER:
            got[i].id = c[i].u.order.id;
            got[i].state = c[i].u.order.state;
            break;
        case FG_CH_SALE: got[i].id = (uint64_t)sale_index_of(r, c[i].u.sale->id); break;
        case FG_CH_BUYER: got[i].id = c[i].u.buyer->id; break;
        default: break;
        }
    }
    model_t *m = &r->m;
    qsort(got, n, sizeof *got, rec_cmp);
    qsort(m->exp, m->nexp, sizeof *m->exp, rec_cmp);
    bool same = n == m->nexp;
    for (size_t i = 0; same && i < n; i++) same = rec_cmp(&got[i], &m->exp[i]) == 0;
    if (!same) {
        char a[1024], b[1024];
        recs_text(got, n, a, sizeof a);
        recs_text(m->exp, m->nexp, b, sizeof b);
        diverge(r, "change records: engine [%s], model [%s]", a, b);
    }
    free(got);
    m->nexp = 0;
    for (size_t i = 0; i < n; i++) {
        ledger_keep(r, &c[i]);
        fg_change_release(&c[i]);
    }
    free(c);
}

/* ---------------------------------------------------------------- commands */

/* A sale to act on: mostly one of the two traded, sometimes any (often closed), rarely none. */
static int pick_sale(run_t *r) { return pick_sale_of(&r->rng, r->m.nsales, r->m.slot); }

static const char *sale_name(const run_t *r, int si) { return si < 0 ? "nope" : r->m.sales[si].id; }

static uint64_t pick_buyer(run_t *r) { return (uint64_t)rng_below(&r->rng, r->m.nbuyers) + 1; }

/* True when an active hold can no longer be ordered: its sale closed or its offer was blocked. */
static bool m_stuck(const model_t *m, const mhold_t *h) {
    const msale_t *s = &m->sales[h->sale];
    const moffer_t *o = &m->offers[s->pools[h->pool].sku][h->market];
    return h->state == FG_HOLD_HELD && (m_closed(s, m->now) || !o->exists || o->blocked);
}

/* A hold id for release and order: sometimes a stuck one (the rare paths of an order), often
 * one that is still active in the model, otherwise as pick_id. */
static uint64_t pick_hold(run_t *r, int stuck_pct, int active_pct) {
    const model_t *m = &r->m;
    int x = rng_below(&r->rng, 100);
    if (x < stuck_pct) {
        for (size_t i = 0; i < m->nactive; i++)
            if (m_stuck(m, &m->holds[m->active[i]])) return m->holds[m->active[i]].id;
    } else if (m->nactive > 0 && x < stuck_pct + active_pct) {
        return m->holds[m->active[rng_below(&r->rng, (int)m->nactive)]].id;
    }
    return pick_id(&r->rng, m->nholds);
}

static void expect_code(run_t *r, int op, fg_err_t got, fg_err_t want) {
    if (got != want)
        diverge(r, "answer: engine %s (detail \"%s\"), model %s", err_name(got),
                fg_engine_detail(r->e), err_name(want));
    r->outcomes[op][got]++;
}

static void cmd_hold(run_t *r) {
    model_t *m = &r->m;
    int si = pick_sale(r);
    uint64_t b = pick_buyer(r);
    int market = m->buyers[b - 1].market, sku, qty;
    draw_hold(&r->rng, &market, &sku, &qty);
    snprintf(r->op, sizeof r->op, "hold buyer=%llu(%s) sale=%s sku=%s market=%s qty=%d",
             (unsigned long long)b, MARKETS[m->buyers[b - 1].market], sale_name(r, si),
             SKUS[sku], MARKETS[market], qty);
    const fg_hold_t *h = NULL;
    fg_err_t got = fg_engine_hold(r->e, b, sale_name(r, si), SKUS[sku],
                                  fg_mcode(MARKETS[market]), qty, m->now, &h);
    uint64_t id = 0;
    fg_err_t want = m_hold(m, si, b, sku, market, qty, &id);
    expect_code(r, OP_HOLD, got, want);
    if (got == FG_OK) {
        MEQ(r, "new hold id", h->id, id);
        compare_hold(r, r->e, &m->holds[id - 1]);
        MEQ(r, "new hold pool", h->pool_index, m->holds[id - 1].pool);
    }
}

static void cmd_release(run_t *r) {
    model_t *m = &r->m;
    uint64_t id = pick_hold(r, 0, 20);
    uint64_t b = id <= m->nholds && rng_below(&r->rng, 100) < 92 ? m->holds[id - 1].buyer
                                                                 : pick_buyer(r);
    snprintf(r->op, sizeof r->op, "release buyer=%llu hold=%llu", (unsigned long long)b,
             (unsigned long long)id);
    const fg_hold_t *h = NULL;
    fg_err_t got = fg_engine_hold_release(r->e, b, id, m->now, &h);
    expect_code(r, OP_RELEASE, got, m_release(m, b, id));
    if (id <= m->nholds) compare_hold(r, r->e, &m->holds[id - 1]);
}

static void cmd_order(run_t *r) {
    model_t *m = &r->m;
    uint64_t id = pick_hold(r, 20, 30);
    bool known = id <= m->nholds;
    uint64_t b = known && rng_below(&r->rng, 100) < 92 ? m->holds[id - 1].buyer : pick_buyer(r);
    const char *country = draw_country(&r->rng, known ? MARKETS[m->holds[id - 1].market] : "DE");
    fg_pay_method_t method = rng_below(&r->rng, 2) ? FG_PAY_WEBHOOK : FG_PAY_INSTANT;
    char ship[64];
    snprintf(ship, sizeof ship, "{\"buyer\":%llu,\"country\":\"%s\"}", (unsigned long long)b,
             country);
    snprintf(r->op, sizeof r->op, "order buyer=%llu hold=%llu country=%s method=%s",
             (unsigned long long)b, (unsigned long long)id, country,
             method == FG_PAY_INSTANT ? "instant" : "webhook");
    const fg_order_t *o = NULL;
    fg_err_t got = fg_engine_order(r->e, b, id, ship, country, method, m->now, &o);
    uint64_t oid = 0;
    expect_code(r, OP_ORDER, got, m_order(m, b, id, country, method, &oid));
    if (known) compare_hold(r, r->e, &m->holds[id - 1]);
    if (got == FG_OK) {
        MEQ(r, "new order id", o->row.id, oid);
        compare_order(r, r->e, &m->orders[oid - 1]);
        if (strcmp(o->row.shipping_json, ship) != 0)
            diverge(r, "order shipping_json: engine \"%s\", sent \"%s\"", o->row.shipping_json,
                    ship);
    }
}

static void cmd_payment(run_t *r) {
    model_t *m = &r->m;
    uint64_t id;
    bool ok;
    if (r->have_last_pay && rng_below(&r->rng, 100) < 20) {
        id = r->last_pay_order; /* the provider sends its verdict again */
        ok = r->last_pay_ok;
    } else {
        id = pick_id(&r->rng, m->norders);
        ok = rng_below(&r->rng, 100) < 70;
    }
    r->have_last_pay = true;
    r->last_pay_order = id;
    r->last_pay_ok = ok;
    snprintf(r->op, sizeof r->op, "payment order=%llu %s", (unsigned long long)id,
             ok ? "succeeded" : "failed");
    const fg_order_t *o = NULL;
    fg_err_t got = fg_engine_payment(r->e, id, ok, m->now, &o);
    expect_code(r, OP_PAY, got, m_payment(m, id, ok));
    if (id <= m->norders) {
        compare_order(r, r->e, &m->orders[id - 1]);
        compare_hold(r, r->e, &m->holds[m->orders[id - 1].hold - 1]);
    }
}

static void cmd_tick(run_t *r) {
    snprintf(r->op, sizeof r->op, "tick");
    int got = fg_engine_tick(r->e, r->m.now);
    int want = m_tick(&r->m);
    MEQ(r, "holds ended by tick", got, want);
    r->expired_by_tick += got;
    r->outcomes[OP_TICK][FG_OK]++;
}

/* A random active hold still in HELD state, or NULL. */
static const mhold_t *pick_held(run_t *r) {
    const model_t *m = &r->m;
    if (m->nactive == 0) return NULL;
    const mhold_t *h = &m->holds[m->active[rng_below(&r->rng, (int)m->nactive)]];
    return h->state == FG_HOLD_HELD ? h : NULL;
}

static void cmd_flags(run_t *r, int op) {
    int si = rng_below(&r->rng, 100) < 90 ? r->m.slot[rng_below(&r->rng, 2)] : pick_sale(r);
    /* An operator closing a sale usually meets buyers who still hold units in it. */
    const mhold_t *held = op == OP_CLOSE && rng_below(&r->rng, 100) < 80 ? pick_held(r) : NULL;
    if (held != NULL) si = held->sale;
    snprintf(r->op, sizeof r->op, "%s sale=%s", OP_NAMES[op], sale_name(r, si));
    const char *id = sale_name(r, si);
    fg_err_t got = op == OP_PAUSE    ? fg_engine_sale_pause(r->e, id, r->m.now)
                   : op == OP_RESUME ? fg_engine_sale_resume(r->e, id, r->m.now)
                                     : fg_engine_sale_close(r->e, id, r->m.now);
    fg_err_t want = m_flags(&r->m, si, op == OP_PAUSE ? 1 : op == OP_RESUME ? 0 : -1,
                            op == OP_CLOSE);
    expect_code(r, op, got, want);
}

static void cmd_add_stock(run_t *r) {
    model_t *m = &r->m;
    int si = rng_below(&r->rng, 100) < 90 ? m->slot[rng_below(&r->rng, 2)] : pick_sale(r);
    int sku, market;
    int64_t add;
    draw_stock(&r->rng, &sku, &market, &add);
    snprintf(r->op, sizeof r->op, "add_stock sale=%s sku=%s market=%s add=%lld",
             sale_name(r, si), SKUS[sku], market < 0 ? "(none)" : MARKETS[market],
             (long long)add);
    fg_err_t got = fg_engine_sale_add_stock(r->e, sale_name(r, si), SKUS[sku],
                                            market < 0 ? NULL : MARKETS[market], add, m->now);
    expect_code(r, OP_STOCK, got, m_add_stock(m, si, sku, market, add));
}

/* Changes one of three offers: a blocked one is offered again; an offered one gets a new price,
 * or (one time in three) is blocked. */
static void cmd_offer(run_t *r) {
    static const int which[3][2] = {{K_BLK, M_FR}, {K_WHT, M_DE}, {K_BLK, M_IN}};
    int pick = rng_below(&r->rng, 3);
    /* Half the time, the offer of a hold someone still has (if it is one of the three). */
    const mhold_t *held = rng_below(&r->rng, 2) ? pick_held(r) : NULL;
    for (int i = 0; held != NULL && i < 3; i++)
        if (which[i][0] == r->m.sales[held->sale].pools[held->pool].sku &&
            which[i][1] == held->market)
            pick = i;
    const int *w = which[pick];
    const moffer_t *o = &r->m.offers[w[0]][w[1]];
    bool block = !o->blocked && (held != NULL || rng_below(&r->rng, 3) == 0);
    int64_t price = 50000 + 100 * rng_below(&r->rng, 500);
    snprintf(r->op, sizeof r->op, "offer %s/%s %s", SKUS[w[0]], MARKETS[w[1]],
             block ? "blocked (legal hold)" : "priced");
    put_offer(r, w[0], w[1], block, block ? 0 : price, block ? "legal hold" : NULL);
    r->outcomes[OP_OFFER][FG_OK]++;
}

static void cmd_register(run_t *r) {
    model_t *m = &r->m;
    int x = rng_below(&r->rng, 100);
    char email[32];
    const char *market;
    int mk = rng_below(&r->rng, NMARKETS);
    fg_err_t want;
    if (x < 50 && m->nbuyers < BUYERS_MAX) {
        snprintf(email, sizeof email, "late%d@example.org", m->nbuyers + 1);
        market = MARKETS[mk];
        want = FG_OK;
    } else if (x < 85) {
        snprintf(email, sizeof email, "%s", m->buyers[rng_below(&r->rng, m->nbuyers)].email);
        market = MARKETS[mk];
        want = FG_ERR_BUYER_EXISTS;
    } else {
        snprintf(email, sizeof email, "jp%d@example.org", rng_below(&r->rng, 1000));
        market = "JP";
        want = FG_ERR_INVALID;
    }
    snprintf(r->op, sizeof r->op, "register %s %s", email, market);
    uint8_t tok[32];
    token_of(email, tok);
    uint64_t id = 0;
    fg_err_t got = fg_engine_buyer_register(r->e, email, market, tok, m->now, &id);
    expect_code(r, OP_REGISTER, got, want);
    if (got == FG_OK) {
        mbuyer_t *b = &m->buyers[m->nbuyers++];
        b->id = (uint64_t)m->nbuyers;
        b->market = mk;
        snprintf(b->email, sizeof b->email, "%s", email);
        MEQ(r, "new buyer id", id, b->id);
        expect_rec(m, FG_CH_BUYER, b->id, 0);
    }
}

/* Replaces a traded sale that has closed; otherwise just ticks. */
static void cmd_new_sale(run_t *r) {
    model_t *m = &r->m;
    for (int slot = 0; slot < 2; slot++) {
        if (m->nsales < SALES_MAX && m_closed(&m->sales[m->slot[slot]], m->now)) {
            new_sale(r, slot);
            r->outcomes[OP_NEWSALE][FG_OK]++;
            return;
        }
    }
    cmd_tick(r);
}

static void step(run_t *r) {
    int x = rng_below(&r->rng, 10000);
    if (x < 3800) cmd_hold(r);
    else if (x < 4500) cmd_release(r);
    else if (x < 6500) cmd_order(r);
    else if (x < 7600) cmd_payment(r);
    else if (x < 8300) cmd_tick(r);
    else if (x < 9500) {
        /* Mostly to a whole second 0 to 15 s on, so that the clock lands exactly on expiry,
         * opening and closing times (all whole seconds); sometimes a few milliseconds. */
        int64_t k = rng_below(&r->rng, 16);
        int64_t dt = rng_below(&r->rng, 100) >= 80 ? 1 + rng_below(&r->rng, 999)
                     : k == 0                      ? 0
                                                   : (r->m.now / 1000 + k) * 1000 - r->m.now;
        r->m.now += dt;
        snprintf(r->op, sizeof r->op, "advance %lld ms", (long long)dt);
        r->outcomes[OP_ADVANCE][FG_OK]++;
    } else if (x < 9530) cmd_flags(r, OP_PAUSE);
    else if (x < 9650) cmd_flags(r, OP_RESUME);
    else if (x < 9780) cmd_add_stock(r);
    else if (x < 9792) cmd_flags(r, OP_CLOSE);
    else if (x < 9886) cmd_offer(r);
    else if (x < 9926) cmd_register(r);
    else cmd_new_sale(r);
}

/* ---------------------------------------------------------------- setup and the run */

static void world_setup(run_t *r) {
    model_t *m = &r->m;
    m->now = T0 - 10000;
    m->sales = calloc(SALES_MAX, sizeof *m->sales);
    m->cnt_held = calloc((BUYERS_MAX + 1) * (size_t)SALES_MAX, sizeof *m->cnt_held);
    m->cnt_bought = calloc((BUYERS_MAX + 1) * (size_t)SALES_MAX, sizeof *m->cnt_bought);
    r->l.sales = calloc(SALES_MAX, sizeof *r->l.sales);
    cr_assert(m->sales && m->cnt_held && m->cnt_bought && r->l.sales);
    r->e = fg_engine_new();
    cr_assert_not_null(r->e);
    snprintf(r->op, sizeof r->op, "setup");
    catalog_put(r->e);
    for (int i = 0; i < NMARKETS; i++) expect_rec(m, FG_CH_MARKET, 0, 0);
    for (int i = 0; i < 2; i++) expect_rec(m, FG_CH_PRODUCT, 0, 0);
    for (int i = 0; i < OFFER_SEEDS; i++) {
        const offer_seed_t *o = &OFFER_SEED[i];
        put_offer(r, o->sku, o->market, o->blocked, o->price, o->reason);
    }
    new_sale(r, 0);
    new_sale(r, 1);
    for (int i = 0; i < BUYERS_START; i++) {
        mbuyer_t *b = &m->buyers[m->nbuyers++];
        b->market = BUYER_MIX[i % 20];
        snprintf(b->email, sizeof b->email, "buyer%d@example.org", i + 1);
        uint8_t tok[32];
        token_of(b->email, tok);
        cr_assert_eq(fg_engine_buyer_register(r->e, b->email, MARKETS[b->market], tok, m->now,
                                              &b->id),
                     FG_OK);
        cr_assert_eq(b->id, (uint64_t)m->nbuyers);
        expect_rec(m, FG_CH_BUYER, b->id, 0);
    }
    check_changes(r);
}

/* Rebuilds the engine from the ledger, compares it with the live one and the model, and goes on
 * with the rebuilt one (the live one stays alive: the ledger's catalog rows point into it). */
static void restore_checkpoint(run_t *r) {
    snprintf(r->op, sizeof r->op, "restore checkpoint");
    fg_engine_t *b = ledger_restore(r);
    compare_all(r, r->e);
    compare_all(r, b);
    compare_engines(r, r->e, b);
    cr_assert_lt(r->nretired, 64);
    r->retired[r->nretired++] = r->e;
    r->e = b;
    r->restores++;
}

static void run_free(run_t *r) {
    fg_engine_free(r->e);
    for (int i = 0; i < r->nretired; i++) fg_engine_free(r->retired[i]);
    free(r->m.sales);
    free(r->m.cnt_held);
    free(r->m.cnt_bought);
    free(r->m.holds);
    free(r->m.orders);
    free(r->m.active);
    free(r->m.exp);
    free(r->l.cat);
    free(r->l.sales);
    free(r->l.holds);
    free(r->l.orders);
}

/* Every outcome the generator is meant to reach must have happened, or the run tested less
 * than it claims. Only asserted on runs long enough to make each one near certain. */
static void expect_coverage(const run_t *r) {
    static const struct {
        int op;
        fg_err_t err;
    } need[] = {
        {OP_HOLD, FG_OK},                  {OP_HOLD, FG_ERR_NOT_FOUND},
        {OP_HOLD, FG_ERR_INVALID},         {OP_HOLD, FG_ERR_SOLD_OUT},
        {OP_HOLD, FG_ERR_SALE_NOT_OPEN},   {OP_HOLD, FG_ERR_LIMIT_REACHED},
        {OP_HOLD, FG_ERR_NOT_OFFERED},     {OP_RELEASE, FG_OK},
        {OP_RELEASE, FG_ERR_NOT_FOUND},    {OP_RELEASE, FG_ERR_HOLD_EXPIRED},
        {OP_RELEASE, FG_ERR_HOLD_NOT_ACTIVE}, {OP_ORDER, FG_OK},
        {OP_ORDER, FG_ERR_NOT_FOUND},      {OP_ORDER, FG_ERR_INVALID},
        {OP_ORDER, FG_ERR_SALE_NOT_OPEN},  {OP_ORDER, FG_ERR_NOT_OFFERED},
        {OP_ORDER, FG_ERR_HOLD_EXPIRED},   {OP_ORDER, FG_ERR_HOLD_NOT_ACTIVE},
        {OP_PAY, FG_OK},                   {OP_PAY, FG_ERR_NOT_FOUND},
        {OP_PAY, FG_ERR_HOLD_EXPIRED},     {OP_PAY, FG_ERR_HOLD_NOT_ACTIVE},
        {OP_STOCK, FG_OK},                 {OP_STOCK, FG_ERR_INVALID},
        {OP_PAUSE, FG_OK},                 {OP_RESUME, FG_ERR_SALE_NOT_OPEN},
        {OP_CLOSE, FG_OK},                 {OP_NEWSALE, FG_OK},
        {OP_REGISTER, FG_OK},              {OP_REGISTER, FG_ERR_BUYER_EXISTS},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        cr_assert_gt(r->outcomes[need[i].op][need[i].err], 0,
                     "seed=%llu: in %ld steps no %s answered %s; the generator misses a case",
                     (unsigned long long)r->seed, r->steps, OP_NAMES[need[i].op],
                     err_name(need[i].err));
    cr_assert_gt(r->expired_by_tick, 0, "seed=%llu: no hold expired by tick",
                 (unsigned long long)r->seed);
}

static void run_model(uint64_t seed, long steps) {
    run_t *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->seed = seed;
    r->steps = steps;
    r->rng.s = seed;
    g_run = r;
    signal(SIGABRT, on_abort);
    fprintf(stderr, "engine model: seed=%llu steps=%ld (replay: FG_SEED=%llu FG_MODEL_STEPS=%ld "
                    "test_engine_model --filter '*random_commands')\n",
            (unsigned long long)seed, steps, (unsigned long long)seed, steps);
    double t0 = mono_s();
    world_setup(r);
    for (r->step = 0; r->step < steps; r->step++) {
        step(r);
        snprintf(r->recent[r->step % RECENT_OPS], sizeof r->recent[0], "%s (now=T0%+lld)", r->op,
                 (long long)(r->m.now - T0));
        check_changes(r);
        compare_sales(r, r->e);
        fg_engine_check(r->e);
        if ((r->step + 1) % RESTORE_EVERY == 0) restore_checkpoint(r);
    }
    double secs = mono_s() - t0;
    fprintf(stderr, "engine model: seed=%llu steps=%ld in %.2f s: %zu holds, %zu orders, %d sales, "
                    "%ld expired by tick, %ld restores\n",
            (unsigned long long)seed, steps, secs, r->m.nholds, r->m.norders, r->m.nsales,
            r->expired_by_tick, r->restores);
    print_outcomes((const long (*)[NERRS])r->outcomes, NOPS, OP_NAMES);
    if (steps >= 20000) expect_coverage(r);
    g_run = NULL;
    signal(SIGABRT, SIG_DFL);
    run_free(r);
    free(r);
}

Test(engine_model, engine_matches_model_on_random_commands, .timeout = 600) {
    run_model(env_seed("FG_SEED", SEED_DEFAULT), env_long("FG_MODEL_STEPS", STEPS_DEFAULT));
}

/* A new seed each run (from the clock, printed), so runs explore beyond the fixed seed. */
Test(engine_model, engine_matches_model_on_a_fresh_seed, .timeout = 600) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^ 0xa5a5a5a5ULL;
    run_model(env_seed("FG_SEED", seed), env_long("FG_MODEL_STEPS", STEPS_DEFAULT) / 4);
}
