/*
 * opts.c — command-line parsing for floodgate-crowd; see opts.h. Numbers are parsed with
 * strtoll/strtod and checked whole (no atoi), and every one against its limit in limits.h.
 */
#include "crowd/opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: floodgate-crowd --url http://HOST:PORT --admin-token T [options]\n"
    "       floodgate-crowd --url http://HOST:PORT --admin-token T --audit-only SALE_ID "
    "--expect FILE\n"
    "\n"
    "Simulates a launch-day crowd against a running floodgate server, then audits what the\n"
    "crowd was told against the server's own record. Exit 0: audit ok; 1: a violation; 2: bad\n"
    "options or setup failed; 3: the audit could not be done (the server did not answer).\n"
    "\n"
    "Target\n"
    "  --url URL            the server, http://HOST:PORT (default http://127.0.0.1:8080)\n"
    "  --admin-token T      the operator's token (default: $FLOODGATE_ADMIN_TOKEN); the crowd\n"
    "                       creates its catalog and sale, and reads stats and the export with it\n"
    "\n"
    "Crowd\n"
    "  --buyers N           buyers to register before the sale, 1..1000000 (default 10000)\n"
    "  --connections C      keep-alive connections, 1..10000 (default 100)\n"
    "  --rate R             open loop: R buyers arrive per second (Poisson) from the opening\n"
    "  --concurrency K      closed loop: K buyers active at once (default: --connections);\n"
    "                       give one of --rate and --concurrency\n"
    "  --timeout-ms MS      one request's answer must come within MS (default 10000)\n"
    "  --retries N          tries of one step after the first, with the same Idempotency-Key,\n"
    "                       backoff 100 ms doubling to 2 s, 0..200 (default 5); with\n"
    "                       --pct-retry 100 every buyer rides out a server restart or stall\n"
    "  --seed N             seed of the behaviour mix and arrivals (default 1)\n"
    "\n"
    "Sale (a new sale per run, of the crowd's own product)\n"
    "  --stock S            units for sale (default 1000)\n"
    "  --limit L            units per buyer, 1..100 (default 1)\n"
    "  --hold-ttl-s T       seconds a hold lasts, 10..3600 (default 30)\n"
    "  --opens-in-s O       the sale opens O s after it is created, once buyers are\n"
    "                       registered (default 5)\n"
    "  --duration-s D       hard bound on each phase, registration and then the sale from\n"
    "                       its opening (default 300); the sale also ends when every buyer\n"
    "                       is done (sold out and everyone answered)\n"
    "  --sale-id ID         the sale's id (default: crowd-<time>-<random>)\n"
    "\n"
    "Behaviour mix, in percent of buyers (the rest buy one unit plainly)\n"
    "  --pct-retry P        retry a missing answer (refused, reset, timeout), 5xx and 409\n"
    "                       idempotency_in_progress with the same Idempotency-Key, and replay\n"
    "                       each order to check the answer is the same (default 10; applies\n"
    "                       on top of the kinds below)\n"
    "  --pct-abandon P      hold a unit and never order it: the hold must expire (default 5)\n"
    "  --pct-over-limit P   after buying the limit, try one more unit: expects 403\n"
    "                       limit_reached (default 5)\n"
    "  --pct-blocked P      register in the market where the SKU is blocked: expects 403\n"
    "                       not_offered_in_market (default 3)\n"
    "  Every buyer honours Retry-After on 429 and 503, up to --retries times.\n"
    "\n"
    "Audit\n"
    "  --record FILE        write what the crowd was told (orders, abandoned holds) to FILE\n"
    "  --audit-only SALE_ID run no crowd: audit SALE_ID against the record in --expect FILE\n"
    "  --expect FILE        the record to audit against (written by --record)\n"
    "\n"
    "Report\n"
    "  --timeline FILE      write the sale phase as a time series to FILE, a row every 100 ms\n"
    "                       from the opening: elapsed s, units held, units sold, holds/s, hold\n"
    "                       latency p50 and p99 (ms) of the interval, hold answers in it\n"
    "  --help               this text\n";

static int bad(const char *opt, const char *why) {
    fprintf(stderr, "floodgate-crowd: %s: %s\n", opt, why);
    return -1;
}

static int num(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return bad(opt, "not a whole number");
    if (v < lo || v > hi) {
        fprintf(stderr, "floodgate-crowd: %s: between %lld and %lld\n", opt, (long long)lo,
                (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int num_int(const char *opt, const char *s, int64_t lo, int64_t hi, int *out) {
    int64_t v;
    if (num(opt, s, lo, hi, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

static int rate(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > FGC_RATE_PER_S_MAX)
        return bad("--rate", "a number of arrivals per second, above 0 and at most 1000000");
    *out = v;
    return 0;
}

static void defaults(fgc_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->url = "http://127.0.0.1:8080";
    o->admin_token = getenv("FLOODGATE_ADMIN_TOKEN");
    o->buyers = 10000;
    o->connections = 100;
    o->stock = 1000;
    o->limit = 1;
    o->hold_ttl_s = 30;
    o->opens_in_s = 5;
    o->duration_s = 300;
    o->seed = 1;
    o->timeout_ms = FGC_TIMEOUT_MS_DEFAULT;
    o->retries = FGC_RETRIES_DEFAULT;
    o->pct_retry = 10;
    o->pct_abandon = 5;
    o->pct_over_limit = 5;
    o->pct_blocked = 3;
}

enum {
    O_URL = 256,
    O_ADMIN,
    O_BUYERS,
    O_CONNS,
    O_RATE,
    O_CONC,
    O_STOCK,
    O_LIMIT,
    O_TTL,
    O_OPENS,
    O_DURATION,
    O_SEED,
    O_TIMEOUT,
    O_RETRIES,
    O_RETRY,
    O_ABANDON,
    O_OVER,
    O_BLOCKED,
    O_SALE,
    O_RECORD,
    O_AUDIT,
    O_EXPECT,
    O_TIMELINE,
    O_HELP
};

static const struct option long_opts[] = {{"url", required_argument, 0, O_URL},
                                          {"admin-token", required_argument, 0, O_ADMIN},
                                          {"buyers", required_argument, 0, O_BUYERS},
                                          {"connections", required_argument, 0, O_CONNS},
                                          {"rate", required_argument, 0, O_RATE},
                                          {"concurrency", required_argument, 0, O_CONC},
                                          {"stock", required_argument, 0, O_STOCK},
                                          {"limit", required_argument, 0, O_LIMIT},
                                          {"hold-ttl-s", required_argument, 0, O_TTL},
                                          {"opens-in-s", required_argument, 0, O_OPENS},
                                          {"duration-s", required_argument, 0, O_DURATION},
                                          {"seed", required_argument, 0, O_SEED},
                                          {"timeout-ms", required_argument, 0, O_TIMEOUT},
                                          {"retries", required_argument, 0, O_RETRIES},
                                          {"pct-retry", required_argument, 0, O_RETRY},
                                          {"pct-abandon", required_argument, 0, O_ABANDON},
                                          {"pct-over-limit", required_argument, 0, O_OVER},
                                          {"pct-blocked", required_argument, 0, O_BLOCKED},
                                          {"sale-id", required_argument, 0, O_SALE},
                                          {"record", required_argument, 0, O_RECORD},
                                          {"audit-only", required_argument, 0, O_AUDIT},
                                          {"expect", required_argument, 0, O_EXPECT},
                                          {"timeline", required_argument, 0, O_TIMELINE},
                                          {"help", no_argument, 0, O_HELP},
                                          {0, 0, 0, 0}};

static int one(fgc_opts_t *o, int c, const char *a) {
    int64_t v;
    switch (c) {
    case O_URL: o->url = a; return 0;
    case O_ADMIN: o->admin_token = a; return 0;
    case O_BUYERS: return num("--buyers", a, 1, FGC_BUYERS_MAX, &o->buyers);
    case O_CONNS: return num_int("--connections", a, 1, FGC_CONNECTIONS_MAX, &o->connections);
    case O_RATE: return rate(a, &o->rate_per_s);
    case O_CONC: return num("--concurrency", a, 1, FGC_BUYERS_MAX, &o->concurrency);
    case O_STOCK: return num("--stock", a, 0, FGC_STOCK_MAX, &o->stock);
    case O_LIMIT: return num_int("--limit", a, 1, FGC_LIMIT_PER_BUYER_MAX, &o->limit);
    case O_TTL:
        return num_int("--hold-ttl-s", a, FGC_HOLD_TTL_S_MIN, FGC_HOLD_TTL_S_MAX, &o->hold_ttl_s);
    case O_OPENS: return num_int("--opens-in-s", a, 0, FGC_OPENS_IN_S_MAX, &o->opens_in_s);
    case O_DURATION: return num_int("--duration-s", a, 1, FGC_DURATION_S_MAX, &o->duration_s);
    case O_SEED:
        if (num("--seed", a, 0, INT64_MAX, &v) != 0) return -1;
        o->seed = (uint64_t)v;
        return 0;
    case O_TIMEOUT:
        return num_int("--timeout-ms", a, FGC_TIMEOUT_MS_MIN, FGC_TIMEOUT_MS_MAX, &o->timeout_ms);
    case O_RETRIES: return num_int("--retries", a, 0, FGC_RETRIES_MAX, &o->retries);
    case O_RETRY: return num_int("--pct-retry", a, 0, 100, &o->pct_retry);
    case O_ABANDON: return num_int("--pct-abandon", a, 0, 100, &o->pct_abandon);
    case O_OVER: return num_int("--pct-over-limit", a, 0, 100, &o->pct_over_limit);
    case O_BLOCKED: return num_int("--pct-blocked", a, 0, 100, &o->pct_blocked);
    case O_SALE: o->sale_id = a; return 0;
    case O_RECORD: o->record_path = a; return 0;
    case O_AUDIT: o->audit_only = a; return 0;
    case O_EXPECT: o->expect_path = a; return 0;
    case O_TIMELINE: o->timeline_path = a; return 0;
    default: return bad("options", "unknown option (see --help)");
    }
}

static bool valid_id(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

static int check(fgc_opts_t *o) {
    if (o->admin_token == NULL || o->admin_token[0] == '\0')
        return bad("--admin-token", "required (or set FLOODGATE_ADMIN_TOKEN)");
    if (o->rate_per_s > 0 && o->concurrency > 0)
        return bad("--rate", "give either --rate (open loop) or --concurrency (closed loop)");
    if (o->pct_abandon + o->pct_over_limit + o->pct_blocked > 100)
        return bad("--pct-*", "abandon + over-limit + blocked must be at most 100");
    if (o->sale_id && !valid_id(o->sale_id))
        return bad("--sale-id", "1-64 characters of A-Z a-z 0-9 . _ -");
    if (o->audit_only && (!valid_id(o->audit_only) || o->expect_path == NULL))
        return bad("--audit-only", "needs a sale id and --expect FILE");
    if (o->rate_per_s <= 0 && o->concurrency == 0) o->concurrency = o->connections;
    if (o->concurrency > o->buyers) o->concurrency = o->buyers;
    return 0;
}

int fgc_opts_parse(int argc, char **argv, fgc_opts_t *o) {
    defaults(o);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == O_HELP) {
            fputs(usage, stdout);
            return 1;
        }
        if (c == '?') return bad(argv[optind - 1], "unknown option or missing value (see --help)");
        if (one(o, c, optarg) != 0) return -1;
    }
    if (optind < argc) return bad(argv[optind], "unexpected argument (see --help)");
    return check(o);
}
