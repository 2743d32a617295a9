/*
 * opts.h — floodgate-crowd's command line: every option, its default, and its limits.
 */
#ifndef FGC_OPTS_H
#define FGC_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "crowd/limits.h"

typedef struct {
    const char *url;         /* http://HOST:PORT */
    const char *admin_token; /* --admin-token or FLOODGATE_ADMIN_TOKEN */
    int64_t buyers;
    int connections;
    double rate_per_s;   /* open loop when > 0 */
    int64_t concurrency; /* closed loop: buyers active at once (default: connections) */
    int64_t stock;
    int limit;
    int hold_ttl_s;
    int opens_in_s;
    int duration_s;
    uint64_t seed;
    int timeout_ms;
    int retries; /* tries of one step after the first, with the same Idempotency-Key */
    int pct_retry, pct_abandon, pct_over_limit, pct_blocked;
    const char *sale_id;       /* --sale-id, else generated */
    const char *record_path;   /* --record FILE */
    const char *audit_only;    /* --audit-only SALE_ID */
    const char *expect_path;   /* --expect FILE, with --audit-only */
    const char *timeline_path; /* --timeline FILE */
} fgc_opts_t;

/* Parses argv into `o` (defaults first). Returns 0 to run, 1 when --help was printed (exit 0),
 * -1 when an option is wrong (the reason is printed on stderr; exit 2). */
int fgc_opts_parse(int argc, char **argv, fgc_opts_t *o);

#endif
