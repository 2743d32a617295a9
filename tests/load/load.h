/*
 * load.h — floodgate-load's run: its options and the state its phases share (load.c: options,
 * setup, registration; run.c: the holds phases, per-second lines and the summary).
 *
 * A run creates (or reuses) a catalog and a new sale with a large stock, registers its buyers,
 * then sends holds from them at a fixed arrival rate (open loop) or as fast as its connections
 * allow (closed loop, to find capacity), and optionally, after that, at a low rate for a while to
 * see how soon the server is back to normal. Single-threaded.
 */
#ifndef FGL_LOAD_H
#define FGL_LOAD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "crowd/latency.h"
#include "load/limits.h"
#include "load/pool.h"
#include "load/tally.h"

typedef struct {
    struct sockaddr_in addr;
    char host[FGL_URL_BYTES_MAX]; /* Host header */
    const char *admin_token;
    int connections;
    int buyers;
    int limit_per_buyer;
    int timeout_ms;
    double rate_per_s; /* 0 with closed */
    bool closed;       /* closed loop: every connection sends again as soon as answered */
    int duration_s;
    int after_s;
    double after_rate_per_s;
    int64_t normal_us; /* the after phase: a window with a slower median is not normal */
    char sale_id[FGL_ID_BYTES_MAX + 1];
    int server_pid; /* 0: none; else its RSS and CPU are sampled every second */
    bool quiet;     /* no per-second lines */
} fgl_opts_t;

/* What a run sells: one SKU of one product, in one market. */
#define FGL_SKU_ID     "load-sku"
#define FGL_PRODUCT_ID "load-phone"
#define FGL_MARKET     "DE"

enum { FGL_K_SETUP, FGL_K_REGISTER, FGL_K_HOLD, FGL_K_AFTER };

/* One answer of the after phase. */
typedef struct {
    int64_t offset_us; /* when it was due, from the end of the main phase */
    int64_t latency_us;
    int status;
} fgl_probe_t;

/* One second of the main phase (answers counted in the second they arrive). */
typedef struct {
    int t_s;
    uint64_t offered, sent, not_sent, ok, shed, other, no_answer;
    uint64_t shed_without_retry_after;
    int64_t accepted_p50_us, accepted_p99_us, shed_p50_us, shed_p99_us;
    long rss_kb;  /* the server's, -1 when not sampled */
    double cpu_s; /* the server's CPU time in this second */
} fgl_second_t;

typedef struct {
    fgl_opts_t o;
    fgl_pool_t *pool;
    char run_id[17];
    char (*tokens)[FGL_TOKEN_BYTES_MAX]; /* buyer i's bearer token */

    /* one operator call at a time (setup) */
    bool call_done;
    int call_status;
    char call_body[FGL_BODY_BYTES_MAX + 1];

    /* registration */
    uint32_t *retry; /* buyers to register again (their first tries were shed) */
    int retry_len;
    uint8_t *tries;
    int registered, register_failed;
    char register_error[256];

    /* holds */
    uint64_t hold_seq;   /* holds sent: picks the buyer and the Idempotency-Key */
    fgl_tally_t *total;  /* the main phase */
    fgl_tally_t *second; /* the current second of the main phase */
    fgl_tally_t *after;  /* the after phase */
    fgc_latency_t lag;   /* µs from an arrival's due time to when the generator handled it */
    fgl_second_t *seconds;
    int seconds_len, seconds_cap;
    int64_t main_start_ns, main_end_ns, second_start_ns;
    bool in_main; /* answers go to `second` and `total` */
    fgl_probe_t *probes;
    int probes_len;
    uint64_t probes_dropped;
    long rss_start_kb, rss_max_kb, rss_end_kb;
    double cpu_start_s, cpu_prev_s, cpu_main_s;
    double gen_cpu_s; /* the generator's own CPU during the main phase */
} fgl_run_t;

/* Handles every answer of the pool (all phases). */
void fgl_on_answer(void *ctx, const fgl_answer_t *a);
/* Answers of the hold phases; called by fgl_on_answer. */
void fgl_run_answer(fgl_run_t *r, const fgl_answer_t *a);
/* The main phase, then the after phase, then the drain. Returns 0, or -1 on out of memory. */
FG_MUST_USE int fgl_run_holds(fgl_run_t *r);
/* Prints the summary JSON line to stdout. */
void fgl_run_summary(fgl_run_t *r);
/* The server's RSS (kB) and CPU time (s) from /proc; -1 when unknown. */
void fgl_server_sample(int pid, long *rss_kb, double *cpu_s);

#endif
