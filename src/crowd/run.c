/*
 * run.c — the crowd's phases: registration (closed loop over every connection), the wait for
 * the opening, the sale (open loop at --rate, or closed loop at --concurrency), and the drain
 * that ends a phase; then the summary and the record. crowd.c has what each buyer does.
 *
 * Every loop here is bounded in time (--duration-s per phase, FGC_DRAIN_MS_MAX for the drain)
 * and in count (each iteration waits at most FGC_LOOP_WAIT_MS_MAX, or starts a bounded number
 * of arrivals).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "crowd/crowd_internal.h"
#include "crowd/setup.h"
#include "util/clock.h"

#define NS_PER_S  1000000000LL
#define NS_PER_MS 1000000LL

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser: a seeded hash of a buyer index */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The behaviour mix: a buyer's kind, market and retrier flag follow from (seed, index). */
static void assign(fgc_crowd_t *c) {
    const fgc_opts_t *o = c->o;
    for (uint32_t i = 0; i < c->n; i++) {
        fgc_buyer_t *b = &c->buyers[i];
        uint64_t h = mix(o->seed * 0x100000001b3ULL ^ i);
        int u = (int)(h % 100), r = (int)((h >> 32) % 100);
        b->kind = u < o->pct_abandon                                        ? K_ABANDON
                  : u < o->pct_abandon + o->pct_over_limit                  ? K_OVER_LIMIT
                  : u < o->pct_abandon + o->pct_over_limit + o->pct_blocked ? K_BLOCKED
                                                                            : K_PLAIN;
        b->market =
            b->kind == K_BLOCKED ? FGC_MARKET_BLOCKED : (uint8_t)((h >> 16) % FGC_MARKETS_OFFERED);
        b->flags = r < o->pct_retry ? F_RETRIER : 0;
        b->quantity = (uint8_t)(b->kind == K_OVER_LIMIT ? o->limit : 1);
        c->kinds[b->kind]++;
        c->retriers += (b->flags & F_RETRIER) != 0;
    }
}

fgc_crowd_t *fgc_crowd_new(const fgc_opts_t *o, fgc_loop_t *l, volatile sig_atomic_t *stop) {
    fgc_crowd_t *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->o = o;
    c->loop = l;
    c->stop = stop;
    c->n = (uint32_t)o->buyers;
    c->buyers = calloc(c->n, sizeof *c->buyers);
    uint8_t rnd[16];
    if (c->buyers == NULL || getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        fgc_crowd_free(c);
        return NULL;
    }
    for (int i = 0; i < 16; i++)
        snprintf(c->nonce + 2 * i, 3, "%02x", rnd[i]);
    if (o->sale_id)
        snprintf(c->sale_id, sizeof c->sale_id, "%s", o->sale_id);
    else
        snprintf(c->sale_id, sizeof c->sale_id, "crowd-%lld-%.6s",
                 (long long)(fg_clock_now_ms() / 1000), c->nonce);
    c->rng = o->seed ^ 0x5eed5eed5eed5eedULL;
    assign(c);
    fgc_tally_init(&c->tally);
    fgc_progress_init(&c->progress);
    fgc_record_init(&c->rec);
    fgc__crowd_client(c);
    return c;
}

void fgc_crowd_free(fgc_crowd_t *c) {
    if (c == NULL) return;
    (void)fgc_timeline_close(&c->tally.timeline);
    fgc_record_free(&c->rec);
    free(c->buyers);
    free(c);
}

static bool stopped(const fgc_crowd_t *c) {
    return c->stop != NULL && *c->stop != 0;
}

static int step(fgc_crowd_t *c, int64_t wait_ns) {
    int wait_ms = wait_ns <= 0 ? 0 : (int)((wait_ns + NS_PER_MS - 1) / NS_PER_MS);
    if (wait_ms > FGC_LOOP_WAIT_MS_MAX) wait_ms = FGC_LOOP_WAIT_MS_MAX;
    return fgc_loop_step(c->loop, wait_ms);
}

/* Ends a phase: nothing new is sent, answers on their way get FGC_DRAIN_MS_MAX to arrive, the
 * rest are cut off, and every buyer still mid-step is done (its outcome possibly unknown). */
static void drain(fgc_crowd_t *c) {
    c->phase = P_DRAIN;
    fgc_loop_drop_queued(c->loop, fgc__why_not_sent);
    int64_t until = fg_clock_mono_ns() + FGC_DRAIN_MS_MAX * NS_PER_MS;
    while (fgc_loop_inflight(c->loop) > 0 && fg_clock_mono_ns() < until)
        if (step(c, FGC_LOOP_WAIT_MS_MAX * NS_PER_MS) != 0) break;
    fgc_loop_abort_all(c->loop, fgc__why_in_flight);
    for (uint32_t i = 0; i < c->n; i++) { /* buyers that were waiting on a retry timer */
        fgc_buyer_t *b = &c->buyers[i];
        if (b->step == ST_WAITING || b->step == ST_DONE) continue;
        if (b->step == ST_HOLD || b->step == ST_ORDER || b->step == ST_EXTRA) b->flags |= F_UNKNOWN;
        c->n_.stopped++;
        b->step = ST_DONE;
        c->active--;
    }
    FG_ASSERT(c->active == 0);
}

static void fill(fgc_crowd_t *c, uint64_t concurrency) {
    while (c->active < concurrency && c->next < c->n)
        fgc__crowd_start(c, c->next++, 0);
}

/* ---- registration ------------------------------------------------------------------------ */

static void register_progress(fgc_crowd_t *c, int64_t now) {
    char bar[40], done[32], total[32], rate[32], line[200];
    uint64_t d = c->n_.registered + c->n_.register_failed;
    double s = (double)(now - c->reg_start_ns) / NS_PER_S;
    fgc_progress_bar(bar, sizeof bar, d, c->n, 20);
    snprintf(line, sizeof line, "register %s %s/%s buyers  %s/s  errors %llu", bar,
             fgc_fmt_count(d, done), fgc_fmt_count(c->n, total),
             fgc_fmt_count(s > 0 ? (uint64_t)((double)d / s) : 0, rate),
             (unsigned long long)c->n_.errors);
    fgc_progress_show(&c->progress, line);
}

static void register_all(fgc_crowd_t *c) {
    c->phase = P_REGISTER;
    c->reg_start_ns = fg_clock_mono_ns();
    int64_t deadline = c->reg_start_ns + (int64_t)c->o->duration_s * NS_PER_S;
    uint64_t k = (uint64_t)c->o->connections;
    fill(c, k);
    while ((c->next < c->n || c->active > 0) && !stopped(c)) {
        int64_t now = fg_clock_mono_ns();
        if (now >= deadline) break;
        if (fgc_progress_due(&c->progress, now)) register_progress(c, now);
        if (step(c, FGC_LOOP_WAIT_MS_MAX * NS_PER_MS) != 0) break;
        fill(c, k);
    }
    if (c->next < c->n || c->active > 0) drain(c);
    c->reg_end_ns = fg_clock_mono_ns();
    register_progress(c, c->reg_end_ns);
    fgc_progress_end(&c->progress);
}

/* ---- the sale ---------------------------------------------------------------------------- */

static void wait_until(fgc_crowd_t *c, int64_t t_ns) {
    for (int64_t now = fg_clock_mono_ns(); now < t_ns && !stopped(c); now = fg_clock_mono_ns()) {
        if (fgc_progress_due(&c->progress, now)) {
            char line[160];
            snprintf(line, sizeof line, "sale %s opens in %.1f s", c->sale_id,
                     (double)(c->open_ns - now) / NS_PER_S);
            fgc_progress_show(&c->progress, line);
        }
        if (step(c, t_ns - now) != 0) return;
    }
}

/* Open loop: starts every buyer whose Poisson arrival time has come; returns the next one's. */
static int64_t arrive(fgc_crowd_t *c, int64_t now) {
    for (int k = 0; k < FGC_ARRIVALS_PER_STEP_MAX && c->next < c->n; k++) {
        int64_t at = c->open_ns + (int64_t)(c->next_arrival_s * NS_PER_S);
        if (at > now) return at;
        fgc__crowd_start(c, c->next++, at); /* latency counts from when the buyer arrived */
        double u = (double)(fgc__rand(c) >> 11) * 0x1.0p-53;
        c->next_arrival_s += -log(1.0 - u) / c->o->rate_per_s;
    }
    return c->next < c->n ? now : INT64_MAX;
}

static void sale_progress(fgc_crowd_t *c, int64_t now) {
    char bar[40], sold[32], stock[32], rate[32], line[240];
    int64_t since = c->prog_ns > c->open_ns ? c->prog_ns : c->open_ns; /* holds/s: last period */
    double dt = (double)(now - since) / NS_PER_S;
    uint64_t rate_v = dt > 0 ? (uint64_t)((double)(c->n_.holds_ok - c->prog_holds) / dt) : 0;
    c->prog_ns = now;
    c->prog_holds = c->n_.holds_ok;
    fgc_progress_bar(bar, sizeof bar, c->n_.order_units, (uint64_t)c->o->stock, 20);
    snprintf(line, sizeof line, "sale +%.1fs %s sold %s/%s  holds %s/s  active %u  errors %llu",
             (double)(now - c->open_ns) / NS_PER_S, bar, fgc_fmt_count(c->n_.order_units, sold),
             fgc_fmt_count((uint64_t)c->o->stock, stock), fgc_fmt_count(rate_v, rate),
             (unsigned)c->active, (unsigned long long)c->n_.errors);
    fgc_progress_show(&c->progress, line);
}

static void sell(fgc_crowd_t *c) {
    c->phase = P_SALE;
    c->next = 0;
    wait_until(c, c->open_ns - FGC_WARMUP_MS * NS_PER_MS);
    fgc_loop_connect_all(c->loop); /* the opening burst should not pay for connects */
    wait_until(c, c->open_ns);
    int64_t deadline = c->open_ns + (int64_t)c->o->duration_s * NS_PER_S;
    bool open_loop = c->o->rate_per_s > 0;
    c->end_reason = "every buyer is done";
    for (;;) {
        int64_t now = fg_clock_mono_ns(), next_at = INT64_MAX;
        if (open_loop)
            next_at = arrive(c, now);
        else
            fill(c, (uint64_t)c->o->concurrency);
        if (c->next >= c->n && c->active == 0) break;
        if (now >= deadline || stopped(c)) {
            c->end_reason = stopped(c) ? "interrupted" : "--duration-s passed";
            break;
        }
        if (fgc_progress_due(&c->progress, now)) sale_progress(c, now);
        fgc_timeline_tick(&c->tally.timeline, c->open_ns, now, c->n_.holds_ok, c->n_.hold_units,
                          c->n_.order_units, false);
        int64_t wait = next_at - now < FGC_LOOP_WAIT_MS_MAX * NS_PER_MS
                           ? next_at - now
                           : FGC_LOOP_WAIT_MS_MAX * NS_PER_MS;
        if (step(c, wait) != 0) {
            c->end_reason = "epoll failed";
            break;
        }
    }
    c->sale_end_ns = fg_clock_mono_ns();
    drain(c);
    sale_progress(c, fg_clock_mono_ns());
    fgc_progress_end(&c->progress);
    fgc_timeline_tick(&c->tally.timeline, c->open_ns, fg_clock_mono_ns(), c->n_.holds_ok,
                      c->n_.hold_units, c->n_.order_units, true);
    (void)fgc_timeline_close(&c->tally.timeline); /* a failed write is reported there */
}

int fgc_crowd_run(fgc_crowd_t *c) {
    char err[512];
    const char *tok = c->o->admin_token;
    if (c->o->timeline_path != NULL &&
        fgc_timeline_open(&c->tally.timeline, c->o->timeline_path, err, sizeof err) != 0) {
        fprintf(stderr, "floodgate-crowd: --timeline %s\n", err);
        return -1;
    }
    if (fgc_setup_ready(c->loop, c->o->retries, err, sizeof err) != 0 ||
        fgc_setup_catalog(c->loop, c->o->retries, tok, err, sizeof err) != 0) {
        fprintf(stderr, "floodgate-crowd: setup: %s\n", err);
        return -1;
    }
    register_all(c);
    if (stopped(c)) {
        fprintf(stderr, "floodgate-crowd: interrupted during registration\n");
        return -1;
    }
    if (c->n_.registered == 0) {
        fprintf(stderr, "floodgate-crowd: no buyer could register\n");
        return -1;
    }
    char key[64];
    snprintf(key, sizeof key, "%s-sale", c->nonce);
    int64_t now_ms = fg_clock_now_ms(), now_ns = fg_clock_mono_ns();
    c->opens_at_ms = now_ms + (int64_t)c->o->opens_in_s * 1000;
    if (fgc_setup_sale(c->loop, c->o->retries, tok, c->sale_id, c->opens_at_ms, c->o->stock,
                       c->o->limit, c->o->hold_ttl_s, key, err, sizeof err) != 0) {
        fprintf(stderr, "floodgate-crowd: setup: %s\n", err);
        return -1;
    }
    c->open_ns = now_ns + (c->opens_at_ms - now_ms) * NS_PER_MS;
    c->holds_end_ms = c->opens_at_ms;
    sell(c);
    return 0;
}
