/*
 * record.h — what the crowd was told, kept for the audit: every order acknowledged with 201,
 * every hold that was abandoned (to check it expired), every other acknowledged hold that no
 * acknowledged order covers (to check it exists), contract breaks seen live, and the sale's
 * parameters. The crowd builds it from its buyers after the run; --record writes it to
 * a file and --audit-only reads it back, so the audit of a live run and of a file is the same
 * code.
 *
 * The file is text, one fact per line:
 *   floodgate-crowd record 1
 *   sale <id> sku <sku> stock <n> limit <n> blocked <CC> holds_end_ms <unix ms> unknown <n>
 *   order o_<n> h_<n> b_<n> <CC> <quantity>
 *   abandoned h_<n> <buyer token>
 *   unordered h_<n> <buyer token>
 *   observed <text to the end of the line>
 * `holds_end_ms` is when every hold the crowd may have placed has passed its TTL: the TTL after
 * the end (answer, timeout or cut-off) of its last hold request. `unknown` counts buyers whose
 * last hold or order request got no definite answer (the server may have done it).
 * An `unordered` hold was acknowledged with 201 and then not ordered with a 201 answer: its
 * order was refused (it expired first), or got no answer, or the run ended before it. The hold
 * must exist all the same (I3); it is `expired`, or `ordered` when its order's answer was lost.
 */
#ifndef FGC_RECORD_H
#define FGC_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crowd/limits.h"
#include "util/check.h"

typedef struct {
    uint32_t order_id, hold_id, buyer_id;
    uint16_t quantity;
    char market[3];
    bool seen; /* the audit found it in the export */
} fgc_told_order_t;

typedef struct {
    uint32_t hold_id, buyer_id;
    uint8_t secret[FGC_TOKEN_SECRET_BYTES];
} fgc_told_hold_t;

typedef struct {
    char sale_id[65];
    char sku[65];
    char blocked[3];
    int64_t stock;
    int limit;
    int64_t holds_end_ms;
    uint64_t unknown;
    fgc_told_order_t *orders;
    size_t order_count, order_cap;
    fgc_told_hold_t *abandoned;
    size_t abandoned_count, abandoned_cap;
    fgc_told_hold_t *unordered;
    size_t unordered_count, unordered_cap;
    char **observed; /* at most FGC_VIOLATIONS_KEPT_MAX kept */
    size_t observed_count;
    uint64_t observed_total;
} fgc_record_t;

void fgc_record_init(fgc_record_t *r);
void fgc_record_free(fgc_record_t *r);

/* Each returns 0, or -1 when memory runs out. */
FG_MUST_USE int fgc_record_order(fgc_record_t *r, const fgc_told_order_t *o);
FG_MUST_USE int fgc_record_abandoned(fgc_record_t *r, const fgc_told_hold_t *h);
FG_MUST_USE int fgc_record_unordered(fgc_record_t *r, const fgc_told_hold_t *h);
/* A contract break the crowd saw itself (a 201 where a refusal was due, a replay that
 * differs). Counted always; the text is kept for the first FGC_VIOLATIONS_KEPT_MAX. */
void fgc_record_observe(fgc_record_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns 0, or -1 with the reason in err. */
FG_MUST_USE int fgc_record_write(const fgc_record_t *r, const char *path, char *err, size_t cap);
FG_MUST_USE int fgc_record_read(fgc_record_t *r, const char *path, char *err, size_t cap);

#endif
