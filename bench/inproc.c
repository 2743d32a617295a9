/*
 * inproc.c — durable holds per second with no HTTP in front: floodgate's writer, engine and
 * ledger in this process, the figure that tells what HTTP costs.
 *
 * The server's path without its sockets: a command per hold goes through the single writer,
 * which applies it to the engine and commits its batch to the SQLite ledger (WAL,
 * synchronous=FULL, group commit) before the answer is released (I3), exactly as for a parked
 * HTTP request. `--inflight K` commands are outstanding at any moment, like K keep-alive
 * connections each waiting for its answer; client threads (`--threads`, like the server's HTTP
 * loop threads) send the next one when an answer comes back.
 *
 * Two layers can be measured:
 *   engine  the writer's own commands: buyer check (admit), Idempotency-Key gate, the hold,
 *           the answer rendered as the server renders it; tokens pre-hashed. Writer + engine +
 *           ledger and nothing else.
 *   api     the request as the HTTP layer hands it over (fg_api_handle: routing, JSON parsing,
 *           token and key hashing), then fg_api_submit. The server minus HTTP.
 *
 * The catalog, the sale and the buyers are set up through the API, as a client would. Output is
 * one line of key=value pairs on stdout (bench/compare reads it); progress goes to stderr.
 * Bounded: every phase is bounded in count or in time, and waiting for answers is bounded by
 * INPROC_WAIT_MS.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/internal.h"
#include "crowd/latency.h"
#include "engine/writer.h"
#include "ledger/ledger.h"
#include "util/clock.h"

#define INPROC_INFLIGHT_MAX   FG_PARKED_MAX /* the server parks no more than this */
#define INPROC_THREADS_MAX    16
#define INPROC_BUYERS_MAX     1000000
#define INPROC_DURATION_S_MAX 3600
#define INPROC_WAIT_MS        10000       /* longest wait for any answer: then the run fails */
#define INPROC_BODY_BYTES_MAX 256         /* a request body this bench builds */
#define INPROC_STOCK          100000000LL /* never sells out: every hold is a durable write */
#define INPROC_LIMIT          100         /* holds per buyer; buyers x limit bounds a run */
#define INPROC_ADMIN_TOKEN    "inproc-admin-token-0123456789"
#define INPROC_SALE           "bench"
#define INPROC_SKU            "bench-sku"
#define NS_PER_S              1000000000LL

_Static_assert(INPROC_INFLIGHT_MAX <= FG_QUEUE_DEPTH_MAX, "the writer's queue takes them all");

typedef enum { LAYER_ENGINE, LAYER_API } layer_t;
typedef enum { PHASE_REGISTER, PHASE_HOLD } phase_t;

typedef struct {
    uint64_t id;
    uint8_t secret_hash[32];
    char token[FG_TOKEN_BYTES_MAX + 1];
} buyer_t;

typedef struct client client_t;

/* One outstanding request. The writer sees &api.cmd; after its done callback it is the owning
 * client thread's again. */
typedef struct slot {
    fg_api_slot_t api;
    client_t *owner;
    uint32_t buyer; /* index into the run's buyers */
    int64_t sent_ns;
    struct slot *next_done;
} slot_t;

typedef struct run run_t;

struct client {
    run_t *run;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    slot_t *done;      /* answered, guarded by mu */
    slot_t *slots;
    int slot_count;
    uint64_t seq; /* Idempotency-Keys of this thread */
    /* results of the phase, this thread's */
    uint64_t ok, refused, lost;
    fgc_latency_t latency;
    int64_t last_ns;
};

struct run {
    layer_t layer;
    int threads, inflight, duration_s;
    uint32_t buyer_count;
    const char *data_dir;
    fg_ledger_t *ledger;
    fg_writer_t *writer;
    fg_api_t *api;
    buyer_t *buyers;
    phase_t phase;
    atomic_uint_fast32_t next_buyer; /* registration: the next index to register */
    int64_t deadline_ns;             /* holds: none sent after it */
    client_t clients[INPROC_THREADS_MAX];
};

/* ---------------------------------------------------------------- answers */

static void on_done(fg_cmd_t *cmd) {
    slot_t *s = cmd->ctx;
    client_t *c = s->owner;
    pthread_mutex_lock(&c->mu);
    s->next_done = c->done;
    c->done = s;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Frees what the previous request of the slot still owns, as the server does per request. */
static void slot_reset(slot_t *s) {
    fg_api_slot_release(&s->api);
    free(s->api.cmd.body);
    free(s->api.cmd.idem_body);
    memset(&s->api, 0, sizeof s->api);
}

/* ---------------------------------------------------------------- the engine layer */

static void exec_hold(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    slot_t *s = cmd->ctx;
    const buyer_t *b = &s->owner->run->buyers[s->buyer];
    const fg_hold_t *h = NULL;
    fg_err_t err = fg_engine_hold(e, b->id, INPROC_SALE, INPROC_SKU,
                                  fg_engine_buyer_market(e, b->id), 1, now_ms, &h);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t body;
    fg_buf_init(&body, 4096);
    fg__render_hold(&body, e, h);
    fg__ok(cmd, 201, &body);
}

static bool admit_buyer(fg_engine_t *e, fg_cmd_t *cmd) {
    slot_t *s = cmd->ctx;
    const buyer_t *b = &s->owner->run->buyers[s->buyer];
    if (fg_engine_buyer_auth(e, b->id, b->secret_hash) == FG_OK) return true;
    fg_cmd_problem(cmd, 401, "unauthorized", "the buyer token is not valid");
    return false;
}

/* A hold command as the API would build it: the key kept as a hash, the fingerprint binding
 * it to the request. */
static bool submit_engine_hold(client_t *c, slot_t *s) {
    char key[64];
    static const char request[] =
        "POST /v1/sales/" INPROC_SALE "/holds {\"sku\":\"" INPROC_SKU "\"}";
    snprintf(key, sizeof key, "t%d-%llu", (int)(c - c->run->clients), (unsigned long long)c->seq);
    fg_cmd_t *cmd = &s->api.cmd;
    cmd->exec = exec_hold;
    cmd->admit = admit_buyer;
    cmd->has_idem = true;
    cmd->idem_scope = c->run->buyers[s->buyer].id;
    uint8_t kh[32];
    crypto_generichash(kh, sizeof kh, (const unsigned char *)key, strlen(key), NULL, 0);
    sodium_bin2hex(cmd->idem_key, sizeof cmd->idem_key, kh, sizeof kh);
    cmd->idem_hash = fg_engine_idem_hash(cmd->idem_scope, cmd->idem_key); /* as the API does */
    crypto_generichash(cmd->fingerprint, sizeof cmd->fingerprint, (const unsigned char *)request,
                       sizeof request - 1, NULL, 0);
    return fg_writer_submit(c->run->writer, cmd);
}

/* ---------------------------------------------------------------- the API layer */

typedef struct {
    fg_method_t method;
    char path[128];
    char auth[FG_TOKEN_BYTES_MAX + 16];
    char key[64];
    char body[INPROC_BODY_BYTES_MAX];
} request_t;

/* Hands the request to the API as the HTTP layer does. true when it was submitted; false when
 * the API answered at once (the answer is then in the slot, already "done"). */
static bool api_submit(fg_api_t *api, slot_t *s, const request_t *rq) {
    fg_api_request_t r = {
        .method = rq->method,
        .path = rq->path,
        .query = "",
        .authorization = rq->auth[0] ? rq->auth : NULL,
        .idempotency_key = rq->key[0] ? rq->key : NULL,
        .body = rq->body,
        .body_len = strlen(rq->body),
        .client_ip = "127.0.0.1",
    };
    fg_api_answer_t ans = {0};
    fg_route_t route;
    fg_answer_kind_t kind = fg_api_handle(api, &r, &s->api, &ans, &route);
    FG_ASSERT(kind != FG_ANSWER_STREAM);
    if (kind == FG_ANSWER_NOW) {
        s->api.cmd.status = ans.status;
        s->api.cmd.body = ans.body;
        return false;
    }
    s->api.cmd.done = on_done;
    s->api.cmd.ctx = s;
    if (fg_api_submit(api, &s->api)) return true;
    fg_cmd_problem(&s->api.cmd, 503, "overloaded", "the writer refused the command");
    return false;
}

static void hold_request(client_t *c, const slot_t *s, request_t *rq) {
    memset(rq, 0, sizeof *rq);
    rq->method = FG_POST;
    snprintf(rq->path, sizeof rq->path, "/v1/sales/%s/holds", INPROC_SALE);
    snprintf(rq->auth, sizeof rq->auth, "Bearer %s", c->run->buyers[s->buyer].token);
    snprintf(rq->key, sizeof rq->key, "t%d-%llu", (int)(c - c->run->clients),
             (unsigned long long)c->seq);
    snprintf(rq->body, sizeof rq->body, "{\"sku\":\"%s\"}", INPROC_SKU);
}

static void register_request(uint32_t i, request_t *rq) {
    memset(rq, 0, sizeof *rq);
    rq->method = FG_POST;
    snprintf(rq->path, sizeof rq->path, "/v1/buyers");
    snprintf(rq->key, sizeof rq->key, "reg-%u", (unsigned)i);
    snprintf(rq->body, sizeof rq->body, "{\"email\":\"buyer%u@inproc.example\",\"market\":\"DE\"}",
             (unsigned)i);
}

/* ---------------------------------------------------------------- client threads */

/* Sends the next request on slot s; false when the phase has nothing more to send. */
static bool send_next(client_t *c, slot_t *s) {
    run_t *r = c->run;
    slot_reset(s);
    s->owner = c;
    request_t rq;
    if (r->phase == PHASE_REGISTER) {
        uint32_t i = (uint32_t)atomic_fetch_add(&r->next_buyer, 1);
        if (i >= r->buyer_count) return false;
        s->buyer = i;
        register_request(i, &rq);
    } else {
        if (fg_clock_mono_ns() >= r->deadline_ns) return false;
        s->buyer = (uint32_t)((c->seq * 7919 + (uint64_t)(c - r->clients)) % r->buyer_count);
        if (r->layer == LAYER_API) hold_request(c, s, &rq);
    }
    c->seq++;
    s->sent_ns = fg_clock_mono_ns();
    bool submitted;
    if (r->phase == PHASE_HOLD && r->layer == LAYER_ENGINE) {
        s->api.cmd.done = on_done;
        s->api.cmd.ctx = s;
        submitted = submit_engine_hold(c, s);
        if (!submitted) fg_cmd_problem(&s->api.cmd, 503, "overloaded", "writer refused");
    } else {
        submitted = api_submit(r->api, s, &rq);
    }
    if (!submitted) { /* answered at once: counted like any answer */
        s->api.cmd.ctx = s;
        on_done(&s->api.cmd);
    }
    return true;
}

/* Keeps a registration's token (setup only: parsed with jansson). */
static void keep_token(run_t *r, const slot_t *s) {
    json_t *j = json_loads(s->api.cmd.body ? s->api.cmd.body : "", 0, NULL);
    const char *t = json_string_value(json_object_get(j, "token"));
    buyer_t *b = &r->buyers[s->buyer];
    if (t != NULL && strlen(t) < sizeof b->token) {
        snprintf(b->token, sizeof b->token, "%s", t);
        /* fgb_<id>_<secret>: what fg__auth_buyer derives, done once for the engine layer. */
        const char *sep = strchr(t + 4, '_');
        b->id = strtoull(t + 4, NULL, 10);
        if (sep != NULL)
            crypto_generichash(b->secret_hash, 32, (const unsigned char *)(sep + 1),
                               strlen(sep + 1), NULL, 0);
    }
    json_decref(j);
}

static void account(client_t *c, slot_t *s, int64_t now_ns) {
    if (s->api.cmd.status == 201) { /* a registration or a hold, on disk */
        c->ok++;
        if (c->run->phase == PHASE_REGISTER) keep_token(c->run, s);
    } else {
        c->refused++;
        if (c->refused == 1)
            fprintf(stderr, "inproc: answer %d %s\n", s->api.cmd.status,
                    s->api.cmd.body ? s->api.cmd.body : "");
    }
    fgc_latency_add(&c->latency, (now_ns - s->sent_ns) / 1000);
    c->last_ns = now_ns;
}

/* Waits for answered slots; NULL when none came within INPROC_WAIT_MS. */
static slot_t *take_done(client_t *c) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += INPROC_WAIT_MS / 1000;
    pthread_mutex_lock(&c->mu);
    while (c->done == NULL)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) break;
    slot_t *list = c->done;
    c->done = NULL;
    pthread_mutex_unlock(&c->mu);
    return list;
}

static void *client_main(void *arg) {
    client_t *c = arg;
    int inflight = 0;
    for (int i = 0; i < c->slot_count; i++)
        inflight += send_next(c, &c->slots[i]);
    while (inflight > 0) {
        slot_t *list = take_done(c);
        if (list == NULL) {
            c->lost += (uint64_t)inflight; /* the writer is stuck: report, do not hang */
            break;
        }
        int64_t now = fg_clock_mono_ns();
        while (list != NULL) {
            slot_t *s = list;
            list = s->next_done;
            account(c, s, now);
            if (!send_next(c, s)) inflight--;
        }
    }
    return NULL;
}

/* Runs one phase on every client thread; returns the phase's start (monotonic ns). */
static int64_t run_phase(run_t *r, phase_t phase) {
    r->phase = phase;
    int64_t t0 = fg_clock_mono_ns();
    r->deadline_ns = t0 + (int64_t)r->duration_s * NS_PER_S;
    for (int t = 0; t < r->threads; t++) {
        client_t *c = &r->clients[t];
        c->ok = c->refused = c->lost = 0;
        c->last_ns = t0;
        fgc_latency_init(&c->latency);
        if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
            perror("inproc: pthread_create");
            exit(2);
        }
    }
    for (int t = 0; t < r->threads; t++)
        pthread_join(r->clients[t].thread, NULL);
    return t0;
}

/* ---------------------------------------------------------------- setup */

/* One request through the API, waited for: for the catalog and the sale. Returns the status. */
static int call(run_t *r, fg_method_t m, const char *path, const char *body) {
    client_t *c = &r->clients[0];
    slot_t *s = &c->slots[0];
    slot_reset(s);
    s->owner = c;
    request_t rq = {.method = m};
    snprintf(rq.path, sizeof rq.path, "%s", path);
    snprintf(rq.auth, sizeof rq.auth, "Bearer %s", INPROC_ADMIN_TOKEN);
    snprintf(rq.key, sizeof rq.key, "setup-%s", path);
    snprintf(rq.body, sizeof rq.body, "%s", body);
    if (!api_submit(r->api, s, &rq)) return s->api.cmd.status;
    slot_t *done = take_done(c);
    FG_ASSERT(done == s);
    return s->api.cmd.status;
}

static int setup_sale(run_t *r) {
    char sale[INPROC_BODY_BYTES_MAX];
    snprintf(sale, sizeof sale,
             "{\"id\":\"%s\",\"name\":\"bench\",\"opens_at\":\"2020-01-01T00:00:00Z\","
             "\"limit_per_buyer\":%d,\"hold_ttl_s\":%d,\"items\":[{\"sku\":\"%s\",\"stock\":%lld,"
             "\"markets\":[\"DE\"]}]}",
             INPROC_SALE, INPROC_LIMIT, FG_HOLD_TTL_S_MAX, INPROC_SKU, INPROC_STOCK);
    int st[4] = {
        call(r, FG_PUT, "/admin/v1/markets/DE", "{\"name\":\"Germany\",\"currency\":\"EUR\"}"),
        call(r, FG_PUT, "/admin/v1/products/bench",
             "{\"name\":\"Bench phone\",\"skus\":[{\"id\":\"" INPROC_SKU
             "\",\"name\":\"Bench phone\"}]}"),
        call(r, FG_PUT, "/admin/v1/skus/" INPROC_SKU "/offers/DE", "{\"price_minor\":99900}"),
        call(r, FG_POST, "/admin/v1/sales", sale),
    };
    for (int i = 0; i < 4; i++)
        if (st[i] != 200 && st[i] != 201) {
            fprintf(stderr, "inproc: setup call %d answered %d\n", i + 1, st[i]);
            return -1;
        }
    return 0;
}

static int start(run_t *r) {
    char err[512];
    if (fg_ledger_open(r->data_dir, &r->ledger, err, sizeof err) != 0) goto fail;
    uint8_t admin_hash[32];
    crypto_generichash(admin_hash, sizeof admin_hash, (const unsigned char *)INPROC_ADMIN_TOKEN,
                       strlen(INPROC_ADMIN_TOKEN), NULL, 0);
    fg_api_config_t cfg = {.data_dir = r->data_dir,
                           .admin_token_hash = admin_hash,
                           .webhook_secret = "inproc-webhook-secret-0123456789"};
    r->api = fg_api_new(&cfg);
    if (r->api == NULL) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    r->writer = fg_writer_start(r->ledger, fg_api_on_sale_change, r->api, false, err, sizeof err);
    if (r->writer == NULL) goto fail;
    fg_api_set_writer(r->api, r->writer);
    return 0;
fail:
    fprintf(stderr, "inproc: %s\n", err);
    return -1;
}

static void stop(run_t *r) {
    if (r->writer) fg_writer_stop(r->writer);
    for (int t = 0; t < r->threads; t++)
        for (int i = 0; i < r->clients[t].slot_count; i++)
            slot_reset(&r->clients[t].slots[i]);
    if (r->writer) fg_writer_free(r->writer);
    fg_api_free(r->api);
    if (r->ledger) fg_ledger_close(r->ledger);
}

static int make_clients(run_t *r) {
    int per = r->inflight / r->threads, extra = r->inflight % r->threads;
    for (int t = 0; t < r->threads; t++) {
        client_t *c = &r->clients[t];
        c->run = r;
        c->slot_count = per + (t < extra);
        c->slots = calloc((size_t)c->slot_count, sizeof *c->slots);
        if (c->slots == NULL) return -1;
        pthread_mutex_init(&c->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    return 0;
}

/* ---------------------------------------------------------------- report */

typedef struct {
    uint64_t ok, refused, lost;
    int64_t end_ns;
    fgc_latency_t latency;
} totals_t;

static void sum(const run_t *r, totals_t *t) {
    memset(t, 0, sizeof *t);
    fgc_latency_init(&t->latency);
    for (int i = 0; i < r->threads; i++) {
        const client_t *c = &r->clients[i];
        t->ok += c->ok;
        t->refused += c->refused;
        t->lost += c->lost;
        if (c->last_ns > t->end_ns) t->end_ns = c->last_ns;
        for (int k = 0; k < FGC_LATENCY_BUCKETS; k++)
            t->latency.counts[k] += c->latency.counts[k];
        t->latency.total += c->latency.total;
        if (c->latency.max_us > t->latency.max_us) t->latency.max_us = c->latency.max_us;
    }
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void report(const run_t *r, int64_t t0, double cpu, const fg_writer_stats_t *ws,
                   uint64_t batches0) {
    totals_t t;
    sum(r, &t);
    double secs = (double)(t.end_ns - t0) / 1e9;
    uint64_t batches = atomic_load(&ws->batches_total) - batches0;
    printf("layer=%s inflight=%d threads=%d holds=%llu refused=%llu lost=%llu seconds=%.3f "
           "holds_per_s=%.0f cpu_us_per_hold=%.2f p50_ms=%.3f p99_ms=%.3f batches=%llu "
           "holds_per_batch=%.1f\n",
           r->layer == LAYER_API ? "api" : "engine", r->inflight, r->threads,
           (unsigned long long)t.ok, (unsigned long long)t.refused, (unsigned long long)t.lost,
           secs, secs > 0 ? (double)t.ok / secs : 0, t.ok ? cpu * 1e6 / (double)t.ok : 0,
           (double)fgc_latency_quantile(&t.latency, 0.50) / 1000,
           (double)fgc_latency_quantile(&t.latency, 0.99) / 1000, (unsigned long long)batches,
           batches ? (double)t.ok / (double)batches : 0);
}

/* ---------------------------------------------------------------- options, main */

static const char usage[] =
    "usage: bench-inproc --data DIR [--layer engine|api] [--duration-s D] [--inflight K]\n"
    "                    [--threads T] [--buyers N]\n"
    "Durable holds per second through floodgate's writer, engine and ledger, no HTTP.\n"
    "  --data DIR      an empty directory for the ledger (required)\n"
    "  --layer L       engine: writer commands; api: requests through the API (default api)\n"
    "  --duration-s D  seconds of holds (default 10)\n"
    "  --inflight K    commands outstanding at once, like connections (default 64)\n"
    "  --threads T     client threads, like HTTP loop threads (default 2)\n"
    "  --buyers N      buyers registered first; each holds at most 100 units (default 20000)\n";

static long opt_num(const char *name, const char *s, long lo, long hi) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "inproc: %s: a whole number from %ld to %ld\n", name, lo, hi);
        exit(2);
    }
    return v;
}

static void parse(int argc, char **argv, run_t *r) {
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},
                                         {"layer", required_argument, 0, 'l'},
                                         {"duration-s", required_argument, 0, 's'},
                                         {"inflight", required_argument, 0, 'k'},
                                         {"threads", required_argument, 0, 't'},
                                         {"buyers", required_argument, 0, 'b'},
                                         {0, 0, 0, 0}};
    r->layer = LAYER_API;
    r->duration_s = 10;
    r->inflight = 64;
    r->threads = 2;
    r->buyer_count = 20000;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': r->data_dir = optarg; break;
        case 'l':
            if (strcmp(optarg, "engine") != 0 && strcmp(optarg, "api") != 0) goto bad;
            r->layer = strcmp(optarg, "api") == 0 ? LAYER_API : LAYER_ENGINE;
            break;
        case 's':
            r->duration_s = (int)opt_num("--duration-s", optarg, 1, INPROC_DURATION_S_MAX);
            break;
        case 'k': r->inflight = (int)opt_num("--inflight", optarg, 1, INPROC_INFLIGHT_MAX); break;
        case 't': r->threads = (int)opt_num("--threads", optarg, 1, INPROC_THREADS_MAX); break;
        case 'b':
            r->buyer_count = (uint32_t)opt_num("--buyers", optarg, 1, INPROC_BUYERS_MAX);
            break;
        default: goto bad;
        }
    }
    if (r->data_dir == NULL || optind != argc || r->threads > r->inflight) goto bad;
    return;
bad:
    fputs(usage, stderr);
    exit(2);
}

int main(int argc, char **argv) {
    static run_t r; /* large (per-thread histograms): not on the stack */
    parse(argc, argv, &r);
    if (sodium_init() < 0 || make_clients(&r) != 0) return 2;
    r.buyers = calloc(r.buyer_count, sizeof *r.buyers);
    if (r.buyers == NULL || start(&r) != 0 || setup_sale(&r) != 0) {
        stop(&r);
        return 2;
    }
    fprintf(stderr, "inproc: registering %u buyers\n", (unsigned)r.buyer_count);
    run_phase(&r, PHASE_REGISTER);
    totals_t reg;
    sum(&r, &reg);
    if (reg.ok != r.buyer_count) {
        fprintf(stderr, "inproc: %llu of %u buyers registered\n", (unsigned long long)reg.ok,
                (unsigned)r.buyer_count);
        stop(&r);
        return 1;
    }
    fprintf(stderr, "inproc: %s layer, %d s of holds, %d in flight\n",
            r.layer == LAYER_API ? "api" : "engine", r.duration_s, r.inflight);
    fg_writer_stats_t *ws = fg_writer_stats(r.writer);
    uint64_t b0 = atomic_load(&ws->batches_total);
    double c0 = cpu_s();
    int64_t t0 = run_phase(&r, PHASE_HOLD);
    report(&r, t0, cpu_s() - c0, ws, b0);
    totals_t t;
    sum(&r, &t);
    stop(&r);
    return t.lost == 0 && t.refused == 0 ? 0 : 1;
}
