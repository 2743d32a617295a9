/*
 * test_sim.c — deterministic simulation: the engine and a real ledger driven by a seeded
 * simulator through batches, client retries, clock jumps and crashes, and checked against a
 * reference model after every step. docs/simulation.md explains it at length.
 *
 * The simulator plays the writer (src/engine/writer.c) by hand, on one thread. It applies client
 * commands to the engine one by one as the writer's apply() does: the buyer's token, then the
 * idempotency gate (fg_engine_idem_lookup), then the command, then storing a 2xx answer that
 * changed something (fg_engine_idem_store) in the same batch. At a batch boundary it does what
 * the writer's loop does with group commit: the batch handed over last time finishes its commit
 * to a real SQLite ledger in a temporary directory (its keys are marked committed, its answers
 * acknowledged: I3), and the batch gathered since is handed over in turn, so a key stays "in
 * flight" (409) while the next batch gathers. About 120 buyers in four markets (DE, FR, IN, and
 * US where the phone is blocked) hold, release, order (instant or webhook payment), register,
 * and resend requests under the same Idempotency-Key with the same and with another request
 * (I5); the payment provider sends signed callbacks, some again; an operator pauses, resumes,
 * closes, adds stock (with admin-scoped keys), blocks offers and replaces closed sales. The clock
 * moves only when the simulator moves it: mostly by seconds, sometimes by minutes, now and then
 * by more than a day (half of those to the millisecond where the oldest stored answer expires).
 * The wall clock is never read.
 *
 * At a batch boundary the process may crash instead, in one of five ways:
 *   boundary       the pending batch committed, then the process died: the gathering batch is
 *                  lost, the engine abandoned, the ledger closed and reopened;
 *   before_commit  the process died before COMMIT: both batches are lost;
 *   mid_commit     a child process writes part of the pending batch inside the transaction and
 *                  dies there (an assertion on a poisoned change aborts it): nothing survives;
 *   after_commit   a child process commits the pending batch and dies before answering or
 *                  closing the database (WAL not checkpointed): the batch is durable although no
 *                  client heard of it, so the model adopts it and the clients' retries replay it;
 *   commit_fails   the ledger refuses a change in the middle of the transaction (its own row
 *                  check, or SQLite's UNIQUE constraint): the writer's failed-commit path, both
 *                  batches answered 503, the engine rebuilt from the same, still open, ledger.
 * After each crash the engine is rebuilt with fg_engine_load and must equal the model's
 * acknowledged state: every pool, sale (and its statistics), offer, buyer, hold and order field,
 * per-buyer counts and order lists, and every idempotency key (stored answers replay byte for
 * byte, another request under the key is refused, lost and expired keys are new again);
 * fg_engine_check must pass.
 *
 * The model is plain arrays, written again from engine.h's rules. It changes only through an
 * undo log, split where the pending batch ends, so a crash rolls it back exactly to what was
 * acknowledged; the clock and what clients remember (their requests and keys) are not rolled
 * back. After every step the answer (status and body), whether the engine changed, the touched
 * hold and order, the traded sales, active holds and next expiry must equal the model's; after
 * every expiry pass, the keys on both sides of the 24 h line; at every batch end,
 * fg_engine_check; every FULL_CHECK_EVERY commits, everything. After SALES_CAP sales the run
 * goes on with a fresh ledger (an epoch), so runs of any length stay within the engine's limits.
 *
 * FG_SIM_SEED=n replays a seed, FG_SIM_STEPS=n sets the length (the generator does not depend
 * on the length, so a run cut at step+1 replays a failure), FG_SIM_DIR=dir puts the ledger
 * elsewhere (default /dev/shm, where fsync is cheap). The seed and the replay command are printed
 * at the start, in every failure and when an engine or ledger assertion aborts the process.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/writer.h"
#include "ledger/ledger.h"
#include "model_support.h"

#define STEPS_DEFAULT 200000L
#define SEED_DEFAULT 0xf100d6a7e5eedULL
#define BUYERS_START 120
#define BUYERS_MAX 400          /* distinct emails ever registered in one epoch */
#define SALES_CAP 250           /* sales per epoch; then the run goes on with a fresh ledger */
#define OP_TEXT 240
#define BODY_BYTES 192
#define RETRY_SPAN 300          /* retries pick mostly among the newest requests */
#define FULL_CHECK_EVERY 64     /* commits between full comparisons of the live engine */
#define REPLAY_CMD "build/tests/test_sim --filter 'sim/acknowledged_state_survives_crashes'"

static const char *const IDEM_NAMES[] = {"new", "replay", "in_flight", "mismatch", "unknown"};

/* The HTTP status the API gives an engine answer (api/common.c). */
static int status_of(fg_err_t err, int ok_status) {
    switch (err) {
    case FG_OK: return ok_status;
    case FG_ERR_NOT_FOUND: return 404;
    case FG_ERR_INVALID: return 400;
    case FG_ERR_LIMIT_REACHED:
    case FG_ERR_NOT_OFFERED: return 403;
    case FG_ERR_UNAUTHORIZED: return 401;
    case FG_ERR_CAPACITY: return 503;
    case FG_ERR_SOLD_OUT:
    case FG_ERR_SALE_NOT_OPEN:
    case FG_ERR_HOLD_EXPIRED:
    case FG_ERR_HOLD_NOT_ACTIVE:
    case FG_ERR_BUYER_EXISTS: return 409;
    }
    return 500;
}

/* ---------------------------------------------------------------- PRNG (splitmix64) */

static int64_t rng_range(rng_t *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* FNV-1a, for fingerprints and the run's digest. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV0 0xcbf29ce484222325ULL

/* ---------------------------------------------------------------- the model */

typedef struct {
    uint64_t id;
    int market;
    char email[40];
} mbuyer_t;

typedef struct {
    uint64_t id, buyer, order;
    int sale, pool, market, qty, state;
    bool active;   /* units held: HELD, or ORDERED with payment pending */
    long apos;     /* index in the active list, -1 when not active (rebuilt after a rollback) */
    int64_t created, expires, ended;
} mhold_t;

typedef struct {
    uint64_t id, hold, buyer;
    int sale, state, method, market, qty;
    int64_t total, created, updated;
    char ship[64];
} morder_t;

typedef struct {
    int32_t held, bought;
} mcnt_t;

enum { I_NONE, I_INFLIGHT, I_STORED };

/* What the server keeps for one Idempotency-Key (the clients' request number `idx`). */
typedef struct {
    uint8_t state;
    uint64_t fp;
    int status;
    int64_t created;
    long restart; /* the restart count when stored: a replay across a crash is counted */
    char body[BODY_BYTES];
} midem_t;

/* The counts that batches grow; a rollback restores them from `acked`. */
typedef struct {
    int nsales, slot[2], nbuyers;
    size_t nholds, norders, fifo_head, fifo_len;
} mscal_t;

enum { U_SALE, U_OFFER, U_CNT, U_HOLD, U_ORDER, U_IDEM, U_HOOK };

typedef struct {
    uint8_t t;
    size_t i;
    union {
        msale_t sale;
        moffer_t offer;
        mcnt_t cnt;
        mhold_t hold;
        morder_t order;
        midem_t idem;
        uint8_t used;
    } v;
} undo_t;

typedef struct {
    mscal_t sc, acked;
    moffer_t offers[NSKUS][NMARKETS];
    msale_t *sales;          /* SALES_CAP */
    mbuyer_t buyers[BUYERS_MAX];
    mcnt_t *cnt;             /* [buyer id][sale] */
    mhold_t *holds;          /* index id - 1 */
    size_t capholds;
    morder_t *orders;        /* index id - 1 */
    size_t caporders;
    size_t *active;          /* indexes of active holds */
    size_t nactive, capactive;
    midem_t *idem;           /* by request number */
    size_t capidem;
    size_t *fifo;            /* stored keys in creation order, as the engine forgets them */
    size_t capfifo;
    uint8_t *used;           /* by callback number: the signature was used */
    size_t capused;
    undo_t *undo;
    size_t nundo, capundo;
    size_t *inflight;        /* keys stored and not committed yet, oldest first */
    size_t ninflight, capinflight;
    /* The batch handed to the commit (still committing while the next one gathers) owns the
     * first mark_undo undo entries and mark_inflight keys; mark_sc is the state at its end. */
    size_t mark_undo, mark_inflight;
    mscal_t mark_sc;
    bool changed;            /* the current command changed something */
    long dropped_keys;       /* stored answers forgotten after FG_IDEM_TTL_MS */
    int64_t now;             /* the simulated clock: never rolled back */
    int64_t idem_horizon;    /* answers created before this are forgotten: never rolled back */
} model_t;

/* ---------------------------------------------------------------- what clients remember */

enum { RQ_HOLD, RQ_ORDER, RQ_REGISTER, RQ_PAUSE, RQ_RESUME, RQ_CLOSE, RQ_STOCK };
static const char *const RQ_NAMES[] = {"hold", "order", "register", "pause", "resume", "close",
                                       "add_stock"};

/* A request sent with an Idempotency-Key (the key is "k<number>" in the request's scope). */
typedef struct {
    uint8_t kind;
    uint64_t scope;   /* the buyer; 0 for a registration; FG_IDEM_SCOPE_ADMIN for the operator */
    uint64_t fp;      /* a hash of the request; the fingerprint is made from it */
    int sale, sku, market, qty; /* hold; sale, sku, market (-1: none) for the operator */
    int64_t add;                /* stock to add */
    uint64_t hold;
    char country[3];
    int method;
    char email[40];
    int reg_market;   /* -1: "JP", not a market */
    uint32_t sends;
} mreq_t;

/* A signed payment callback from the provider. */
typedef struct {
    uint64_t order;
    bool ok;
    int64_t t_s;
    uint8_t digest[32];
} mcb_t;

/* ---------------------------------------------------------------- the run */

enum { OP_HOLD, OP_RELEASE, OP_ORDER, OP_PAY, OP_REGISTER, OP_RETRY, OP_TICK, OP_ADVANCE,
       OP_PAUSE, OP_RESUME, OP_STOCK, OP_CLOSE, OP_OFFER, OP_NEWSALE, NOPS };
static const char *const OP_NAMES[NOPS] = {"hold",   "release", "order",  "payment", "register",
                                           "retry",  "tick",    "advance", "pause",  "resume",
                                           "add_stock", "close", "offer",  "new_sale"};

enum { CR_NONE, CR_BOUNDARY, CR_BEFORE_COMMIT, CR_MID_COMMIT, CR_AFTER_COMMIT, CR_COMMIT_FAILS,
       NCRASH };
static const char *const CRASH_NAMES[NCRASH] = {"none",         "boundary",     "before_commit",
                                                "mid_commit",   "after_commit", "commit_fails"};

typedef struct {
    uint64_t seed;
    long steps, step;
    rng_t rng;
    char op[OP_TEXT];
    char recent[RECENT_OPS][OP_TEXT + 40];
    char dir[200];
    char logpath[240];
    fg_ledger_t *ledger;
    fg_engine_t *e;
    model_t m;
    /* clients */
    mreq_t *reqs;
    size_t nreqs, capreqs;
    mcb_t *cbs;
    size_t ncbs, capcbs;
    int late;             /* new emails handed out */
    /* the writer */
    const fg_idem_row_t **recs; /* stored answers of the gathering batch */
    size_t nrecs, caprecs;
    long batch_left, batch_cmds;
    /* the batch handed to the commit thread, committing while the next one gathers */
    fg_change_t *pc;
    size_t pn;
    const fg_idem_row_t **precs; /* its stored answers, marked committed when it commits */
    size_t npr, capprecs;
    long p_cmds;
    int64_t last_expire_ms;
    int touched_sale;
    bool epoch_due;
    bool edge_restart;    /* the clock sits on a stored answer's expiry: restart there */
    int epoch;
    /* what happened */
    long outcomes[NOPS][NERRS];
    long idem[5], admit_refused, replays_across_restart, retried_new, hook_replays, hook_stale;
    long crashes[NCRASH], batches, commits, acked_cmds, lost_cmds, restarts, expired_by_tick;
    long big_jumps, full_checks;
    uint64_t digest;
} run_t;

static run_t *g_run;          /* for the abort handler */
static int g_saved_stderr = -1; /* stderr while engine logs go to a file */

static void run_dump_recent(const run_t *r) {
    dump_recent((const char *)r->recent, sizeof r->recent[0], r->step, r->op, r->m.now);
}

static void on_abort(int sig) {
    if (g_saved_stderr >= 0) dup2(g_saved_stderr, STDERR_FILENO);
    if (g_run != NULL) {
        fprintf(stderr,
                "\nan engine or ledger assertion aborted the simulation: seed=%llu step=%ld "
                "op=[%s] ledger=%s\n  replay: FG_SIM_SEED=%llu FG_SIM_STEPS=%ld " REPLAY_CMD "\n",
                (unsigned long long)g_run->seed, g_run->step, g_run->op, g_run->dir,
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
    cr_assert_fail("simulation and model diverge: seed=%llu step=%ld epoch=%d op=[%s]\n  %s\n"
                   "  ledger kept in %s\n"
                   "  replay: FG_SIM_SEED=%llu FG_SIM_STEPS=%ld " REPLAY_CMD,
                   (unsigned long long)r->seed, r->step, r->epoch, r->op, msg, r->dir,
                   (unsigned long long)r->seed, r->step + 1);
}

static void fold(run_t *r, const void *p, size_t n) { r->digest = fnv(r->digest, p, n); }

/* ---------------------------------------------------------------- model: undo log */

static undo_t *undo_push(model_t *m, int t, size_t i) {
    m->undo = grow(m->undo, &m->capundo, m->nundo + 1, sizeof *m->undo);
    undo_t *u = &m->undo[m->nundo++];
    u->t = (uint8_t)t;
    u->i = i;
    m->changed = true;
    return u;
}

/* Each W_* logs the old value and returns the object to change; every change goes through one,
 * so a rollback restores exactly the acknowledged state. */
static mhold_t *W_hold(model_t *m, size_t i) {
    undo_push(m, U_HOLD, i)->v.hold = m->holds[i];
    return &m->holds[i];
}
static morder_t *W_order(model_t *m, size_t i) {
    undo_push(m, U_ORDER, i)->v.order = m->orders[i];
    return &m->orders[i];
}
static msale_t *W_sale(model_t *m, int si) {
    undo_push(m, U_SALE, (size_t)si)->v.sale = m->sales[si];
    return &m->sales[si];
}
static moffer_t *W_offer(model_t *m, int sku, int market) {
    size_t i = (size_t)sku * NMARKETS + (size_t)market;
    undo_push(m, U_OFFER, i)->v.offer = m->offers[sku][market];
    return &m->offers[sku][market];
}
static mcnt_t *W_cnt(model_t *m, uint64_t buyer, int sale) {
    size_t i = (size_t)buyer * SALES_CAP + (size_t)sale;
    undo_push(m, U_CNT, i)->v.cnt = m->cnt[i];
    return &m->cnt[i];
}
static midem_t *W_idem(model_t *m, size_t key) {
    undo_push(m, U_IDEM, key)->v.idem = m->idem[key];
    return &m->idem[key];
}
static void W_used(model_t *m, size_t cb) {
    undo_push(m, U_HOOK, cb)->v.used = m->used[cb];
    m->used[cb] = 1;
}

static const mcnt_t *cnt_of(const model_t *m, uint64_t buyer, int sale) {
    return &m->cnt[(size_t)buyer * SALES_CAP + (size_t)sale];
}

static void m_rebuild_active(model_t *m) {
    m->nactive = 0;
    for (size_t i = 0; i < m->sc.nholds; i++) {
        mhold_t *h = &m->holds[i];
        h->apos = -1;
        if (!h->active) continue;
        m->active = grow(m->active, &m->capactive, m->nactive + 1, sizeof *m->active);
        h->apos = (long)m->nactive;
        m->active[m->nactive++] = i;
    }
}

static void m_undo_to(model_t *m, size_t keep) {
    for (size_t k = m->nundo; k-- > keep;) {
        const undo_t *u = &m->undo[k];
        switch (u->t) {
        case U_SALE: m->sales[u->i] = u->v.sale; break;
        case U_OFFER: m->offers[u->i / NMARKETS][u->i % NMARKETS] = u->v.offer; break;
        case U_CNT: m->cnt[u->i] = u->v.cnt; break;
        case U_HOLD: m->holds[u->i] = u->v.hold; break;
        case U_ORDER: m->orders[u->i] = u->v.order; break;
        case U_IDEM: m->idem[u->i] = u->v.idem; break;
        case U_HOOK: m->used[u->i] = u->v.used; break;
        }
    }
    m->nundo = keep;
}

/* A crash that loses everything unacknowledged: the batch being committed and the one
 * gathering. */
static void m_rollback(model_t *m) {
    m_undo_to(m, 0);
    m->ninflight = 0;
    m->sc = m->acked;
    m->mark_undo = m->mark_inflight = 0;
    m->mark_sc = m->acked;
    m_rebuild_active(m);
}

/* A crash after the pending batch committed: only the gathering batch is lost. */
static void m_rollback_gather(model_t *m) {
    m_undo_to(m, m->mark_undo);
    m->ninflight = m->mark_inflight;
    m->sc = m->mark_sc;
    m_rebuild_active(m);
}

/* The gathered batch goes to the commit; what follows gathers into the next one. */
static void m_handoff(model_t *m) {
    m->mark_undo = m->nundo;
    m->mark_inflight = m->ninflight;
    m->mark_sc = m->sc;
}

/* The pending batch's commit returned: it is acknowledged, its stored answers replay from now
 * on; the gathering batch's keys stay in flight. */
static void m_commit_pending(model_t *m) {
    for (size_t i = 0; i < m->mark_inflight; i++) {
        midem_t *d = &m->idem[m->inflight[i]];
        cr_assert_eq(d->state, I_INFLIGHT);
        d->state = I_STORED;
    }
    /* (memmove with a NULL array is undefined even for 0 bytes.) */
    if (m->ninflight > m->mark_inflight)
        memmove(m->inflight, m->inflight + m->mark_inflight,
                (m->ninflight - m->mark_inflight) * sizeof *m->inflight);
    m->ninflight -= m->mark_inflight;
    if (m->nundo > m->mark_undo)
        memmove(m->undo, m->undo + m->mark_undo, (m->nundo - m->mark_undo) * sizeof *m->undo);
    m->nundo -= m->mark_undo;
    m->acked = m->mark_sc;
    m->mark_undo = m->mark_inflight = 0;
}

/* ---------------------------------------------------------------- model: rules */

static void m_activate(model_t *m, size_t hi) {
    m->active = grow(m->active, &m->capactive, m->nactive + 1, sizeof *m->active);
    m->holds[hi].apos = (long)m->nactive;
    m->holds[hi].active = true;
    m->active[m->nactive++] = hi;
}

static void m_deactivate(model_t *m, mhold_t *h) {
    size_t i = (size_t)h->apos;
    m->active[i] = m->active[--m->nactive];
    m->holds[m->active[i]].apos = (long)i;
    h->apos = -1;
    h->active = false;
}

/* An active hold's units go back to available; `h` came from W_hold. */
static void m_units_return(model_t *m, mhold_t *h, int end_state) {
    m_deactivate(m, h);
    W_sale(m, h->sale)->pools[h->pool].held -= h->qty;
    W_cnt(m, h->buyer, h->sale)->held -= h->qty;
    h->state = end_state;
    h->ended = m->now;
}

static void m_units_sell(model_t *m, mhold_t *h) {
    m_deactivate(m, h);
    mpool_t *p = &W_sale(m, h->sale)->pools[h->pool];
    p->held -= h->qty;
    p->sold += h->qty;
    mcnt_t *c = W_cnt(m, h->buyer, h->sale);
    c->held -= h->qty;
    c->bought += h->qty;
    if (h->ended == 0) h->ended = m->now;
}

static void m_expire(model_t *m, size_t hi) {
    mhold_t *h = W_hold(m, hi);
    m_units_return(m, h, FG_HOLD_EXPIRED);
    if (h->order != 0 && m->orders[h->order - 1].state == FG_ORDER_PENDING_PAYMENT) {
        morder_t *o = W_order(m, h->order - 1);
        o->state = FG_ORDER_CANCELLED;
        o->updated = m->now;
    }
}

static void m_expire_if_due(model_t *m, size_t hi) {
    if (m->holds[hi].active && m->holds[hi].expires <= m->now) m_expire(m, hi);
}

static fg_err_t m_hold(model_t *m, int si, uint64_t buyer, int sku, int market, int qty,
                       uint64_t *id) {
    /* A retried request may name a sale whose creation was lost in a crash. */
    if (si < 0 || si >= m->sc.nsales) return FG_ERR_NOT_FOUND;
    const msale_t *s = &m->sales[si];
    int pool;
    fg_err_t err = m_hold_admit(s, &m->offers[sku][market], m->buyers[buyer - 1].market, sku,
                                market, qty, m->now, &pool);
    if (err != FG_OK) return err;
    const mcnt_t *c = cnt_of(m, buyer, si);
    if (c->held + c->bought + qty > s->limit) return FG_ERR_LIMIT_REACHED;
    if (m_avail(&s->pools[pool]) < qty) return FG_ERR_SOLD_OUT;
    m->holds = grow(m->holds, &m->capholds, m->sc.nholds + 1, sizeof *m->holds);
    size_t hi = m->sc.nholds++;
    m->holds[hi] = (mhold_t){.id = hi + 1, .buyer = buyer, .sale = si, .pool = pool,
                             .market = market, .qty = qty, .state = FG_HOLD_HELD, .apos = -1,
                             .created = m->now, .expires = m->now + (int64_t)s->ttl_s * 1000};
    m_activate(m, hi);
    W_sale(m, si)->pools[pool].held += qty;
    W_cnt(m, buyer, si)->held += qty;
    *id = hi + 1;
    return FG_OK;
}

/* The buyer's hold, brought up to date; SIZE_MAX with *err when the call must be refused. */
static size_t m_active_hold(model_t *m, uint64_t buyer, uint64_t hold_id, fg_err_t *err) {
    if (hold_id < 1 || hold_id > m->sc.nholds || m->holds[hold_id - 1].buyer != buyer) {
        *err = FG_ERR_NOT_FOUND;
        return SIZE_MAX;
    }
    size_t hi = hold_id - 1;
    m_expire_if_due(m, hi);
    int st = m->holds[hi].state;
    *err = st == FG_HOLD_EXPIRED ? FG_ERR_HOLD_EXPIRED
           : st != FG_HOLD_HELD  ? FG_ERR_HOLD_NOT_ACTIVE
                                 : FG_OK;
    return *err == FG_OK ? hi : SIZE_MAX;
}

static fg_err_t m_release(model_t *m, uint64_t buyer, uint64_t hold_id) {
    fg_err_t err;
    size_t hi = m_active_hold(m, buyer, hold_id, &err);
    if (hi == SIZE_MAX) return err;
    m_units_return(m, W_hold(m, hi), FG_HOLD_RELEASED);
    return FG_OK;
}

static fg_err_t m_order(model_t *m, uint64_t buyer, uint64_t hold_id, const char *country,
                        int method, const char *ship, uint64_t *order_id) {
    fg_err_t err;
    size_t hi = m_active_hold(m, buyer, hold_id, &err);
    if (hi == SIZE_MAX) return err;
    const mhold_t *h0 = &m->holds[hi];
    const msale_t *s = &m->sales[h0->sale];
    if (m_closed(s, m->now)) return FG_ERR_SALE_NOT_OPEN;
    if (strcmp(country, MARKETS[h0->market]) != 0) return FG_ERR_INVALID;
    const moffer_t *o = &m->offers[s->pools[h0->pool].sku][h0->market];
    if (!o->exists || o->blocked) return FG_ERR_NOT_OFFERED;
    m->orders = grow(m->orders, &m->caporders, m->sc.norders + 1, sizeof *m->orders);
    size_t oi = m->sc.norders++;
    morder_t *od = &m->orders[oi];
    *od = (morder_t){.id = oi + 1, .hold = h0->id, .buyer = buyer, .sale = h0->sale,
                     .market = h0->market, .qty = h0->qty, .total = o->price * h0->qty,
                     .method = method, .created = m->now, .updated = m->now,
                     .state = method == FG_PAY_INSTANT ? FG_ORDER_PAID
                                                       : FG_ORDER_PENDING_PAYMENT};
    snprintf(od->ship, sizeof od->ship, "%s", ship);
    mhold_t *h = W_hold(m, hi);
    h->state = FG_HOLD_ORDERED;
    h->order = od->id;
    if (method == FG_PAY_INSTANT) {
        h->ended = m->now;
        m_units_sell(m, h);
    }
    *order_id = od->id;
    return FG_OK;
}

static fg_err_t m_payment(model_t *m, uint64_t order_id, bool ok) {
    if (order_id < 1 || order_id > m->sc.norders) return FG_ERR_NOT_FOUND;
    size_t oi = order_id - 1, hi = m->orders[oi].hold - 1;
    m_expire_if_due(m, hi);
    int st = m->orders[oi].state;
    if (st == FG_ORDER_PAID && ok) return FG_OK;
    if (st == FG_ORDER_CANCELLED && !ok) return FG_OK;
    if (st != FG_ORDER_PENDING_PAYMENT)
        return m->holds[hi].state == FG_HOLD_EXPIRED ? FG_ERR_HOLD_EXPIRED
                                                     : FG_ERR_HOLD_NOT_ACTIVE;
    mhold_t *h = W_hold(m, hi);
    morder_t *o = W_order(m, oi);
    if (ok) {
        m_units_sell(m, h);
        o->state = FG_ORDER_PAID;
    } else {
        m_units_return(m, h, FG_HOLD_RELEASED);
        o->state = FG_ORDER_CANCELLED;
    }
    o->updated = m->now;
    return FG_OK;
}

static int m_tick(model_t *m) {
    int n = 0;
    for (size_t i = 0; i < m->nactive;) {
        size_t hi = m->active[i];
        if (m->holds[hi].expires <= m->now) {
            m_expire(m, hi); /* moves the last active hold into slot i */
            n++;
        } else {
            i++;
        }
    }
    return n;
}

static fg_err_t m_register(model_t *m, const char *email, int market, uint64_t *id) {
    if (market < 0) return FG_ERR_INVALID;
    for (int i = 0; i < m->sc.nbuyers; i++)
        if (strcmp(m->buyers[i].email, email) == 0) return FG_ERR_BUYER_EXISTS;
    cr_assert_lt(m->sc.nbuyers, BUYERS_MAX);
    mbuyer_t *b = &m->buyers[m->sc.nbuyers++];
    b->id = (uint64_t)m->sc.nbuyers;
    b->market = market;
    snprintf(b->email, sizeof b->email, "%s", email);
    m->changed = true;
    *id = b->id;
    return FG_OK;
}

/* Sale pause/resume/close: refused only when the operator closed the sale. */
static fg_err_t m_flags(model_t *m, int si, int paused, bool close) {
    if (si < 0) return FG_ERR_NOT_FOUND;
    if (m->sales[si].closed) return FG_ERR_SALE_NOT_OPEN;
    msale_t *s = W_sale(m, si);
    if (paused >= 0) s->paused = paused != 0;
    if (close) s->closed = true;
    return FG_OK;
}

static fg_err_t m_add_stock(model_t *m, int si, int sku, int market, int64_t add) {
    if (si < 0) return FG_ERR_NOT_FOUND;
    int pool;
    fg_err_t err = m_stock_pool(&m->sales[si], sku, market, add, &pool);
    if (err != FG_OK) return err;
    W_sale(m, si)->pools[pool].stock += add;
    return FG_OK;
}

/* At each pass the engine forgets every committed answer created before now - FG_IDEM_TTL_MS
 * (its horizon); loading from the ledger skips the same ones. */
static void m_idem_expire(model_t *m, int64_t now) {
    if (now - FG_IDEM_TTL_MS > m->idem_horizon) m->idem_horizon = now - FG_IDEM_TTL_MS;
    for (size_t i = m->sc.fifo_head; i < m->sc.fifo_len; i++) {
        size_t k = m->fifo[i];
        const midem_t *d = &m->idem[k];
        if (d->state != I_STORED || d->created >= m->idem_horizon) continue;
        W_idem(m, k)->state = I_NONE;
        m->dropped_keys++;
    }
    while (m->sc.fifo_head < m->sc.fifo_len && m->idem[m->fifo[m->sc.fifo_head]].state == I_NONE)
        m->sc.fifo_head++;
}

/* The state a lookup sees: an answer committed after the pass that passed its horizon is
 * forgotten already, though the next pass frees it. */
static uint8_t m_idem_seen(const model_t *m, size_t k) {
    const midem_t *d = &m->idem[k];
    return d->state == I_STORED && d->created < m->idem_horizon ? I_NONE : d->state;
}

static void m_idem_store(model_t *m, size_t key, uint64_t fp, int status, const char *body,
                         long restart) {
    midem_t *d = W_idem(m, key);
    d->state = I_INFLIGHT;
    d->fp = fp;
    d->status = status;
    d->created = m->now;
    d->restart = restart;
    snprintf(d->body, sizeof d->body, "%s", body);
    m->fifo = grow(m->fifo, &m->capfifo, m->sc.fifo_len + 1, sizeof *m->fifo);
    m->fifo[m->sc.fifo_len++] = key;
    m->inflight = grow(m->inflight, &m->capinflight, m->ninflight + 1, sizeof *m->inflight);
    m->inflight[m->ninflight++] = key;
}

/* ---------------------------------------------------------------- answers */

typedef struct {
    int status;
    char body[BODY_BYTES];
} answer_t;

static void ans_err(answer_t *a, fg_err_t err) {
    a->status = status_of(err, 200);
    snprintf(a->body, sizeof a->body, "{\"code\":\"%s\"}", err_name(err));
}

static void ans_hold(answer_t *a, int status, uint64_t id, int state, int qty, int64_t expires) {
    a->status = status;
    snprintf(a->body, sizeof a->body,
             "{\"id\":\"h_%llu\",\"state\":%d,\"quantity\":%d,\"expires_at_ms\":%lld}",
             (unsigned long long)id, state, qty, (long long)expires);
}

static void ans_order(answer_t *a, int status, uint64_t id, uint64_t hold, int state,
                      int64_t total, const char *currency) {
    a->status = status;
    snprintf(a->body, sizeof a->body,
             "{\"id\":\"o_%llu\",\"hold_id\":\"h_%llu\",\"state\":%d,\"total_minor\":%lld,"
             "\"currency\":\"%s\"}",
             (unsigned long long)id, (unsigned long long)hold, state, (long long)total,
             currency);
}

static void ans_buyer(answer_t *a, int status, uint64_t id, const char *email,
                      const char *market) {
    a->status = status;
    snprintf(a->body, sizeof a->body, "{\"id\":\"b_%llu\",\"email\":\"%s\",\"market\":\"%s\"}",
             (unsigned long long)id, email, market);
}

static void expect_answer(run_t *r, const answer_t *got, const answer_t *want) {
    if (got->status != want->status || strcmp(got->body, want->body) != 0)
        diverge(r, "answer: engine %d %s, model %d %s", got->status, got->body, want->status,
                want->body);
    fold(r, &got->status, sizeof got->status);
    fold(r, got->body, strlen(got->body));
}

static void expect_code(run_t *r, int op, fg_err_t got, fg_err_t want) {
    if (got != want)
        diverge(r, "answer: engine %s (detail \"%s\"), model %s", err_name(got),
                fg_engine_detail(r->e), err_name(want));
    r->outcomes[op][got]++;
}

/* ---------------------------------------------------------------- comparisons */

static const char *sale_name(const run_t *r, int si) { return si < 0 ? "nope" : r->m.sales[si].id; }

static void compare_sale(run_t *r, const fg_engine_t *e, int si) {
    const model_t *m = &r->m;
    const fg_sale_t *s = fg_engine_sale_at(e, si);
    const msale_t *ms = &m->sales[si];
    if (strcmp(s->def.id, ms->id) != 0) diverge(r, "sale %d is %s, model %s", si, s->def.id, ms->id);
    MEQF(r, s->def.pool_count, ms->npools, "sale %s pool count", ms->id);
    for (int p = 0; p < ms->npools; p++) {
        MEQF(r, s->def.pools[p].stock, ms->pools[p].stock, "sale %s pool %d stock", ms->id, p);
        MEQF(r, s->held[p], ms->pools[p].held, "sale %s pool %d held", ms->id, p);
        MEQF(r, s->sold[p], ms->pools[p].sold, "sale %s pool %d sold", ms->id, p);
        MEQF(r, fg_pool_available(s, p), m_avail(&ms->pools[p]), "sale %s pool %d available",
             ms->id, p);
    }
    MEQF(r, s->def.paused, ms->paused, "sale %s paused", ms->id);
    MEQF(r, s->def.closed, ms->closed, "sale %s closed", ms->id);
    MEQF(r, s->def.opens_at_ms, ms->opens, "sale %s opens_at_ms", ms->id);
    MEQF(r, s->def.closes_at_ms, ms->closes, "sale %s closes_at_ms", ms->id);
    MEQF(r, s->def.limit_per_buyer, ms->limit, "sale %s limit", ms->id);
    MEQF(r, s->def.hold_ttl_s, ms->ttl_s, "sale %s hold_ttl_s", ms->id);
    MEQF(r, s->def.created_at_ms, ms->created, "sale %s created_at_ms", ms->id);
    fg_sale_state_t got = fg_engine_sale_state(s, m->now), want = m_state(ms, m->now);
    if (got != want)
        diverge(r, "sale %s state: engine %s, model %s", ms->id, fg_sale_state_name(got),
                fg_sale_state_name(want));
}

/* Counts that are cheap to compare after every step. */
static void compare_counts(run_t *r, const fg_engine_t *e) {
    const model_t *m = &r->m;
    MEQ(r, "sale count", fg_engine_sale_count(e), m->sc.nsales);
    MEQ(r, "active holds", fg_engine_active_holds(e), m->nactive);
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < m->nactive; i++)
        if (m->holds[m->active[i]].expires < next) next = m->holds[m->active[i]].expires;
    MEQ(r, "next expiry", fg_engine_next_expiry_ms(e), next);
    MEQ(r, "order count", fg_engine_order_count(e), m->sc.norders);
    MEQ(r, "buyer count", fg_engine_buyer_count(e), m->sc.nbuyers);
}

static void compare_hold(run_t *r, const fg_engine_t *e, size_t hi) {
    const mhold_t *mh = &r->m.holds[hi];
    unsigned long long id = (unsigned long long)mh->id;
    const fg_hold_t *h = fg_engine_hold_get(e, mh->buyer, mh->id);
    if (h == NULL) diverge(r, "hold %llu of buyer %llu: engine has none", id,
                           (unsigned long long)mh->buyer);
    MEQF(r, h->state, mh->state, "hold %llu state", id);
    MEQF(r, h->heap_pos >= 0, mh->active, "hold %llu active", id);
    MEQF(r, h->sale_index, mh->sale, "hold %llu sale", id);
    MEQF(r, h->pool_index, mh->pool, "hold %llu pool", id);
    MEQF(r, h->market, fg_mcode(MARKETS[mh->market]), "hold %llu market", id);
    MEQF(r, h->quantity, mh->qty, "hold %llu quantity", id);
    MEQF(r, h->created_at_ms, mh->created, "hold %llu created_at_ms", id);
    MEQF(r, h->expires_at_ms, mh->expires, "hold %llu expires_at_ms", id);
    MEQF(r, h->ended_at_ms, mh->ended, "hold %llu ended_at_ms", id);
    MEQF(r, h->order_id, mh->order, "hold %llu order_id", id);
}

static void compare_order(run_t *r, const fg_engine_t *e, size_t oi) {
    const morder_t *mo = &r->m.orders[oi];
    unsigned long long id = (unsigned long long)mo->id;
    const fg_order_t *o = fg_engine_order_get(e, mo->buyer, mo->id);
    if (o == NULL) diverge(r, "order %llu of buyer %llu: engine has none", id,
                           (unsigned long long)mo->buyer);
    const fg_order_row_t *w = &o->row;
    MEQF(r, w->state, mo->state, "order %llu state", id);
    MEQF(r, w->hold_id, mo->hold, "order %llu hold_id", id);
    MEQF(r, w->method, mo->method, "order %llu method", id);
    MEQF(r, w->market, fg_mcode(MARKETS[mo->market]), "order %llu market", id);
    MEQF(r, w->quantity, mo->qty, "order %llu quantity", id);
    MEQF(r, w->total_minor, mo->total, "order %llu total_minor", id);
    MEQF(r, w->created_at_ms, mo->created, "order %llu created_at_ms", id);
    MEQF(r, w->updated_at_ms, mo->updated, "order %llu updated_at_ms", id);
    const msale_t *s = &r->m.sales[mo->sale];
    const char *sku = SKUS[s->pools[r->m.holds[mo->hold - 1].pool].sku];
    if (strcmp(w->sale_id, s->id) != 0 || strcmp(w->sku, sku) != 0 ||
        strcmp(w->currency, CURRENCIES[mo->market]) != 0 ||
        strcmp(w->shipping_json, mo->ship) != 0)
        diverge(r, "order %llu: engine sale=%s sku=%s currency=%s shipping=%s, model %s %s %s %s",
                id, w->sale_id, w->sku, w->currency, w->shipping_json, s->id, sku,
                CURRENCIES[mo->market], mo->ship);
}

static void fp_bytes(uint64_t fp, uint8_t out[32]) {
    rng_t g = {fp};
    for (int i = 0; i < 4; i++) {
        uint64_t v = rng_next(&g);
        memcpy(out + 8 * i, &v, 8);
    }
}

static void key_text(size_t key, char out[24]) { snprintf(out, 24, "k%zu", key); }

/* What the engine must say about key `k`: a stored answer replays byte for byte, another request
 * under the key is refused, a key the model does not hold is new. */
static void compare_key(run_t *r, fg_engine_t *e, size_t k) {
    const mreq_t *q = &r->reqs[k];
    const midem_t *d = &r->m.idem[k];
    char key[24];
    uint8_t fp[32];
    key_text(k, key);
    uint8_t seen = m_idem_seen(&r->m, k);
    fp_bytes(seen != I_NONE ? d->fp : q->fp, fp);
    const fg_idem_row_t *rec = NULL;
    fg_idem_result_t got = fg_engine_idem_lookup(e, q->scope, key, fp, &rec);
    fg_idem_result_t want = seen == I_NONE       ? FG_IDEM_NEW
                            : seen == I_INFLIGHT ? FG_IDEM_IN_FLIGHT
                                                     : FG_IDEM_REPLAY;
    if (got != want)
        diverge(r, "key %s (scope %llu): engine %s, model %s", key, (unsigned long long)q->scope,
                IDEM_NAMES[got], IDEM_NAMES[want]);
    if (got == FG_IDEM_REPLAY &&
        (rec->status != d->status || strcmp(rec->body, d->body) != 0 ||
         rec->created_at_ms != d->created))
        diverge(r, "key %s stored answer: engine %d %s (at %lld), model %d %s (at %lld)", key,
                rec->status, rec->body, (long long)rec->created_at_ms, d->status, d->body,
                (long long)d->created);
    fp[0] ^= 0x5a; /* another request under the same key */
    got = fg_engine_idem_lookup(e, q->scope, key, fp, &rec);
    want = seen == I_NONE ? FG_IDEM_NEW : FG_IDEM_MISMATCH;
    if (got != want)
        diverge(r, "key %s with another request: engine %s, model %s", key, IDEM_NAMES[got],
                IDEM_NAMES[want]);
}

/* Per-buyer counts (held and bought per sale, I2) and order lists, recounted from the engine's
 * holds and orders. */
static void compare_buyers(run_t *r, const fg_engine_t *e) {
    const model_t *m = &r->m;
    size_t n = (size_t)(BUYERS_MAX + 1) * SALES_CAP;
    mcnt_t *c = calloc(n, sizeof *c);
    cr_assert_not_null(c);
    for (size_t hi = 0; hi < m->sc.nholds; hi++) {
        const mhold_t *mh = &m->holds[hi];
        const fg_hold_t *h = fg_engine_hold_get(e, mh->buyer, mh->id);
        mcnt_t *x = &c[(size_t)h->buyer_id * SALES_CAP + h->sale_index];
        if (h->heap_pos >= 0) x->held += h->quantity;
        const fg_order_t *o = h->order_id ? fg_engine_order_get(e, 0, h->order_id) : NULL;
        if (o != NULL && o->row.state == FG_ORDER_PAID) x->bought += h->quantity;
    }
    for (size_t i = 0; i < n; i++) {
        if (c[i].held == m->cnt[i].held && c[i].bought == m->cnt[i].bought) continue;
        diverge(r, "buyer %zu in sale %zu: engine held %d bought %d, model held %d bought %d",
                i / SALES_CAP, i % SALES_CAP, c[i].held, c[i].bought, m->cnt[i].held,
                m->cnt[i].bought);
    }
    free(c);
    for (int b = 0; b < m->sc.nbuyers; b++) {
        const mbuyer_t *mb = &m->buyers[b];
        uint8_t tok[32];
        token_of(mb->email, tok);
        MEQF(r, fg_engine_buyer_market(e, mb->id), fg_mcode(MARKETS[mb->market]),
             "buyer %llu market", (unsigned long long)mb->id);
        MEQF(r, fg_engine_buyer_auth(e, mb->id, tok), FG_OK, "buyer %llu token",
             (unsigned long long)mb->id);
        /* The buyer's orders, newest first. */
        const fg_order_t *o = fg_engine_buyer_orders(e, mb->id);
        for (size_t oi = m->sc.norders; oi-- > 0;) {
            if (m->orders[oi].buyer != mb->id) continue;
            if (o == NULL) diverge(r, "buyer %llu's order list lacks order %zu",
                                   (unsigned long long)mb->id, oi + 1);
            MEQF(r, o->row.id, oi + 1, "buyer %llu's order list", (unsigned long long)mb->id);
            o = o->next_of_buyer;
        }
        if (o != NULL) diverge(r, "buyer %llu's order list has an extra order %llu",
                               (unsigned long long)mb->id, (unsigned long long)o->row.id);
    }
}

/* A sale's statistics (the admin API and /metrics show them), recounted from the model: live and
 * rebuilt engines must count the same. */
static void compare_stats(run_t *r, const fg_engine_t *e) {
    const model_t *m = &r->m;
    typedef struct {
        long holds, orders, expired, released, buyers;
    } stats_t;
    stats_t *st = calloc((size_t)m->sc.nsales + 1, sizeof *st);
    cr_assert_not_null(st);
    for (size_t i = 0; i < m->sc.nholds; i++) {
        const mhold_t *h = &m->holds[i];
        st[h->sale].holds++;
        st[h->sale].expired += h->state == FG_HOLD_EXPIRED;
        st[h->sale].released += h->state == FG_HOLD_RELEASED;
    }
    for (size_t i = 0; i < m->sc.norders; i++) st[m->orders[i].sale].orders++;
    /* Distinct buyers with a hold: a (buyer, sale) pair is counted at its first hold. */
    uint8_t *seen = calloc((size_t)(BUYERS_MAX + 1) * SALES_CAP, 1);
    cr_assert_not_null(seen);
    for (size_t i = 0; i < m->sc.nholds; i++) {
        const mhold_t *h = &m->holds[i];
        uint8_t *x = &seen[(size_t)h->buyer * SALES_CAP + (size_t)h->sale];
        st[h->sale].buyers += !*x;
        *x = 1;
    }
    free(seen);
    for (int si = 0; si < m->sc.nsales; si++) {
        const fg_sale_t *s = fg_engine_sale_at(e, si);
        const char *id = m->sales[si].id;
        MEQF(r, s->holds_total, st[si].holds, "sale %s holds_total", id);
        MEQF(r, s->orders_total, st[si].orders, "sale %s orders_total", id);
        MEQF(r, s->expired_total, st[si].expired, "sale %s expired_total", id);
        MEQF(r, s->released_total, st[si].released, "sale %s released_total", id);
        MEQF(r, s->buyers_total, st[si].buyers, "sale %s buyers_total", id);
    }
    free(st);
}

/* Everything the model knows; after a restart, what the ledger must have given back. */
static void compare_all(run_t *r, fg_engine_t *e) {
    const model_t *m = &r->m;
    r->full_checks++;
    compare_counts(r, e);
    for (int si = 0; si < m->sc.nsales; si++) compare_sale(r, e, si);
    for (int k = 0; k < NSKUS; k++) {
        for (int mk = 0; mk < NMARKETS; mk++) {
            const moffer_t *mo = &m->offers[k][mk];
            const fg_offer_t *o = fg_engine_offer_get(e, SKUS[k], MARKETS[mk]);
            MEQF(r, o != NULL, mo->exists, "offer %s/%s exists", SKUS[k], MARKETS[mk]);
            if (o == NULL) continue;
            MEQF(r, o->blocked, mo->blocked, "offer %s/%s blocked", SKUS[k], MARKETS[mk]);
            if (!mo->blocked)
                MEQF(r, o->price_minor, mo->price, "offer %s/%s price", SKUS[k], MARKETS[mk]);
        }
    }
    for (size_t i = 0; i < m->sc.nholds; i++) compare_hold(r, e, i);
    for (size_t i = 0; i < m->sc.norders; i++) compare_order(r, e, i);
    compare_stats(r, e);
    /* Nothing beyond what the model has: the next ids are free. */
    for (int b = 0; b < m->sc.nbuyers; b++)
        if (fg_engine_hold_get(e, m->buyers[b].id, m->sc.nholds + 1) != NULL)
            diverge(r, "engine has a hold %zu the model does not", m->sc.nholds + 1);
    if (fg_engine_order_get(e, 0, m->sc.norders + 1) != NULL)
        diverge(r, "engine has an order %zu the model does not", m->sc.norders + 1);
    compare_buyers(r, e);
    for (size_t k = 0; k < r->nreqs; k++) compare_key(r, e, k);
}

/* ---------------------------------------------------------------- the ledger and restarts */

static void quiet_begin(const run_t *r) {
    fflush(stderr);
    g_saved_stderr = dup(STDERR_FILENO);
    int fd = open(r->logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(g_saved_stderr >= 0 && fd >= 0, "cannot redirect stderr: %s", strerror(errno));
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static void quiet_end(void) {
    fflush(stderr);
    dup2(g_saved_stderr, STDERR_FILENO);
    close(g_saved_stderr);
    g_saved_stderr = -1;
}

static void ledger_open(run_t *r) {
    char err[512];
    quiet_begin(r);
    int rc = fg_ledger_open(r->dir, &r->ledger, err, sizeof err);
    quiet_end();
    if (rc != 0) diverge(r, "fg_ledger_open: %s", err);
}

/* Rebuilds the engine from the ledger, as the server does at start and after a failed commit. */
static void engine_load(run_t *r) {
    char err[512];
    quiet_begin(r); /* one log line per load */
    int rc = fg_engine_load(r->ledger, r->m.now, &r->e, err, sizeof err);
    quiet_end();
    if (rc != 0) diverge(r, "fg_engine_load: %s", err);
    MEQ(r, "change records after a load", fg_engine_pending_changes(r->e), 0);
}

/* The process is gone: its engine (and whatever it had not committed) with it. Rebuilds from
 * the ledger, reopened unless `reopen` is false (the writer's own rebuild after a failed
 * commit), and checks the result against the model, already rolled back or committed. */
static void restart(run_t *r, bool reopen) {
    fg_engine_free(r->e);
    r->e = NULL;
    r->nrecs = 0;
    if (reopen) {
        if (r->ledger != NULL) fg_ledger_close(r->ledger);
        r->ledger = NULL;
        ledger_open(r);
        r->last_expire_ms = 0; /* a new writer */
    }
    if (r->pc != NULL || r->m.mark_undo != 0 || r->m.ninflight != 0)
        diverge(r, "restart with a batch still pending (simulator bookkeeping): %zu changes, "
                "%zu undo entries, %zu keys in flight", r->pn, r->m.mark_undo, r->m.ninflight);
    m_idem_expire(&r->m, r->m.now); /* load reads the last FG_IDEM_TTL_MS of answers */
    r->m.nundo = 0;                 /* that forgetting is part of the acknowledged state */
    r->m.acked = r->m.mark_sc = r->m.sc;
    engine_load(r);
    r->restarts++;
    compare_all(r, r->e);
    fg_engine_check(r->e);
}

static void release_changes(fg_change_t *c, size_t n) {
    for (size_t i = 0; i < n; i++) fg_change_release(&c[i]);
    free(c);
}

/* The batch with `bad` inserted at `at`; the copy borrows everything from `c`. */
static fg_change_t *poisoned(const fg_change_t *c, size_t n, size_t at, const fg_change_t *bad) {
    fg_change_t *p = calloc(n + 1, sizeof *p);
    cr_assert_not_null(p);
    if (at > 0) memcpy(p, c, at * sizeof *p);
    p[at] = *bad;
    if (n > at) memcpy(p + at + 1, c + at, (n - at) * sizeof *p);
    return p;
}

/* Commits in a child process that dies without closing the ledger: after COMMIT returned
 * (poison NULL), or in the middle of the transaction, where a poisoned change (a NULL row the
 * ledger asserts on) aborts it after `at` changes were written. The parent's connection is
 * closed first: an SQLite connection must not cross fork. Returns the child's wait status. */
static int child_commit(run_t *r, const fg_change_t *c, size_t n, const fg_change_t *bad,
                        size_t at) {
    fg_ledger_close(r->ledger);
    r->ledger = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, STDERR_FILENO); /* the abort's message is expected */
        fg_ledger_t *l = NULL;
        char err[512];
        if (fg_ledger_open(r->dir, &l, err, sizeof err) != 0) _exit(3);
        if (bad != NULL) {
            fg_change_t *p = poisoned(c, n, at, bad);
            int rc = fg_ledger_commit(l, p, n + 1, err, sizeof err);
            _exit(rc == 0 ? 4 : 5); /* not reached: the ledger asserts on the NULL row */
        }
        _exit(fg_ledger_commit(l, c, n, err, sizeof err) == 0 ? 0 : 6);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    return status;
}

/* The ledger refuses a change in the middle of the transaction: either its own row check (a hold
 * in state 9) or SQLite's UNIQUE constraint (a new buyer id with a taken email). */
static void commit_refused(run_t *r, const fg_change_t *c, size_t n) {
    size_t at = (size_t)rng_below(&r->rng, (int)n + 1);
    fg_change_t bad = {.kind = FG_CH_HOLD};
    fg_buyer_row_t dup = {.id = 9000000, .market = "DE", .created_at_ms = r->m.now};
    snprintf(dup.email, sizeof dup.email, "%s", r->m.buyers[0].email);
    if (rng_below(&r->rng, 2)) {
        bad.kind = FG_CH_BUYER;
        bad.u.buyer = &dup;
    } else {
        bad.u.hold = (fg_hold_row_t){.id = 1, .buyer_id = 1, .sale_id = "s0",
                                     .market = fg_mcode("DE"), .quantity = 1, .state = 9};
    }
    fg_change_t *p = poisoned(c, n, at, &bad);
    char err[512] = "";
    int rc = fg_ledger_commit(r->ledger, p, n + 1, err, sizeof err);
    free(p); /* borrowed rows: released with the batch */
    if (rc != -1) diverge(r, "a commit with a refused change at %zu of %zu returned %d", at + 1,
                          n + 1, rc);
}

static int pick_crash(run_t *r) {
    int x = rng_below(&r->rng, 1000);
    if (x < 12) return CR_BOUNDARY;
    if (x < 22) return CR_BEFORE_COMMIT;
    if (x < 30) return CR_MID_COMMIT;
    if (x < 38) return CR_AFTER_COMMIT;
    if (x < 46) return CR_COMMIT_FAILS;
    return CR_NONE;
}

/* The writer hands the gathered batch to the commit thread (writer.c hand_off). */
static void hand_off(run_t *r) {
    cr_assert_null(r->pc);
    r->pn = fg_engine_take_changes(r->e, &r->pc);
    r->precs = grow(r->precs, &r->capprecs, r->nrecs + 1, sizeof *r->precs);
    if (r->nrecs > 0) memcpy(r->precs, r->recs, r->nrecs * sizeof *r->recs);
    r->npr = r->nrecs;
    r->nrecs = 0;
    r->p_cmds = r->batch_cmds;
    r->batch_cmds = 0;
    m_handoff(&r->m);
}

/* The pending batch's commit, which ran while the next batch gathered, ends as `kind` says:
 * committed (none, boundary), committed by a child process that then died (after_commit), or
 * not committed (before_commit; mid_commit, a child dying inside the transaction; commit_fails,
 * the ledger refusing a change). Without a pending batch this commits nothing. */
static void resolve_pending(run_t *r, int kind) {
    static const fg_change_t null_sale = {.kind = FG_CH_SALE, .u.sale = NULL};
    char err[512] = "";
    int status;
    bool committed = false;
    switch (kind) {
    case CR_NONE:
    case CR_BOUNDARY:
        if (fg_ledger_commit(r->ledger, r->pc, r->pn, err, sizeof err) != 0)
            diverge(r, "fg_ledger_commit: %s", err);
        for (size_t i = 0; i < r->npr; i++) fg_engine_idem_committed(r->e, r->precs[i]);
        committed = true;
        break;
    case CR_AFTER_COMMIT:
        status = child_commit(r, r->pc, r->pn, NULL, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            diverge(r, "the child's commit failed: status %#x", status);
        committed = true; /* durable: no client heard, but their retries will replay it */
        break;
    case CR_MID_COMMIT:
        status = child_commit(r, r->pc, r->pn, &null_sale,
                              (size_t)rng_below(&r->rng, (int)r->pn + 1));
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
            diverge(r, "the child meant to die inside the transaction ended with status %#x",
                    status);
        break;
    case CR_COMMIT_FAILS:
        commit_refused(r, r->pc, r->pn);
        break;
    case CR_BEFORE_COMMIT: break;
    }
    release_changes(r->pc, r->pn);
    r->pc = NULL;
    r->pn = r->npr = 0;
    if (committed) {
        r->commits++;
        r->acked_cmds += r->p_cmds;
        m_commit_pending(&r->m);
    } else {
        r->lost_cmds += r->p_cmds;
    }
    r->p_cmds = 0;
}

/* A batch boundary, as the writer's loop meets it (writer.c collect, then hand_off): the
 * pending batch's commit ends, and the gathered batch is handed over; or the process crashes
 * there, losing the gathered batch and, unless its commit returned, the pending one. */
static void end_batch(run_t *r) {
    int kind = pick_crash(r);
    if (r->edge_restart) kind = CR_BOUNDARY;
    r->edge_restart = false;
    r->batches++;
    r->crashes[kind]++;
    snprintf(r->op, sizeof r->op,
             "end of batch %ld: %zu changes committing, %zu gathered (%ld commands), crash %s",
             r->batches, r->pn, fg_engine_pending_changes(r->e), r->batch_cmds,
             CRASH_NAMES[kind]);
    fold(r, r->op, strlen(r->op));
    resolve_pending(r, kind);
    r->batch_left = 0;
    if (kind == CR_NONE) {
        hand_off(r);
        if (r->commits % FULL_CHECK_EVERY == 0) compare_all(r, r->e);
        return;
    }
    r->lost_cmds += r->batch_cmds;
    r->batch_cmds = 0;
    if (kind == CR_BOUNDARY || kind == CR_AFTER_COMMIT) m_rollback_gather(&r->m);
    else m_rollback(&r->m); /* the writer answers both batches 503 and rebuilds */
    restart(r, kind != CR_COMMIT_FAILS);
}

/* Commits what is pending and what gathered (a clean stop: writer.c fg_writer_stop). */
static void flush(run_t *r) {
    resolve_pending(r, CR_NONE);
    hand_off(r);
    resolve_pending(r, CR_NONE);
}

/* ---------------------------------------------------------------- picking */

/* A sale to act on: mostly one of the two traded, sometimes any (often closed), rarely none. */
static int pick_sale(run_t *r) { return pick_sale_of(&r->rng, r->m.sc.nsales, r->m.sc.slot); }

/* A buyer whose registration was acknowledged: only they have a token. */
static uint64_t pick_buyer(run_t *r) {
    return (uint64_t)rng_below(&r->rng, r->m.acked.nbuyers) + 1;
}

/* True when an active hold can no longer be ordered: its sale closed or its offer was blocked. */
static bool m_stuck(const model_t *m, const mhold_t *h) {
    const msale_t *s = &m->sales[h->sale];
    const moffer_t *o = &m->offers[s->pools[h->pool].sku][h->market];
    return h->state == FG_HOLD_HELD && (m_closed(s, m->now) || !o->exists || o->blocked);
}

static uint64_t pick_hold(run_t *r, int stuck_pct, int active_pct) {
    const model_t *m = &r->m;
    int x = rng_below(&r->rng, 100);
    if (x < stuck_pct) {
        for (size_t i = 0; i < m->nactive; i++)
            if (m_stuck(m, &m->holds[m->active[i]])) return m->holds[m->active[i]].id;
    } else if (m->nactive > 0 && x < stuck_pct + active_pct) {
        return m->holds[m->active[rng_below(&r->rng, (int)m->nactive)]].id;
    }
    return pick_id(&r->rng, m->sc.nholds);
}

/* ---------------------------------------------------------------- requests with a key */

static uint64_t request_fp(const mreq_t *q) {
    uint64_t h = FNV0;
    h = fnv(h, &q->kind, sizeof q->kind);
    h = fnv(h, &q->scope, sizeof q->scope);
    switch (q->kind) {
    case RQ_HOLD:
        h = fnv(h, &q->sale, sizeof q->sale);
        h = fnv(h, &q->sku, sizeof q->sku);
        h = fnv(h, &q->market, sizeof q->market);
        h = fnv(h, &q->qty, sizeof q->qty);
        break;
    case RQ_ORDER:
        h = fnv(h, &q->hold, sizeof q->hold);
        h = fnv(h, q->country, 2);
        h = fnv(h, &q->method, sizeof q->method);
        break;
    case RQ_REGISTER:
        h = fnv(h, q->email, strlen(q->email));
        h = fnv(h, &q->reg_market, sizeof q->reg_market);
        break;
    default:
        h = fnv(h, &q->sale, sizeof q->sale);
        h = fnv(h, &q->sku, sizeof q->sku);
        h = fnv(h, &q->market, sizeof q->market);
        h = fnv(h, &q->add, sizeof q->add);
        break;
    }
    return h;
}

static void exec_hold(run_t *r, const mreq_t *q, answer_t *got, answer_t *want) {
    model_t *m = &r->m;
    const fg_hold_t *h = NULL;
    fg_err_t ge = fg_engine_hold(r->e, q->scope, sale_name(r, q->sale), SKUS[q->sku],
                                 fg_mcode(MARKETS[q->market]), q->qty, m->now, &h);
    uint64_t id = 0;
    fg_err_t we = m_hold(m, q->sale, q->scope, q->sku, q->market, q->qty, &id);
    expect_code(r, OP_HOLD, ge, we);
    if (ge != FG_OK) {
        ans_err(got, ge);
        ans_err(want, we);
        return;
    }
    ans_hold(got, 201, h->id, h->state, h->quantity, h->expires_at_ms);
    const mhold_t *mh = &m->holds[id - 1];
    ans_hold(want, 201, mh->id, mh->state, mh->qty, mh->expires);
    compare_hold(r, r->e, id - 1);
    r->touched_sale = q->sale;
}

static void ship_text(const mreq_t *q, char out[64]) {
    snprintf(out, 64, "{\"buyer\":%llu,\"country\":\"%s\"}", (unsigned long long)q->scope,
             q->country);
}

static void exec_order(run_t *r, const mreq_t *q, answer_t *got, answer_t *want) {
    model_t *m = &r->m;
    char ship[64];
    ship_text(q, ship);
    const fg_order_t *o = NULL;
    fg_err_t ge = fg_engine_order(r->e, q->scope, q->hold, ship, q->country,
                                  (fg_pay_method_t)q->method, m->now, &o);
    uint64_t oid = 0;
    fg_err_t we = m_order(m, q->scope, q->hold, q->country, q->method, ship, &oid);
    expect_code(r, OP_ORDER, ge, we);
    if (q->hold >= 1 && q->hold <= m->sc.nholds) {
        compare_hold(r, r->e, q->hold - 1);
        r->touched_sale = m->holds[q->hold - 1].sale;
    }
    if (ge != FG_OK) {
        ans_err(got, ge);
        ans_err(want, we);
        return;
    }
    ans_order(got, 201, o->row.id, o->row.hold_id, o->row.state, o->row.total_minor,
              o->row.currency);
    const morder_t *mo = &m->orders[oid - 1];
    ans_order(want, 201, mo->id, mo->hold, mo->state, mo->total, CURRENCIES[mo->market]);
    compare_order(r, r->e, oid - 1);
}

static void exec_register(run_t *r, const mreq_t *q, answer_t *got, answer_t *want) {
    model_t *m = &r->m;
    const char *market = q->reg_market < 0 ? "JP" : MARKETS[q->reg_market];
    uint8_t tok[32];
    token_of(q->email, tok);
    uint64_t gid = 0, wid = 0;
    fg_err_t ge = fg_engine_buyer_register(r->e, q->email, market, tok, m->now, &gid);
    fg_err_t we = m_register(m, q->email, q->reg_market, &wid);
    expect_code(r, OP_REGISTER, ge, we);
    if (ge != FG_OK) {
        ans_err(got, ge);
        ans_err(want, we);
        return;
    }
    ans_buyer(got, 201, gid, q->email, market);
    ans_buyer(want, 201, wid, q->email, market);
}

static void ans_sale(answer_t *a, const char *id, bool paused, bool closed, const int64_t *stock,
                     int n) {
    a->status = 200;
    int len = snprintf(a->body, sizeof a->body, "{\"sale\":\"%s\",\"paused\":%d,\"closed\":%d,"
                       "\"stock\":[", id, paused, closed);
    for (int i = 0; i < n && len < (int)sizeof a->body - 24; i++)
        len += snprintf(a->body + len, sizeof a->body - (size_t)len, "%s%lld", i ? "," : "",
                        (long long)stock[i]);
    snprintf(a->body + len, sizeof a->body - (size_t)len, "]}");
}

/* The operator's pause, resume, close and add-stock calls (api/sales.c exec_action). */
static void exec_admin(run_t *r, const mreq_t *q, answer_t *got, answer_t *want) {
    model_t *m = &r->m;
    const char *id = sale_name(r, q->sale);
    const char *market = q->market < 0 ? NULL : MARKETS[q->market];
    int op = q->kind == RQ_PAUSE ? OP_PAUSE : q->kind == RQ_RESUME ? OP_RESUME
             : q->kind == RQ_CLOSE ? OP_CLOSE : OP_STOCK;
    fg_err_t ge = op == OP_PAUSE    ? fg_engine_sale_pause(r->e, id, m->now)
                  : op == OP_RESUME ? fg_engine_sale_resume(r->e, id, m->now)
                  : op == OP_CLOSE  ? fg_engine_sale_close(r->e, id, m->now)
                                    : fg_engine_sale_add_stock(r->e, id, SKUS[q->sku], market,
                                                               q->add, m->now);
    /* A retried call may name a sale whose creation was lost in a crash. */
    int si = q->sale < m->sc.nsales ? q->sale : -1;
    fg_err_t we = op == OP_STOCK ? m_add_stock(m, si, q->sku, q->market, q->add)
                                 : m_flags(m, si, op == OP_PAUSE ? 1 : op == OP_RESUME ? 0 : -1,
                                           op == OP_CLOSE);
    expect_code(r, op, ge, we);
    if (ge != FG_OK) {
        ans_err(got, ge);
        ans_err(want, we);
        return;
    }
    const fg_sale_t *s = fg_engine_sale_get(r->e, id);
    int64_t gs[4] = {0}, ws[4] = {0};
    const msale_t *ms = &m->sales[si];
    for (int i = 0; i < s->def.pool_count && i < 4; i++) gs[i] = s->def.pools[i].stock;
    for (int i = 0; i < ms->npools; i++) ws[i] = ms->pools[i].stock;
    ans_sale(got, s->def.id, s->def.paused, s->def.closed, gs, s->def.pool_count);
    ans_sale(want, ms->id, ms->paused, ms->closed, ws, ms->npools);
    r->touched_sale = si;
}

/* Sends request `q` under key number `key` through the writer's steps (writer.c apply): the
 * buyer's token, the idempotency gate, the command, and storing a 2xx answer that changed
 * something, in the same batch as the change. */
static void send_request(run_t *r, size_t key, const mreq_t *q, bool bad_token) {
    model_t *m = &r->m;
    char ktext[24];
    uint8_t fp[32];
    key_text(key, ktext);
    fp_bytes(q->fp, fp);
    if (r->reqs[key].sends++ > 0 && r->m.idem[key].state == I_NONE) r->retried_new++;
    if (q->kind == RQ_HOLD || q->kind == RQ_ORDER) {
        uint8_t tok[32];
        token_of(m->buyers[q->scope - 1].email, tok);
        if (bad_token) tok[5] ^= 0x21;
        fg_err_t a = fg_engine_buyer_auth(r->e, q->scope, tok);
        MEQ(r, "admit (buyer token)", a, bad_token ? FG_ERR_UNAUTHORIZED : FG_OK);
        if (a != FG_OK) { /* refused before the key is looked at: no replay to a stranger */
            r->admit_refused++;
            return;
        }
    }
    const fg_idem_row_t *rec = NULL;
    fg_idem_result_t got_res = fg_engine_idem_lookup(r->e, q->scope, ktext, fp, &rec);
    const midem_t *d = &m->idem[key];
    uint8_t seen = m_idem_seen(m, key);
    fg_idem_result_t want_res = seen == I_NONE       ? FG_IDEM_NEW
                                : d->fp != q->fp     ? FG_IDEM_MISMATCH
                                : seen == I_INFLIGHT ? FG_IDEM_IN_FLIGHT
                                                         : FG_IDEM_REPLAY;
    if (got_res != want_res)
        diverge(r, "idempotency lookup of %s: engine %s, model %s", ktext, IDEM_NAMES[got_res],
                IDEM_NAMES[want_res]);
    r->idem[got_res]++;
    fold(r, &got_res, sizeof got_res);
    if (got_res == FG_IDEM_REPLAY) {
        if (rec->status != d->status || strcmp(rec->body, d->body) != 0)
            diverge(r, "replay of %s: engine %d %s, model %d %s", ktext, rec->status, rec->body,
                    d->status, d->body);
        if (d->restart < r->restarts) r->replays_across_restart++;
        return;
    }
    if (got_res != FG_IDEM_NEW) return; /* 409 in progress, 422 reused */
    answer_t got = {0}, want = {0};
    size_t before = fg_engine_pending_changes(r->e);
    m->changed = false;
    if (q->kind == RQ_HOLD) exec_hold(r, q, &got, &want);
    else if (q->kind == RQ_ORDER) exec_order(r, q, &got, &want);
    else if (q->kind == RQ_REGISTER) exec_register(r, q, &got, &want);
    else exec_admin(r, q, &got, &want);
    expect_answer(r, &got, &want);
    bool changed = fg_engine_pending_changes(r->e) != before;
    MEQ(r, "the request changed the engine", changed, m->changed);
    uint32_t sends = r->reqs[key].sends;
    r->reqs[key] = *q; /* what the client sent last under this key */
    r->reqs[key].sends = sends;
    if (!changed) return;
    r->batch_cmds++;
    if (got.status < 200 || got.status > 299) return;
    const fg_idem_row_t *stored = NULL;
    fg_err_t err = fg_engine_idem_store(r->e, q->scope, ktext, fp, got.status, got.body, m->now,
                                        &stored);
    MEQ(r, "fg_engine_idem_store", err, FG_OK);
    r->recs = grow(r->recs, &r->caprecs, r->nrecs + 1, sizeof *r->recs);
    r->recs[r->nrecs++] = stored;
    m_idem_store(m, key, q->fp, want.status, want.body, r->restarts);
}

/* A new request number and key. */
static size_t new_request(run_t *r, mreq_t *q) {
    q->fp = request_fp(q);
    r->reqs = grow(r->reqs, &r->capreqs, r->nreqs + 1, sizeof *r->reqs);
    r->m.idem = grow(r->m.idem, &r->m.capidem, r->nreqs + 1, sizeof *r->m.idem);
    r->reqs[r->nreqs] = *q;
    return r->nreqs++;
}

static bool bad_token(run_t *r) { return rng_below(&r->rng, 100) < 2; }

static void cmd_hold(run_t *r) {
    model_t *m = &r->m;
    mreq_t q = {.kind = RQ_HOLD};
    q.sale = pick_sale(r);
    q.scope = pick_buyer(r);
    q.market = m->buyers[q.scope - 1].market;
    draw_hold(&r->rng, &q.market, &q.sku, &q.qty);
    size_t key = new_request(r, &q);
    snprintf(r->op, sizeof r->op, "hold k%zu buyer=%llu(%s) sale=%s sku=%s market=%s qty=%d",
             key, (unsigned long long)q.scope, MARKETS[m->buyers[q.scope - 1].market],
             sale_name(r, q.sale), SKUS[q.sku], MARKETS[q.market], q.qty);
    send_request(r, key, &q, bad_token(r));
}

static void cmd_order(run_t *r) {
    model_t *m = &r->m;
    mreq_t q = {.kind = RQ_ORDER};
    q.hold = pick_hold(r, 20, 30);
    bool known = q.hold <= m->sc.nholds;
    q.scope = known && rng_below(&r->rng, 100) < 92 ? m->holds[q.hold - 1].buyer : pick_buyer(r);
    const char *country =
        draw_country(&r->rng, known ? MARKETS[m->holds[q.hold - 1].market] : "DE");
    snprintf(q.country, sizeof q.country, "%s", country);
    q.method = rng_below(&r->rng, 2) ? FG_PAY_WEBHOOK : FG_PAY_INSTANT;
    size_t key = new_request(r, &q);
    snprintf(r->op, sizeof r->op, "order k%zu buyer=%llu hold=%llu country=%s method=%s", key,
             (unsigned long long)q.scope, (unsigned long long)q.hold, q.country,
             q.method == FG_PAY_INSTANT ? "instant" : "webhook");
    send_request(r, key, &q, bad_token(r));
}

static void cmd_register(run_t *r) {
    model_t *m = &r->m;
    mreq_t q = {.kind = RQ_REGISTER, .scope = 0};
    int x = rng_below(&r->rng, 100);
    q.reg_market = rng_below(&r->rng, NMARKETS);
    if (x < 50 && BUYERS_START + r->late < BUYERS_MAX) {
        snprintf(q.email, sizeof q.email, "late%d@example.org", ++r->late);
    } else if (x < 85) {
        snprintf(q.email, sizeof q.email, "%s", m->buyers[rng_below(&r->rng, m->acked.nbuyers)].email);
    } else {
        snprintf(q.email, sizeof q.email, "jp%d@example.org", rng_below(&r->rng, 1000));
        q.reg_market = -1;
    }
    size_t key = new_request(r, &q);
    snprintf(r->op, sizeof r->op, "register k%zu %s %s", key, q.email,
             q.reg_market < 0 ? "JP" : MARKETS[q.reg_market]);
    send_request(r, key, &q, false);
}

/* A client sends a request again under its key: mostly the same request (a retry after a lost
 * answer, a double click), sometimes another one (a client bug: 422 unless the key is free). */
static void cmd_retry(run_t *r) {
    if (r->nreqs == 0) return;
    size_t span = r->nreqs < RETRY_SPAN ? r->nreqs : RETRY_SPAN;
    size_t key = rng_below(&r->rng, 10) == 0 ? (size_t)rng_below(&r->rng, (int)r->nreqs)
                                             : r->nreqs - 1 - (size_t)rng_below(&r->rng, (int)span);
    mreq_t q = r->reqs[key];
    bool other = rng_below(&r->rng, 100) < 25;
    if (other) {
        if (q.kind == RQ_HOLD) q.qty = q.qty % 3 + 1;
        else if (q.kind == RQ_ORDER) q.method = q.method == FG_PAY_INSTANT ? FG_PAY_WEBHOOK
                                                                           : FG_PAY_INSTANT;
        else if (q.kind == RQ_STOCK) q.add++;
        else if (q.kind != RQ_REGISTER) q.sale = r->m.sc.slot[rng_below(&r->rng, 2)];
        else if (q.reg_market >= 0) q.reg_market = (q.reg_market + 1) % NMARKETS;
        else snprintf(q.email, sizeof q.email, "jp%d@example.org", 1000 + rng_below(&r->rng, 1000));
        q.fp = request_fp(&q);
    }
    bool bad = (q.kind == RQ_HOLD || q.kind == RQ_ORDER) && bad_token(r);
    snprintf(r->op, sizeof r->op, "retry k%zu (%s, %s request%s)", key, RQ_NAMES[q.kind],
             other ? "another" : "the same", bad ? ", wrong token" : "");
    r->outcomes[OP_RETRY][FG_OK]++;
    send_request(r, key, &q, bad);
}

static void cmd_release(run_t *r) {
    model_t *m = &r->m;
    uint64_t id = pick_hold(r, 0, 20);
    uint64_t b = id <= m->sc.nholds && rng_below(&r->rng, 100) < 92 ? m->holds[id - 1].buyer
                                                                    : pick_buyer(r);
    bool bad = bad_token(r);
    snprintf(r->op, sizeof r->op, "release buyer=%llu hold=%llu%s", (unsigned long long)b,
             (unsigned long long)id, bad ? " wrong token" : "");
    uint8_t tok[32];
    token_of(m->buyers[b - 1].email, tok);
    if (bad) tok[3] ^= 0x44;
    fg_err_t a = fg_engine_buyer_auth(r->e, b, tok);
    MEQ(r, "admit (buyer token)", a, bad ? FG_ERR_UNAUTHORIZED : FG_OK);
    if (a != FG_OK) {
        r->admit_refused++;
        return;
    }
    size_t before = fg_engine_pending_changes(r->e);
    m->changed = false;
    const fg_hold_t *h = NULL;
    fg_err_t ge = fg_engine_hold_release(r->e, b, id, m->now, &h);
    fg_err_t we = m_release(m, b, id);
    expect_code(r, OP_RELEASE, ge, we);
    answer_t got, want;
    if (ge == FG_OK) {
        const mhold_t *mh = &m->holds[id - 1];
        ans_hold(&got, 200, h->id, h->state, h->quantity, h->expires_at_ms);
        ans_hold(&want, 200, mh->id, mh->state, mh->qty, mh->expires);
    } else {
        ans_err(&got, ge);
        ans_err(&want, we);
    }
    expect_answer(r, &got, &want);
    MEQ(r, "release changed the engine", fg_engine_pending_changes(r->e) != before, m->changed);
    if (m->changed) r->batch_cmds++;
    if (id <= m->sc.nholds) {
        compare_hold(r, r->e, id - 1);
        r->touched_sale = m->holds[id - 1].sale;
    }
}

/* A payment provider's signed callback (api/holds.c exec_webhook): the signature's time must be
 * within FG_WEBHOOK_TOLERANCE_S of now (checked before the writer), a used signature is refused,
 * then the verdict is applied. Sometimes the provider sends a callback again, signature and all. */
static void cmd_payment(run_t *r) {
    model_t *m = &r->m;
    size_t cb;
    if (r->ncbs > 0 && rng_below(&r->rng, 100) < 20) {
        size_t span = r->ncbs < 40 ? r->ncbs : 40;
        cb = r->ncbs - 1 - (size_t)rng_below(&r->rng, (int)span);
    } else {
        r->cbs = grow(r->cbs, &r->capcbs, r->ncbs + 1, sizeof *r->cbs);
        m->used = grow(m->used, &m->capused, r->ncbs + 1, sizeof *m->used);
        mcb_t *c = &r->cbs[r->ncbs];
        c->order = pick_id(&r->rng, m->sc.norders);
        c->ok = rng_below(&r->rng, 100) < 70;
        c->t_s = m->now / 1000 - rng_below(&r->rng, 30);
        for (int i = 0; i < 4; i++) {
            uint64_t v = rng_next(&r->rng);
            memcpy(c->digest + 8 * i, &v, 8);
        }
        cb = r->ncbs++;
    }
    const mcb_t *c = &r->cbs[cb];
    snprintf(r->op, sizeof r->op, "payment cb%zu order=%llu %s t=now%+llds", cb,
             (unsigned long long)c->order, c->ok ? "succeeded" : "failed",
             (long long)(c->t_s - m->now / 1000));
    int64_t now_s = m->now / 1000;
    if (c->t_s < now_s - FG_WEBHOOK_TOLERANCE_S || c->t_s > now_s + FG_WEBHOOK_TOLERANCE_S) {
        r->hook_stale++; /* 401 at the HTTP layer: the engine never sees it */
        return;
    }
    size_t before = fg_engine_pending_changes(r->e);
    m->changed = false;
    fg_err_t ge = fg_engine_webhook_use(r->e, c->digest, c->t_s, m->now);
    fg_err_t we = m->used[cb] ? FG_ERR_UNAUTHORIZED : FG_OK;
    MEQ(r, "webhook signature (0 fresh, 10 used)", ge, we);
    answer_t got, want;
    if (ge != FG_OK) {
        r->hook_replays++;
        ans_err(&got, ge);
        ans_err(&want, we);
    } else {
        W_used(m, cb);
        const fg_order_t *o = NULL;
        ge = fg_engine_payment(r->e, c->order, c->ok, m->now, &o);
        we = m_payment(m, c->order, c->ok);
        expect_code(r, OP_PAY, ge, we);
        if (ge == FG_OK) {
            const morder_t *mo = &m->orders[c->order - 1];
            ans_order(&got, 200, o->row.id, o->row.hold_id, o->row.state, o->row.total_minor,
                      o->row.currency);
            ans_order(&want, 200, mo->id, mo->hold, mo->state, mo->total, CURRENCIES[mo->market]);
        } else {
            ans_err(&got, ge);
            ans_err(&want, we);
        }
    }
    expect_answer(r, &got, &want);
    MEQ(r, "the callback changed the engine", fg_engine_pending_changes(r->e) != before,
        m->changed);
    if (m->changed) r->batch_cmds++;
    if (c->order >= 1 && c->order <= m->sc.norders) {
        compare_order(r, r->e, c->order - 1);
        compare_hold(r, r->e, m->orders[c->order - 1].hold - 1);
        r->touched_sale = m->orders[c->order - 1].sale;
    }
}

/* The writer's loop: expire due holds, and forget old stored answers at most once a second. */
static void cmd_tick(run_t *r) {
    model_t *m = &r->m;
    snprintf(r->op, sizeof r->op, "tick");
    int got = fg_engine_tick(r->e, m->now);
    int want = m_tick(m);
    MEQ(r, "holds ended by tick", got, want);
    r->expired_by_tick += got;
    if (m->now - r->last_expire_ms >= 1000) {
        fg_engine_idem_expire(r->e, m->now);
        m_idem_expire(m, m->now);
        r->last_expire_ms = m->now;
        /* The keys on both sides of the line: the last one forgotten, the oldest one kept. */
        if (m->sc.fifo_head > 0) compare_key(r, r->e, m->fifo[m->sc.fifo_head - 1]);
        if (m->sc.fifo_head < m->sc.fifo_len) compare_key(r, r->e, m->fifo[m->sc.fifo_head]);
    }
    r->outcomes[OP_TICK][FG_OK]++;
}

static void cmd_advance(run_t *r) {
    model_t *m = &r->m;
    int x = rng_below(&r->rng, 1000);
    int64_t dt;
    if (x < 2) { /* past the stored answers' lifetime */
        dt = rng_range(&r->rng, FG_IDEM_TTL_MS, FG_IDEM_TTL_MS + 6 * 3600 * 1000LL);
        r->big_jumps++;
        /* Half the time to the millisecond where the oldest stored answer expires, give or
         * take one: the engine forgets, and load skips, exactly those older than 24 h. */
        if (m->sc.fifo_head < m->sc.fifo_len && rng_below(&r->rng, 2)) {
            int64_t edge = m->idem[m->fifo[m->sc.fifo_head]].created + FG_IDEM_TTL_MS +
                           rng_range(&r->rng, -1, 1);
            if (edge >= m->now) {
                dt = edge - m->now;
                r->edge_restart = true; /* and a restart right there: load's cut-off */
            }
        }
    } else if (x < 10) {
        dt = rng_range(&r->rng, 60 * 1000, 30 * 60 * 1000LL);
        r->big_jumps++;
    } else if (x < 200) {
        dt = 1 + rng_below(&r->rng, 999);
    } else {
        /* To a whole second 0 to 15 s on, so that the clock lands exactly on expiry, opening
         * and closing times (all whole seconds). */
        int64_t k = rng_below(&r->rng, 16);
        dt = k == 0 ? 0 : (m->now / 1000 + k) * 1000 - m->now;
    }
    m->now += dt;
    snprintf(r->op, sizeof r->op, "advance %lld ms", (long long)dt);
    fold(r, &dt, sizeof dt);
    r->outcomes[OP_ADVANCE][FG_OK]++;
}

/* ---------------------------------------------------------------- the operator */

/* Creates sale number nsales in both, from one of two layouts (sale_make). */
static void new_sale(run_t *r, int layout) {
    model_t *m = &r->m;
    cr_assert_lt(m->sc.nsales, SALES_CAP);
    fg_sale_row_t d;
    msale_t ms;
    int n = m->sc.nsales;
    sale_make(&r->rng, n, layout, m->now, &d, &ms, r->op, sizeof r->op);
    ms.created = m->now;
    fg_err_t got = fg_engine_sale_create(r->e, &d, m->now);
    if (got != FG_OK) diverge(r, "sale_create: engine %s (%s), model OK", err_name(got),
                              fg_engine_detail(r->e));
    m->sales[n] = ms;
    m->sc.nsales++;
    m->sc.slot[layout] = n;
    m->changed = true;
    r->batch_cmds++;
}

static void put_offer(run_t *r, int sku, int market, bool blocked, int64_t price,
                      const char *reason) {
    fg_offer_t o;
    offer_make(&o, sku, market, blocked, price, reason);
    bool created;
    fg_err_t got = fg_engine_offer_put(r->e, &o, &created);
    if (got != FG_OK) diverge(r, "offer_put: engine %s, model OK", err_name(got));
    *W_offer(&r->m, sku, market) = (moffer_t){.exists = true, .blocked = blocked, .price = price};
    r->batch_cmds++;
}

static const mhold_t *pick_held(run_t *r) {
    const model_t *m = &r->m;
    if (m->nactive == 0) return NULL;
    const mhold_t *h = &m->holds[m->active[rng_below(&r->rng, (int)m->nactive)]];
    return h->state == FG_HOLD_HELD ? h : NULL;
}

static void cmd_flags(run_t *r, int op) {
    mreq_t q = {.kind = op == OP_PAUSE ? RQ_PAUSE : op == OP_RESUME ? RQ_RESUME : RQ_CLOSE,
                .scope = FG_IDEM_SCOPE_ADMIN, .market = -1};
    q.sale = rng_below(&r->rng, 100) < 90 ? r->m.sc.slot[rng_below(&r->rng, 2)] : pick_sale(r);
    /* An operator closing a sale usually meets buyers who still hold units in it. */
    const mhold_t *held = op == OP_CLOSE && rng_below(&r->rng, 100) < 80 ? pick_held(r) : NULL;
    if (held != NULL) q.sale = held->sale;
    size_t key = new_request(r, &q);
    snprintf(r->op, sizeof r->op, "%s k%zu sale=%s", OP_NAMES[op], key, sale_name(r, q.sale));
    send_request(r, key, &q, false);
}

static void cmd_add_stock(run_t *r) {
    model_t *m = &r->m;
    mreq_t q = {.kind = RQ_STOCK, .scope = FG_IDEM_SCOPE_ADMIN};
    q.sale = rng_below(&r->rng, 100) < 90 ? m->sc.slot[rng_below(&r->rng, 2)] : pick_sale(r);
    draw_stock(&r->rng, &q.sku, &q.market, &q.add);
    size_t key = new_request(r, &q);
    snprintf(r->op, sizeof r->op, "add_stock k%zu sale=%s sku=%s market=%s add=%lld", key,
             sale_name(r, q.sale), SKUS[q.sku], q.market < 0 ? "(none)" : MARKETS[q.market],
             (long long)q.add);
    send_request(r, key, &q, false);
}

/* Changes one of three offers: a blocked one is offered again; an offered one gets a new price,
 * or (one time in three, or when a buyer holds it) is blocked. */
static void cmd_offer(run_t *r) {
    static const int which[3][2] = {{K_BLK, M_FR}, {K_WHT, M_DE}, {K_BLK, M_IN}};
    int pick = rng_below(&r->rng, 3);
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

/* Replaces a traded sale that has closed; at SALES_CAP the run moves to a new epoch (a fresh
 * ledger) at the end of the batch instead. */
static void cmd_new_sale(run_t *r) {
    model_t *m = &r->m;
    for (int slot = 0; slot < 2; slot++) {
        if (!m_closed(&m->sales[m->sc.slot[slot]], m->now)) continue;
        if (m->sc.nsales >= SALES_CAP) {
            r->epoch_due = true;
            break;
        }
        new_sale(r, slot);
        r->outcomes[OP_NEWSALE][FG_OK]++;
        return;
    }
    cmd_tick(r);
}

/* ---------------------------------------------------------------- setup and the run */

static void model_free(model_t *m) {
    free(m->sales);
    free(m->cnt);
    free(m->holds);
    free(m->orders);
    free(m->active);
    free(m->idem);
    free(m->fifo);
    free(m->used);
    free(m->undo);
    free(m->inflight);
}

static void remove_ledger_files(const run_t *r) {
    static const char *const names[] = {"floodgate.db", "floodgate.db-wal", "floodgate.db-shm",
                                        "engine.log"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[260];
        snprintf(path, sizeof path, "%s/%s", r->dir, names[i]);
        unlink(path);
    }
}

/* A fresh ledger, an engine loaded from it (empty, as a first start), the catalog, two sales and
 * BUYERS_START buyers, committed as the first batch. */
static void world_setup(run_t *r) {
    model_t *m = &r->m;
    int64_t now = m->now;
    long dropped = m->dropped_keys;
    memset(m, 0, sizeof *m);
    m->now = now;
    m->dropped_keys = dropped;
    m->idem_horizon = now - FG_IDEM_TTL_MS; /* as the first load sets it */
    m->sales = calloc(SALES_CAP, sizeof *m->sales);
    m->cnt = calloc((size_t)(BUYERS_MAX + 1) * SALES_CAP, sizeof *m->cnt);
    cr_assert(m->sales && m->cnt);
    ledger_open(r);
    engine_load(r);
    snprintf(r->op, sizeof r->op, "setup of epoch %d", r->epoch);
    catalog_put(r->e);
    for (int i = 0; i < OFFER_SEEDS; i++) {
        const offer_seed_t *o = &OFFER_SEED[i];
        put_offer(r, o->sku, o->market, o->blocked, o->price, o->reason);
    }
    new_sale(r, 0);
    new_sale(r, 1);
    for (int i = 0; i < BUYERS_START; i++) {
        char email[40];
        snprintf(email, sizeof email, "buyer%d@example.org", i + 1);
        uint8_t tok[32];
        token_of(email, tok);
        uint64_t gid = 0, wid = 0;
        cr_assert_eq(fg_engine_buyer_register(r->e, email, MARKETS[BUYER_MIX[i % 20]], tok, m->now,
                                              &gid), FG_OK);
        cr_assert_eq(m_register(m, email, BUYER_MIX[i % 20], &wid), FG_OK);
        cr_assert_eq(gid, wid);
    }
    snprintf(r->op, sizeof r->op, "setup of epoch %d: commit", r->epoch);
    r->batch_cmds = 0;
    flush(r);
}

/* At SALES_CAP sales (the engine allows FG_SALES_MAX) the run starts over on a fresh ledger, with
 * the same PRNG, so long runs go on for as long as asked. */
static void epoch_reset(run_t *r) {
    fg_engine_free(r->e);
    r->e = NULL;
    fg_ledger_close(r->ledger);
    r->ledger = NULL;
    remove_ledger_files(r);
    model_free(&r->m);
    free(r->reqs);
    free(r->cbs);
    free(r->recs);
    free(r->precs);
    r->reqs = NULL, r->cbs = NULL, r->recs = NULL, r->precs = NULL;
    r->nreqs = r->capreqs = r->ncbs = r->capcbs = r->nrecs = r->caprecs = 0;
    r->npr = r->capprecs = 0;
    r->late = 0;
    r->epoch++;
    r->epoch_due = false;
    world_setup(r);
}

static void start_batch(run_t *r) {
    int x = rng_below(&r->rng, 100);
    r->batch_left = x < 5 ? 1 : x < 75 ? 1 + rng_below(&r->rng, 20) : 20 + rng_below(&r->rng, 181);
    r->batch_cmds = 0;
}

static void step(run_t *r) {
    if (r->batch_left == 0) start_batch(r);
    r->touched_sale = -1;
    int x = rng_below(&r->rng, 10000);
    if (x < 2900) cmd_hold(r);
    else if (x < 3500) cmd_release(r);
    else if (x < 5100) cmd_order(r);
    else if (x < 6100) cmd_payment(r);
    else if (x < 7300) cmd_retry(r);
    else if (x < 7900) cmd_tick(r);
    else if (x < 9300) cmd_advance(r);
    else if (x < 9330) cmd_flags(r, OP_PAUSE);
    else if (x < 9450) cmd_flags(r, OP_RESUME);
    else if (x < 9580) cmd_add_stock(r);
    else if (x < 9592) cmd_flags(r, OP_CLOSE);
    else if (x < 9686) cmd_offer(r);
    else if (x < 9800) cmd_register(r);
    else cmd_new_sale(r);
    snprintf(r->recent[r->step % RECENT_OPS], sizeof r->recent[0], "%s (now=T0%+lld)", r->op,
             (long long)(r->m.now - T0));
    if (r->edge_restart) r->batch_left = 1;
    if (--r->batch_left == 0) {
        end_batch(r);
        if (r->epoch_due) {
            flush(r);
            epoch_reset(r);
        }
    }
}

/* After every step: the traded sales and the sale the step touched, and the counts (the command
 * itself compared its answer, hold and order). The engine's own full check (a scan of every
 * hold) runs at every batch end, where it costs less than 3% of the run, not at every step. */
static void check_step(run_t *r) {
    compare_counts(r, r->e);
    compare_sale(r, r->e, r->m.sc.slot[0]);
    compare_sale(r, r->e, r->m.sc.slot[1]);
    if (r->touched_sale >= 0 && r->touched_sale < r->m.sc.nsales)
        compare_sale(r, r->e, r->touched_sale);
    if (r->batch_left == 0) fg_engine_check(r->e);
}

/* The ledger's directory: FG_SIM_DIR, else /dev/shm (tmpfs: fsync costs nothing there, so
 * thousands of commits stay fast), else TMPDIR or /tmp. */
static void make_dir(run_t *r) {
    const char *base = getenv("FG_SIM_DIR");
    struct stat st;
    if (base == NULL || *base == '\0')
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                   ? "/dev/shm"
                   : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(r->dir, sizeof r->dir, "%s/floodgate-sim-XXXXXX", base);
    cr_assert_not_null(mkdtemp(r->dir), "mkdtemp %s: %s", r->dir, strerror(errno));
    snprintf(r->logpath, sizeof r->logpath, "%s/engine.log", r->dir);
}

/* Every case the generator is meant to reach must have happened, or the run tested less than
 * it claims. Only asserted on runs long enough to make each one near certain. */
static void expect_coverage(const run_t *r) {
    static const struct {
        int op;
        fg_err_t err;
    } need[] = {
        {OP_HOLD, FG_OK},           {OP_HOLD, FG_ERR_SOLD_OUT},    {OP_HOLD, FG_ERR_LIMIT_REACHED},
        {OP_HOLD, FG_ERR_NOT_OFFERED}, {OP_HOLD, FG_ERR_SALE_NOT_OPEN}, {OP_RELEASE, FG_OK},
        {OP_RELEASE, FG_ERR_HOLD_EXPIRED}, {OP_ORDER, FG_OK},   {OP_ORDER, FG_ERR_HOLD_EXPIRED},
        {OP_ORDER, FG_ERR_HOLD_NOT_ACTIVE}, {OP_PAY, FG_OK},    {OP_PAY, FG_ERR_HOLD_EXPIRED},
        {OP_REGISTER, FG_OK},       {OP_REGISTER, FG_ERR_BUYER_EXISTS}, {OP_CLOSE, FG_OK},
        {OP_NEWSALE, FG_OK},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        cr_expect_gt(r->outcomes[need[i].op][need[i].err], 0,
                     "seed=%llu: in %ld steps no %s answered %s", (unsigned long long)r->seed,
                     r->steps, OP_NAMES[need[i].op], err_name(need[i].err));
    for (int k = CR_BOUNDARY; k < NCRASH; k++)
        cr_expect_gt(r->crashes[k], 0, "seed=%llu: no crash of kind %s",
                     (unsigned long long)r->seed, CRASH_NAMES[k]);
    for (int k = 0; k < 4; k++)
        cr_expect_gt(r->idem[k], 0, "seed=%llu: no idempotency lookup answered %s",
                     (unsigned long long)r->seed, IDEM_NAMES[k]);
    cr_expect_gt(r->replays_across_restart, 0, "no stored answer replayed after a restart");
    cr_expect_gt(r->retried_new, 0, "no retry found its key free again (answer lost or refused)");
    cr_expect_gt(r->m.dropped_keys, 0, "no stored answer outlived FG_IDEM_TTL_MS");
    cr_expect_gt(r->admit_refused, 0, "no wrong token");
    cr_expect_gt(r->hook_replays, 0, "no replayed webhook signature refused");
    cr_expect_gt(r->hook_stale, 0, "no stale webhook signature");
    cr_expect_gt(r->lost_cmds, 0, "no acknowledged-looking command was lost in a crash");
    cr_expect_gt(r->expired_by_tick, 0, "no hold expired by tick");
}

static void print_summary(const run_t *r, double secs) {
    fprintf(stderr,
            "sim: seed=%llu steps=%ld in %.2f s: %d epoch(s), %ld batches (%ld committed, "
            "%ld commands acknowledged, %ld lost), %ld restarts, %ld full checks, digest %016llx\n"
            "  crashes:",
            (unsigned long long)r->seed, r->steps, secs, r->epoch + 1, r->batches, r->commits,
            r->acked_cmds, r->lost_cmds, r->restarts, r->full_checks,
            (unsigned long long)r->digest);
    for (int k = 1; k < NCRASH; k++) fprintf(stderr, " %s=%ld", CRASH_NAMES[k], r->crashes[k]);
    fprintf(stderr,
            "\n  idempotency: new=%ld replay=%ld in_flight=%ld mismatch=%ld, replayed across a "
            "restart=%ld, retried after loss or refusal=%ld, forgotten after 24 h=%ld, wrong "
            "token=%ld\n  webhooks: replays refused=%ld, stale=%ld; clock jumps over a minute=%ld; "
            "last epoch: %zu holds, %zu orders, %d sales, %d buyers\n",
            r->idem[0], r->idem[1], r->idem[2], r->idem[3], r->replays_across_restart,
            r->retried_new, r->m.dropped_keys, r->admit_refused, r->hook_replays, r->hook_stale,
            r->big_jumps, r->m.sc.nholds, r->m.sc.norders, r->m.sc.nsales, r->m.sc.nbuyers);
    print_outcomes((const long (*)[NERRS])r->outcomes, NOPS, OP_NAMES);
}

/* Runs the simulation; returns its digest (every answer, every batch end, every clock move). */
static uint64_t run_sim(uint64_t seed, long steps, bool quiet) {
    run_t *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->seed = seed;
    r->steps = steps;
    r->rng.s = seed;
    r->digest = FNV0;
    r->m.now = T0 - 10000;
    g_run = r;
    signal(SIGABRT, on_abort);
    make_dir(r);
    if (!quiet)
        fprintf(stderr, "sim: seed=%llu steps=%ld ledger in %s (replay: FG_SIM_SEED=%llu "
                        "FG_SIM_STEPS=%ld " REPLAY_CMD ")\n",
                (unsigned long long)seed, steps, r->dir, (unsigned long long)seed, steps);
    double t0 = mono_s();
    world_setup(r);
    for (r->step = 0; r->step < steps; r->step++) {
        step(r);
        check_step(r);
    }
    snprintf(r->op, sizeof r->op, "final batches");
    r->step = steps - 1;
    flush(r);
    restart(r, true); /* a last restart: everything acknowledged is on disk */
    double secs = mono_s() - t0;
    if (!quiet) print_summary(r, secs);
    if (!quiet && steps >= 20000) expect_coverage(r);
    uint64_t digest = r->digest;
    g_run = NULL;
    signal(SIGABRT, SIG_DFL);
    fg_engine_free(r->e);
    fg_ledger_close(r->ledger);
    remove_ledger_files(r);
    rmdir(r->dir);
    model_free(&r->m);
    free(r->reqs);
    free(r->cbs);
    free(r->recs);
    free(r->precs);
    free(r);
    return digest;
}

Test(sim, acknowledged_state_survives_crashes, .timeout = 1800) {
    run_sim(env_seed("FG_SIM_SEED", SEED_DEFAULT), env_long("FG_SIM_STEPS", STEPS_DEFAULT), false);
}

/* A new seed each run (from the clock, printed), so runs explore beyond the fixed seed. */
Test(sim, acknowledged_state_survives_crashes_on_a_fresh_seed, .timeout = 1800) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^ 0x5a5a5a5aULL;
    run_sim(env_seed("FG_SIM_SEED", seed), env_long("FG_SIM_STEPS", STEPS_DEFAULT) / 4, false);
}

/* Determinism: the simulated clock, the PRNG and the engine are the only inputs. (Every test here
 * has the same timeout: Criterion's runner leaks 48 bytes when tests with different timeouts
 * run in parallel, which fails the AddressSanitizer build.) */
Test(sim, same_seed_gives_the_same_run, .timeout = 1800) {
    uint64_t seed = env_seed("FG_SIM_SEED", SEED_DEFAULT) ^ 0x1234;
    uint64_t a = run_sim(seed, 8000, true);
    uint64_t b = run_sim(seed, 8000, true);
    uint64_t c = run_sim(seed + 1, 8000, true);
    cr_assert_eq(a, b, "seed %llu: two runs differ (digest %016llx vs %016llx)",
                 (unsigned long long)seed, (unsigned long long)a, (unsigned long long)b);
    cr_assert_neq(a, c, "seeds %llu and %llu gave the same digest: the digest sees nothing",
                  (unsigned long long)seed, (unsigned long long)seed + 1);
}
