/*
 * report.h — what the crowd prints: answers counted by step, status and code, latency per
 * step, the live progress line, and numbers with thousands separators.
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

typedef struct {
    fgc_latency_t latency[FGC_STEP_COUNT];
    fgc_tally_row_t rows[FGC_TALLY_ROWS_MAX];
    size_t row_count;
    uint64_t rows_dropped; /* answers of a kind past the table's size */
} fgc_tally_t;

const char *fgc_step_name(fgc_step_t s);

void fgc_tally_init(fgc_tally_t *t);
/* Counts one answer (`status` 0 when none came; `code` the problem code, "" when none) and its
 * latency. */
void fgc_tally_add(fgc_tally_t *t, fgc_step_t step, int status, const char *code,
                   int64_t latency_ns);
/* Prints the latency table (p50 p90 p99 p99.9 max per step) and the answers table. */
void fgc_tally_print(const fgc_tally_t *t, FILE *out);

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
