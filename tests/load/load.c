/*
 * load.c — floodgate-load: an open-loop load generator for floodgate's holds.
 *
 * This file reads the options, sets up the catalog and a sale through the operator API,
 * registers the buyers, and hands over to run.c for the holds. Usage: floodgate-load --help.
 *
 * Exit status: 0 when the run completed (whatever the server answered: the summary says what it
 * did), 1 on a usage error, 2 when setup, registration or connecting failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

#include "load/load.h"
#include "util/clock.h"

static const char usage[] =
    "usage: floodgate-load --url http://127.0.0.1:PORT --admin-token T (--rate R | --closed)\n"
    "                      [--duration-s D] [--connections C] [--buyers N] [--limit L]\n"
    "                      [--after-s A] [--after-rate R2] [--normal-us U] [--timeout-ms MS]\n"
    "                      [--sale-id ID] [--server-pid PID] [--quiet]\n"
    "\n"
    "Creates a sale of " FGL_SKU_ID " (stock 100,000,000, market " FGL_MARKET
    ", limit L per buyer, default 100),\n"
    "registers N buyers (default 1000), then sends holds from them in turn for D seconds\n"
    "(default 10) over C keep-alive connections (default 1000):\n"
    "  --rate R     open loop: R arrivals per second, whatever the answers; an arrival that finds\n"
    "               every connection busy is counted as not sent in time, never delayed\n"
    "  --closed     closed loop: each connection sends again as soon as it has an answer\n"
    "  --after-s A  then A seconds more at --after-rate R2 (default 200/s): the recovery,\n"
    "               back to normal from the first 100 ms window after which every window has\n"
    "               only 2xx answers and (--normal-us U) a median latency within U us\n"
    "Prints a line per second (unless --quiet) and, last, one JSON line: the summary.\n"
    "--server-pid samples the server's RSS and CPU every second.\n";

/* ---------------------------------------------------------------- options */

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_rate(const char *s, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0) || v > FGL_RATE_PER_S_MAX) return -1;
    *out = v;
    return 0;
}

/* Accepts http://IPv4:PORT[/]: floodgate-load drives a server on this machine. */
static int parse_url(const char *url, fgl_opts_t *o) {
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : NULL;
    if (p == NULL || strlen(p) >= sizeof o->host) return -1;
    snprintf(o->host, sizeof o->host, "%s", p);
    size_t n = strlen(o->host);
    if (n > 0 && o->host[n - 1] == '/') o->host[--n] = '\0';
    char *colon = strrchr(o->host, ':');
    long port;
    if (colon == NULL || parse_int(colon + 1, 1, 65535, &port) != 0) return -1;
    *colon = '\0';
    o->addr.sin_family = AF_INET;
    o->addr.sin_port = htons((uint16_t)port);
    int ok = inet_pton(AF_INET, o->host, &o->addr.sin_addr);
    *colon = ':';
    return ok == 1 ? 0 : -1;
}

/* One option with a value; returns 0, or -1 (unknown option or bad value). */
static int parse_one(fgl_opts_t *o, const char *k, const char *v) {
    long n = 0;
    if (strcmp(k, "--url") == 0) return parse_url(v, o);
    if (strcmp(k, "--admin-token") == 0) return (o->admin_token = v)[0] ? 0 : -1;
    if (strcmp(k, "--rate") == 0) return parse_rate(v, &o->rate_per_s);
    if (strcmp(k, "--after-rate") == 0) return parse_rate(v, &o->after_rate_per_s);
    if (strcmp(k, "--sale-id") == 0) {
        if (strlen(v) == 0 || strlen(v) > FGL_ID_BYTES_MAX ||
            strspn(v, "abcdefghijklmnopqrstuvwxyz"
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") != strlen(v))
            return -1;
        snprintf(o->sale_id, sizeof o->sale_id, "%s", v);
        return 0;
    }
    int *dst = NULL;
    long lo = 1, hi = 0;
    if (strcmp(k, "--duration-s") == 0) dst = &o->duration_s, hi = FGL_DURATION_S_MAX;
    if (strcmp(k, "--connections") == 0) dst = &o->connections, hi = FGL_CONNECTIONS_MAX;
    if (strcmp(k, "--buyers") == 0) dst = &o->buyers, hi = FGL_BUYERS_MAX;
    if (strcmp(k, "--limit") == 0) dst = &o->limit_per_buyer, hi = FGL_LIMIT_PER_BUYER;
    if (strcmp(k, "--after-s") == 0) dst = &o->after_s, lo = 0, hi = FGL_AFTER_S_MAX;
    if (strcmp(k, "--timeout-ms") == 0)
        dst = &o->timeout_ms, lo = FGL_TIMEOUT_MS_MIN, hi = FGL_TIMEOUT_MS_MAX;
    if (strcmp(k, "--server-pid") == 0) dst = &o->server_pid, hi = 1 << 22;
    if (strcmp(k, "--normal-us") == 0) {
        if (parse_int(v, 0, 60000000, &n) != 0) return -1;
        o->normal_us = n;
        return 0;
    }
    if (dst == NULL || parse_int(v, lo, hi, &n) != 0) return -1;
    *dst = (int)n;
    return 0;
}

static int parse_opts(int argc, char **argv, fgl_opts_t *o) {
    *o = (fgl_opts_t){.connections = 1000,
                      .buyers = 1000,
                      .limit_per_buyer = FGL_LIMIT_PER_BUYER,
                      .timeout_ms = FGL_TIMEOUT_MS_DEFAULT,
                      .duration_s = 10,
                      .after_rate_per_s = 200};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (strcmp(k, "--help") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (strcmp(k, "--closed") == 0 || strcmp(k, "--quiet") == 0) {
            *(k[2] == 'c' ? &o->closed : &o->quiet) = true;
            continue;
        }
        if (i + 1 >= argc || parse_one(o, k, argv[i + 1]) != 0) {
            fprintf(stderr, "floodgate-load: bad option %s %s\n%s", k,
                    i + 1 < argc ? argv[i + 1] : "", usage);
            return -1;
        }
        i++;
    }
    if (o->host[0] == '\0' || o->admin_token == NULL || o->closed == (o->rate_per_s > 0)) {
        fprintf(stderr, "floodgate-load: --url, --admin-token and one of --rate, --closed\n%s",
                usage);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- answers */

static void register_answer(fgl_run_t *r, const fgl_answer_t *a) {
    uint32_t b = a->tag;
    if (a->status == 201) {
        json_t *j = json_loads(a->body, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "token"));
        if (t != NULL && strlen(t) < FGL_TOKEN_BYTES_MAX) {
            snprintf(r->tokens[b], FGL_TOKEN_BYTES_MAX, "%s", t);
            r->registered++;
        } else {
            r->register_failed++;
            snprintf(r->register_error, sizeof r->register_error, "201 without a token: %.200s",
                     a->body);
        }
        json_decref(j);
        return;
    }
    /* Shed or lost: the same Idempotency-Key again later (a lost 201 is replayed). */
    if ((a->status == 0 || fgl_is_shed(a->status)) && ++r->tries[b] < FGL_REGISTER_TRIES_MAX) {
        r->retry[r->retry_len++] = b;
        return;
    }
    r->register_failed++;
    snprintf(r->register_error, sizeof r->register_error, "buyer %u: %d %.200s", b, a->status,
             a->status ? a->body : a->error);
}

void fgl_on_answer(void *ctx, const fgl_answer_t *a) {
    fgl_run_t *r = ctx;
    switch (a->kind) {
    case FGL_K_SETUP:
        r->call_done = true;
        r->call_status = a->status;
        snprintf(r->call_body, sizeof r->call_body, "%s", a->status ? a->body : a->error);
        return;
    case FGL_K_REGISTER: register_answer(r, a); return;
    default: fgl_run_answer(r, a); return;
    }
}

/* ---------------------------------------------------------------- setup */

/* One operator call, waited for; 0 when it answers ok1 or ok2, else -1 with a message. */
static int call(fgl_run_t *r, const char *method, const char *path, const char *body, int ok1,
                int ok2) {
    char idem[FGL_IDEM_KEY_BYTES_MAX];
    snprintf(idem, sizeof idem, "s%s-%.40s", r->run_id, path + strlen(path) / 2);
    fgl_request_t rq = {.method = method,
                        .path = path,
                        .token = r->o.admin_token,
                        .idem = strcmp(method, "POST") == 0 ? idem : NULL,
                        .body = body,
                        .kind = FGL_K_SETUP,
                        .keep_body = true,
                        .start_ns = fg_clock_mono_ns()};
    r->call_done = false;
    int64_t deadline = rq.start_ns + (int64_t)FGL_SETUP_CALL_MS_MAX * 1000000;
    while (!fgl_pool_send(r->pool, &rq) && fg_clock_mono_ns() < deadline)
        fgl_pool_poll(r->pool, fg_clock_mono_ns() + 1000000);
    while (!r->call_done && fg_clock_mono_ns() < deadline)
        fgl_pool_poll(r->pool, deadline);
    if (r->call_done && (r->call_status == ok1 || r->call_status == ok2)) return 0;
    fprintf(stderr, "floodgate-load: %s %s: %d %s\n", method, path,
            r->call_done ? r->call_status : 0, r->call_done ? r->call_body : "no answer in time");
    return -1;
}

static int setup(fgl_run_t *r) {
    char path[256], body[512];
    if (call(r, "PUT", "/admin/v1/markets/" FGL_MARKET,
             "{\"name\":\"Germany\",\"currency\":\"EUR\"}", 200, 201) != 0 ||
        call(r, "PUT", "/admin/v1/products/" FGL_PRODUCT_ID,
             "{\"name\":\"Load phone\",\"skus\":[{\"id\":\"" FGL_SKU_ID
             "\",\"name\":\"Load phone\"}]}",
             200, 201) != 0 ||
        call(r, "PUT", "/admin/v1/skus/" FGL_SKU_ID "/offers/" FGL_MARKET,
             "{\"price_minor\":99900}", 200, 200) != 0)
        return -1;
    /* Opened long ago, a stock no run can sell out, a week's hold time: every hold the server
     * accepts stays held, so holds never turn into refusals or expiry writes mid-run. */
    snprintf(body, sizeof body,
             "{\"id\":\"%s\",\"name\":\"floodgate-load\",\"opens_at\":\"2020-01-01T00:00:00Z\","
             "\"limit_per_buyer\":%d,\"hold_ttl_s\":3600,\"items\":[{\"sku\":\"" FGL_SKU_ID
             "\",\"stock\":100000000,\"markets\":[\"" FGL_MARKET "\"]}]}",
             r->o.sale_id, r->o.limit_per_buyer);
    snprintf(path, sizeof path, "/admin/v1/sales");
    return call(r, "POST", path, body, 201, 201);
}

/* ---------------------------------------------------------------- registration */

static bool send_register(fgl_run_t *r, uint32_t b) {
    char body[160], idem[FGL_IDEM_KEY_BYTES_MAX];
    snprintf(body, sizeof body,
             "{\"email\":\"load-%s-%u@example.com\",\"market\":\"" FGL_MARKET "\"}", r->run_id, b);
    snprintf(idem, sizeof idem, "r%s-%u", r->run_id, b);
    fgl_request_t rq = {.method = "POST",
                        .path = "/v1/buyers",
                        .idem = idem,
                        .body = body,
                        .tag = b,
                        .kind = FGL_K_REGISTER,
                        .keep_body = true,
                        .start_ns = fg_clock_mono_ns()};
    return fgl_pool_send(r->pool, &rq);
}

/* Registers every buyer with at most FGL_REGISTER_CONNS_MAX in flight (well below any shedding
 * limit, so registration measures nothing and disturbs nothing). */
static int register_buyers(fgl_run_t *r) {
    int64_t t0 = fg_clock_mono_ns();
    int64_t deadline = t0 + (int64_t)FGL_REGISTER_S_MAX * 1000000000;
    int in_flight_max =
        r->o.connections < FGL_REGISTER_CONNS_MAX ? r->o.connections : FGL_REGISTER_CONNS_MAX;
    uint32_t next = 0;
    while (r->registered + r->register_failed < r->o.buyers && r->register_failed == 0 &&
           fg_clock_mono_ns() < deadline) {
        while (fgl_pool_busy(r->pool) < in_flight_max &&
               (r->retry_len > 0 || next < (uint32_t)r->o.buyers)) {
            uint32_t b = r->retry_len > 0 ? r->retry[r->retry_len - 1] : next;
            if (!send_register(r, b)) break;
            if (r->retry_len > 0)
                r->retry_len--;
            else
                next++;
        }
        fgl_pool_poll(r->pool, fg_clock_mono_ns() + 10000000);
    }
    if (r->registered == r->o.buyers) {
        if (!r->o.quiet)
            printf("registered %d buyers in %.2f s\n", r->registered,
                   (double)(fg_clock_mono_ns() - t0) / 1e9);
        return 0;
    }
    fprintf(stderr, "floodgate-load: registered %d of %d buyers: %s\n", r->registered, r->o.buyers,
            r->register_failed ? r->register_error : "out of time");
    return -1;
}

/* ---------------------------------------------------------------- main */

static int raise_fd_limit(int need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur >= (rlim_t)need) return 0;
    if (rl.rlim_max < (rlim_t)need) return -1;
    rl.rlim_cur = (rlim_t)need;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

static int alloc_run(fgl_run_t *r) {
    size_t n = (size_t)r->o.buyers;
    r->tokens = calloc(n, sizeof *r->tokens);
    r->retry = calloc(n, sizeof *r->retry);
    r->tries = calloc(n, sizeof *r->tries);
    r->total = malloc(sizeof *r->total);
    r->second = malloc(sizeof *r->second);
    r->after = malloc(sizeof *r->after);
    r->probes = calloc(FGL_PROBES_MAX, sizeof *r->probes);
    r->seconds_cap = r->o.duration_s + r->o.after_s + FGL_DRAIN_MS_MAX / 1000 + 2;
    r->seconds = calloc((size_t)r->seconds_cap, sizeof *r->seconds);
    if (!r->tokens || !r->retry || !r->tries || !r->total || !r->second || !r->after ||
        !r->probes || !r->seconds)
        return -1;
    fgl_tally_reset(r->total);
    fgl_tally_reset(r->second);
    fgl_tally_reset(r->after);
    fgc_latency_init(&r->lag);
    return 0;
}

static void free_run(fgl_run_t *r) {
    fgl_pool_free(r->pool);
    free(r->tokens);
    free(r->retry);
    free(r->tries);
    free(r->total);
    free(r->second);
    free(r->after);
    free(r->probes);
    free(r->seconds);
}

int main(int argc, char **argv) {
    static fgl_run_t run;
    fgl_run_t *r = &run;
    if (parse_opts(argc, argv, &r->o) != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    uint8_t rnd[4];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) return 2;
    snprintf(r->run_id, sizeof r->run_id, "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    if (r->o.sale_id[0] == '\0')
        snprintf(r->o.sale_id, sizeof r->o.sale_id, "load-%.16s", r->run_id);
    int rc = 2;
    if (raise_fd_limit(r->o.connections + 64) != 0) {
        fprintf(stderr, "floodgate-load: cannot open %d files (ulimit -n)\n",
                r->o.connections + 64);
        return 2;
    }
    r->pool =
        fgl_pool_new(&r->o.addr, r->o.host, r->o.connections, r->o.timeout_ms, fgl_on_answer, r);
    if (r->pool == NULL || alloc_run(r) != 0) {
        fprintf(stderr, "floodgate-load: out of memory\n");
        goto done;
    }
    if (fgl_pool_open(r->pool, fg_clock_mono_ns() + (int64_t)FGL_CONNECT_MS_MAX * 1000000) != 0) {
        fprintf(stderr, "floodgate-load: could not open %d connections to %s\n", r->o.connections,
                r->o.host);
        goto done;
    }
    if (setup(r) != 0 || register_buyers(r) != 0) goto done;
    if (fgl_run_holds(r) != 0) {
        fprintf(stderr, "floodgate-load: out of memory\n");
        goto done;
    }
    fgl_run_summary(r);
    rc = 0;
done:
    free_run(r);
    return rc;
}
