/*
 * crowd.h — the simulated crowd: a table of buyers, the registration phase, and the sale
 * phase in which each buyer waits for the opening, holds, orders, and sometimes misbehaves on
 * purpose (the behaviour mix). All of it runs on one fgc_loop_t, on the calling thread.
 *
 * Memory: one 52-byte record per buyer (ids as integers, the token's secret as 32 bytes), so
 * a million buyers take about 52 MB; everything else is bounded by the connections.
 */
#ifndef FGC_CROWD_H
#define FGC_CROWD_H

#include <signal.h>
#include <stdio.h>

#include "crowd/loop.h"
#include "crowd/opts.h"
#include "crowd/record.h"

typedef struct fgc_crowd fgc_crowd_t;

/* A crowd per the options, on loop `l` (both must outlive it). `stop` (may be NULL) ends the
 * phase under way early when it becomes non-zero (SIGINT). NULL when memory runs out. */
fgc_crowd_t *fgc_crowd_new(const fgc_opts_t *o, fgc_loop_t *l, volatile sig_atomic_t *stop);
void fgc_crowd_free(fgc_crowd_t *c);

/* Creates the catalog, registers the buyers, creates the sale and runs the sale phase until
 * every buyer is done or --duration-s passes. Returns 0, or -1 when setup failed (the reason
 * is printed on stderr). */
FG_MUST_USE int fgc_crowd_run(fgc_crowd_t *c);

/* Prints the run's summary: sell-out time, rates, latency per step, answers. */
void fgc_crowd_summary(const fgc_crowd_t *c, FILE *out);

/* Moves what the crowd was told into `r` (initialised by the caller). Returns 0, or -1 when
 * memory runs out. */
FG_MUST_USE int fgc_crowd_record(fgc_crowd_t *c, fgc_record_t *r);

/* Adds to `r` every hold acknowledged with 201 that no acknowledged order covers and that was
 * not abandoned on purpose: its order was refused, unanswered or never sent (record.h). Returns
 * 0, or -1 when memory runs out. */
FG_MUST_USE int fgc_crowd_record_unordered(const fgc_crowd_t *c, fgc_record_t *r);

#endif
