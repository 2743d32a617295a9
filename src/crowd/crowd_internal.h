/*
 * crowd_internal.h — the crowd's state, shared by crowd.c (what one buyer does) and run.c
 * (the phases that drive all of them). Not for other modules.
 */
#ifndef FGC_CROWD_INTERNAL_H
#define FGC_CROWD_INTERNAL_H

#include <stdint.h>

#include "crowd/crowd.h"
#include "crowd/limits.h"
#include "crowd/report.h"

enum { K_PLAIN, K_ABANDON, K_OVER_LIMIT, K_BLOCKED, K_COUNT }; /* a buyer's kind */

enum {             /* what a buyer is doing; a buyer has at most one request or timer at a time */
       ST_WAITING, /* not started */
       ST_REGISTER,
       ST_HOLD,
       ST_ORDER,
       ST_REPLAY, /* the order again, same Idempotency-Key: the answer must be the same */
       ST_EXTRA,  /* one more unit past the limit */
       ST_DONE,
};

enum {                /* buyer flags */
       F_RETRIER = 1, /* retries timeouts, 5xx and idempotency_in_progress; replays its order */
       F_UNKNOWN = 2, /* gave up on a hold or order without a definite answer */
};

typedef struct {
    uint32_t id;       /* b_N, 0 until registered */
    uint32_t hold_id;  /* h_N of its (first) hold, 0 when none */
    uint32_t order_id; /* o_N, 0 when none */
    uint8_t secret[FGC_TOKEN_SECRET_BYTES];
    uint8_t kind, market, step, tries, flags, quantity;
} fgc_buyer_t;

_Static_assert(sizeof(fgc_buyer_t) <= 52, "a buyer stays small: a million must fit");

enum { P_REGISTER, P_SALE, P_DRAIN }; /* the crowd's phase */

typedef struct {
    uint64_t registered, register_failed;
    uint64_t hold_requests, holds_ok, hold_units;
    uint64_t orders_ok, order_units;
    uint64_t sold_out, abandoned, expired_before_order;
    uint64_t blocked_refused, limit_refused, limit_sold_out, replays_same;
    uint64_t errors, unexpected, gave_up, unknown, stopped;
} fgc_counts_t;

struct fgc_crowd {
    const fgc_opts_t *o;
    fgc_loop_t *loop;
    volatile sig_atomic_t *stop;
    fgc_client_t client;
    fgc_buyer_t *buyers;
    uint32_t n;
    char nonce[33]; /* random per run: the crowd's Idempotency-Keys and e-mails */
    char sale_id[65];
    uint64_t rng; /* arrivals and jitter (seeded) */
    int phase;
    uint32_t next;   /* the next buyer to start */
    uint32_t active; /* started and not done */
    uint64_t kinds[K_COUNT], retriers;
    fgc_counts_t n_;
    fgc_tally_t tally;
    fgc_progress_t progress;
    fgc_record_t rec; /* contract breaks seen live go here at once */
    /* times: monotonic ns, except *_ms (Unix ms) */
    int64_t reg_start_ns, reg_end_ns;
    int64_t open_ns, sale_end_ns, opens_at_ms;
    double next_arrival_s; /* open loop: seconds after the opening */
    int64_t first_sold_out_ns, exhausted_ns, last_hold_ok_ns;
    uint64_t holds_at_sold_out, units_at_sold_out; /* holds and units by the first sold_out */
    int64_t holds_end_ms; /* every hold placed so far has passed its TTL by then */
    const char *end_reason;
    uint64_t prog_holds; /* progress: holds at the last line, for holds/s */
    int64_t prog_ns;
};

/* Reasons given to requests cut off when the sale phase ends: one never sent, one whose answer
 * was still on its way (the server may have done it). Compared by address. */
extern const char fgc__why_not_sent[];
extern const char fgc__why_in_flight[];

/* crowd.c */
void fgc__crowd_client(fgc_crowd_t *c);                              /* fills c->client */
void fgc__crowd_start(fgc_crowd_t *c, uint32_t i, int64_t start_ns); /* buyer i begins */
uint64_t fgc__rand(fgc_crowd_t *c);                                  /* the seeded generator */

#endif
