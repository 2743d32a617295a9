/*
 * summary.c — the crowd's end-of-run summary and its record for the audit (crowd.h).
 */
#include <stdio.h>
#include <string.h>

#include "crowd/crowd_internal.h"
#include "crowd/setup.h"

#define NS_PER_S 1e9

static double secs(int64_t from_ns, int64_t to_ns) {
    return (double)(to_ns - from_ns) / NS_PER_S;
}

static double per_s(uint64_t n, double s) {
    return s > 0 ? (double)n / s : 0;
}

static void head(const fgc_crowd_t *c, FILE *out) {
    const fgc_opts_t *o = c->o;
    char a[32], b[32], d[32], e[32], f[32], g[32];
    fprintf(out,
            "  sale         %s: %s units of %s in DE FR IN (blocked in US), limit %d, hold "
            "TTL %d s\n",
            c->sale_id, fgc_fmt_count((uint64_t)o->stock, a), FGC_SKU_ID, o->limit, o->hold_ttl_s);
    fprintf(out,
            "  crowd        %s buyers: %s plain, %s abandon, %s over-limit, %s blocked "
            "market; %s retriers\n",
            fgc_fmt_count(c->n, a), fgc_fmt_count(c->kinds[K_PLAIN], b),
            fgc_fmt_count(c->kinds[K_ABANDON], d), fgc_fmt_count(c->kinds[K_OVER_LIMIT], e),
            fgc_fmt_count(c->kinds[K_BLOCKED], f), fgc_fmt_count(c->retriers, g));
    if (o->rate_per_s > 0)
        fprintf(out, "  load         %d connections, open loop: %.0f arrivals/s (Poisson)\n",
                o->connections, o->rate_per_s);
    else
        fprintf(out, "  load         %d connections, closed loop: %lld buyers at once\n",
                o->connections, (long long)o->concurrency);
    double rs = secs(c->reg_start_ns, c->reg_end_ns);
    fprintf(out, "  register     %s buyers in %.2f s (%s/s), %s failed\n",
            fgc_fmt_count(c->n_.registered, a), rs,
            fgc_fmt_count((uint64_t)per_s(c->n_.registered, rs), b),
            fgc_fmt_count(c->n_.register_failed, d));
}

/* Sell-out and holds: the rate is taken up to the sell-out (or to the last hold when the sale
 * did not sell out), so a slow tail of late answers does not dilute it. */
static void sellout(const fgc_crowd_t *c, FILE *out) {
    char a[32], b[32], d[32], e[32], f[32];
    const fgc_counts_t *n = &c->n_;
    double phase = secs(c->open_ns, c->sale_end_ns);
    double last = c->last_hold_ok_ns ? secs(c->open_ns, c->last_hold_ok_ns) : 0;
    double rate = per_s(n->holds_ok, last);
    fprintf(out, "  sale phase   %.2f s from the opening (ended: %s)\n", phase,
            c->end_reason ? c->end_reason : "not run");
    if (c->first_sold_out_ns) {
        double s = secs(c->open_ns, c->first_sold_out_ns);
        rate = per_s(c->holds_at_sold_out, s);
        fprintf(out,
                "  sell-out     %.3f s after the opening (first sold_out answer); %s units "
                "held by then\n",
                s, fgc_fmt_count(c->units_at_sold_out, a));
    } else if (c->exhausted_ns) {
        fprintf(out,
                "  sell-out     %.3f s after the opening (all units held; no sold_out answer)\n",
                secs(c->open_ns, c->exhausted_ns));
    } else {
        fprintf(out, "  sell-out     not sold out (%s of %s units held)\n",
                fgc_fmt_count(n->hold_units, a), fgc_fmt_count((uint64_t)c->o->stock, b));
    }
    fprintf(out,
            "  holds        %s placed (%s units): %s holds/s to the %s; the last at %.3f s; %s "
            "hold requests (%s/s over the phase)\n",
            fgc_fmt_count(n->holds_ok, a), fgc_fmt_count(n->hold_units, b),
            fgc_fmt_count((uint64_t)rate, d), c->first_sold_out_ns ? "sell-out" : "last hold", last,
            fgc_fmt_count(n->hold_requests, e),
            fgc_fmt_count((uint64_t)per_s(n->hold_requests, phase), f));
}

static void sale(const fgc_crowd_t *c, FILE *out) {
    char a[32], b[32], d[32], e[32];
    const fgc_counts_t *n = &c->n_;
    sellout(c, out);
    fprintf(out,
            "  orders       %s paid (%s units); %s holds abandoned; %s expired before their "
            "order\n",
            fgc_fmt_count(n->orders_ok, a), fgc_fmt_count(n->order_units, b),
            fgc_fmt_count(n->abandoned, d), fgc_fmt_count(n->expired_before_order, e));
    fprintf(out,
            "  probes       past the limit: %s refused limit_reached, %s sold out first; "
            "blocked market: %s refused; replays: %s identical\n",
            fgc_fmt_count(n->limit_refused, a), fgc_fmt_count(n->limit_sold_out, b),
            fgc_fmt_count(n->blocked_refused, d), fgc_fmt_count(n->replays_same, e));
}

static void errors(const fgc_crowd_t *c, FILE *out) {
    char a[32], b[32], d[32], e[32];
    const fgc_counts_t *n = &c->n_;
    const fgc_loop_stats_t *s = fgc_loop_stats(c->loop);
    fprintf(out,
            "  errors       %s (no answer or 5xx); %s unexpected answers; %s gave up; %s "
            "cut off by the end\n",
            fgc_fmt_count(n->errors, a), fgc_fmt_count(n->unexpected, b),
            fgc_fmt_count(n->gave_up, d), fgc_fmt_count(n->stopped, e));
    fprintf(out,
            "  connections  %s opened, %s connects failed, %s timeouts, %s requests resent "
            "after a stale keep-alive\n",
            fgc_fmt_count(s->connects, a), fgc_fmt_count(s->connect_failures, b),
            fgc_fmt_count(s->timeouts, d), fgc_fmt_count(s->resends, e));
}

void fgc_crowd_summary(const fgc_crowd_t *c, FILE *out) {
    fprintf(out, "floodgate-crowd summary\n");
    head(c, out);
    sale(c, out);
    errors(c, out);
    if (c->tally.timeline.path != NULL)
        fprintf(out, "  timeline     %llu rows in %s\n", (unsigned long long)c->tally.timeline.rows,
                c->tally.timeline.path);
    fgc_tally_print(&c->tally, out);
    fflush(out);
}

int fgc_crowd_record(fgc_crowd_t *c, fgc_record_t *r) {
    snprintf(r->sale_id, sizeof r->sale_id, "%s", c->sale_id);
    snprintf(r->sku, sizeof r->sku, "%s", FGC_SKU_ID);
    snprintf(r->blocked, sizeof r->blocked, "%s", fgc_markets[FGC_MARKET_BLOCKED].code);
    r->stock = c->o->stock;
    r->limit = c->o->limit;
    r->holds_end_ms = c->holds_end_ms;
    for (uint32_t i = 0; i < c->n; i++) {
        const fgc_buyer_t *b = &c->buyers[i];
        r->unknown += (b->flags & F_UNKNOWN) != 0;
        if (b->order_id != 0) {
            fgc_told_order_t o = {.order_id = b->order_id,
                                  .hold_id = b->hold_id,
                                  .buyer_id = b->id,
                                  .quantity = b->quantity};
            memcpy(o.market, fgc_markets[b->market].code, 3);
            if (fgc_record_order(r, &o) != 0) return -1;
        } else if (b->kind == K_ABANDON && b->hold_id != 0) {
            fgc_told_hold_t h = {.hold_id = b->hold_id, .buyer_id = b->id};
            memcpy(h.secret, b->secret, sizeof h.secret);
            if (fgc_record_abandoned(r, &h) != 0) return -1;
        }
    }
    for (size_t i = 0; i < c->rec.observed_count; i++)
        fgc_record_observe(r, "%s", c->rec.observed[i]);
    r->observed_total += c->rec.observed_total - c->rec.observed_count;
    return 0;
}
