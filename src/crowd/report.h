/*
 * report.h — what the crowd prints: answers counted by step, status and code, latency per
 * step, the live progress line, the sale's timeline (--timeline), and numbers with thousands
 * separators.
 *
 * Progress goes to stderr: on a terminal a one-line bar redrawn about four times a second,
 * otherwise a plain line every few seconds (so logs stay readable). Summaries go to stdout.
 */
#ifndef FGC_REPORT_H
#define FGC_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "crowd/latency.h"
#include "crowd/limits.h"
#include "util/check.h"

typedef enum {
    FGC_STEP_REGISTER,
    FGC_STEP_HOLD,
    FGC_STEP_ORDER,
    FGC_STEP_REPLAY, /* an order sent again with its Idempotency-Key */
    FGC_STEP_EXTRA,  /* a hold past the per-buyer limit */
    FGC_STEP_CHECK,  /* the audit's GET of an abandoned hold */
    FGC_STEP_COUNT
} fgc_step_t;

typedef struct {
    uint8_t step;
    int status;
    char code[FGC_CODE_BYTES_MAX];
    uint64_t count;
} fgc_tally_row_t;

/* The sale phase as a time series (--timeline FILE), for plotting: a row about every
 * FGC_TIMELINE_MS from the opening with the units held and sold so far, the holds placed in the
 * interval per second, and the latency (p50, p99) of the hold answers received in the interval.
 * Plain text, one row per line, columns separated by spaces, a '#' header line. */
typedef struct {
    FILE *f; /* NULL: no timeline */
    const char *path;
    int64_t last_ns; /* end of the last row's interval; 0 before the first */
    uint64_t last_holds;
    uint64_t rows;
    fgc_latency_t hold; /* hold answers received since the last row */
} fgc_timeline_t;

typedef struct {
    fgc_latency_t latency[FGC_STEP_COUNT];
    fgc_tally_row_t rows[FGC_TALLY_ROWS_MAX];
    size_t row_count;
    uint64_t rows_dropped;   /* answers of a kind past the table's size */
    fgc_timeline_t timeline; /* fed with hold latencies while it is open */
} fgc_tally_t;

const char *fgc_step_name(fgc_step_t s);

void fgc_tally_init(fgc_tally_t *t);
/* Counts one answer (`status` 0 when none came; `code` the problem code, "" when none) and its
 * latency. */
void fgc_tally_add(fgc_tally_t *t, fgc_step_t step, int status, const char *code,
                   int64_t latency_ns);
/* Prints the latency table (p50 p90 p99 p99.9 max per step) and the answers table. */
void fgc_tally_print(const fgc_tally_t *t, FILE *out);

/* Creates the timeline file and writes its header. 0, or -1 with the reason in err. */
FG_MUST_USE int fgc_timeline_open(fgc_timeline_t *t, const char *path, char *err, size_t cap);
/* Writes a row when FGC_TIMELINE_MS have passed since the last one (or `force`): seconds since
 * `open_ns`, the crowd's running counts, and the interval's rate and hold latency. Does nothing
 * when the timeline is closed. */
void fgc_timeline_tick(fgc_timeline_t *t, int64_t open_ns, int64_t now_ns, uint64_t holds_ok,
                       uint64_t units_held, uint64_t units_sold, bool force);
/* Closes the file (again: nothing). 0, or -1 when a write failed (the reason is printed). */
int fgc_timeline_close(fgc_timeline_t *t);

typedef struct {
    bool tty;
    bool drawn; /* a bar is on the screen: the next plain line starts after it */
    int64_t next_ns;
    int64_t period_ns;
} fgc_progress_t;

void fgc_progress_init(fgc_progress_t *p);
/* True (and the next one scheduled) when a progress line is due. */
bool fgc_progress_due(fgc_progress_t *p, int64_t now_ns);
/* Shows `line`: redrawn in place on a terminal, a new line otherwise. */
void fgc_progress_show(fgc_progress_t *p, const char *line);
/* Ends a bar on the screen so the next output starts on a fresh line. */
void fgc_progress_end(fgc_progress_t *p);
/* "[#####.....]" for done of total, `width` cells, into out (cap at least width + 3). */
void fgc_progress_bar(char *out, size_t cap, uint64_t done, uint64_t total, int width);

/* 1234567 -> "1,234,567" into a caller buffer of at least 32 bytes; returns it. */
const char *fgc_fmt_count(uint64_t v, char *out);

#endif
