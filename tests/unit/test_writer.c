/*
 * test_writer.c — unit tests of the single writer (src/engine/writer.c): reads answered at once,
 * writes answered only once their batch is on disk (I3), group commit under many submitters,
 * the idempotency gate (I5) with admit, stored bodies and the replay hook, stop, the sale-change
 * callback, and a commit the ledger refuses.
 *
 * Each test runs in its own process (Criterion) against a real ledger in a fresh directory under
 * /tmp that is removed afterwards; the writer is started by the fixture. Commands are answered
 * on the writer's threads, where Criterion cannot assert: callbacks only record what they saw,
 * and the test thread checks it after a bounded wait (WAIT_MS), so a lost answer fails a test
 * instead of hanging it. Test commands live on the heap and are freed only when a test passes:
 * a failing assertion leaves them valid for the fixture's fg_writer_stop, which answers them.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/writer.h"
#include "util/clock.h"
#include "asserts.h"

#define WAIT_MS 10000      /* longest wait for an answer or a state: then the test fails */
#define SETTLE_MS 150      /* three writer ticks: long enough for a stray batch to show */
#define SUBMITTERS 4       /* threads in the group-commit test */
#define PER_SUBMITTER 500  /* commands each */
#define STOP_ROUNDS 4      /* writer lifetimes in the stop test */
#define STOP_THREADS 2
#define STOP_CMDS 1000     /* commands each stop-test thread tries to submit */
#define STOP_AFTER 200     /* accepted submits before the stop test calls stop */

/* ---------------------------------------------------------------- test commands */

/* A command with what its callbacks saw. The exec, admit and replay counters and fields are
 * written on the writer thread before done runs and read by the test after waiting for done
 * (g_mu orders the two); done_calls is guarded by g_mu. */
typedef struct {
    fg_cmd_t cmd;
    char arg[FG_EMAIL_BYTES_MAX + 1]; /* market code, email or sale id, as the exec reads it */
    uint8_t token[32];                /* a buyer's token hash, for exec_register */
    int exec_calls, admit_calls, replay_calls;
    pthread_t exec_thread;
    uint64_t buyer_id;                /* set by exec_register */
    char stored_seen[256];            /* what the replay hook was given */
    long long ledger_rows_at_done;    /* done_check_ledger: rows of market DE on disk */
    bool accepted;                    /* fg_writer_submit returned true (stop test) */
    int done_calls;
} tcmd_t;

static char g_dir[64];
static fg_ledger_t *g_ledger;
static fg_writer_t *g_writer;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;  /* signalled on every answer; CLOCK_MONOTONIC */
static long g_answers;       /* done calls of every command, guarded by g_mu */

/* What the sale-change callback saw, guarded by g_mu. */
static struct {
    int calls;
    char sale_id[FG_ID_BYTES_MAX + 1];
    fg_sale_state_t state;
    pthread_t thread;
} g_change;

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    /* On the writer thread Criterion cannot fail the test: a body this test cannot build stops
     * the process, which fails it just as clearly. */
    if (n < 0 || (size_t)n >= sizeof tmp) abort();
    char *s = strdup(tmp);
    if (s == NULL) abort();
    return s;
}

static tcmd_t *ran(fg_cmd_t *cmd) {
    tcmd_t *c = cmd->ctx;
    c->exec_calls++;
    c->exec_thread = pthread_self();
    return c;
}

static void set_answer(fg_cmd_t *cmd, int status, const char *code, char *body) {
    free(cmd->body);
    cmd->status = status;
    cmd->code = code;
    cmd->body = body;
}

static void on_done(fg_cmd_t *cmd) {
    tcmd_t *c = cmd->ctx;
    pthread_mutex_lock(&g_mu);
    c->done_calls++;
    g_answers++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Counts rows with an SQL query on a read-only connection of its own, as an outside reader of
 * the file would: it sees exactly what has been committed. -1 on error. */
static long long ledger_count(const char *sql) {
    char path[128];
    snprintf(path, sizeof path, "%s/floodgate.db", g_dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* A done callback that looks at the disk at the moment the answer is released. */
static void done_check_ledger(fg_cmd_t *cmd) {
    tcmd_t *c = cmd->ctx;
    c->ledger_rows_at_done = ledger_count("SELECT count(*) FROM markets WHERE code = 'DE'");
    on_done(cmd);
}

static tcmd_t *tcmd_new(fg_cmd_exec_fn exec, const char *arg) {
    tcmd_t *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->cmd.exec = exec;
    c->cmd.done = on_done;
    c->cmd.ctx = c;
    snprintf(c->arg, sizeof c->arg, "%s", arg ? arg : "");
    c->ledger_rows_at_done = -2;
    randombytes_buf(c->token, sizeof c->token);
    return c;
}

/* Gives the command an Idempotency-Key; the fingerprint is a hash of `request`. */
static void tcmd_key(tcmd_t *c, uint64_t scope, const char *key, const char *request) {
    c->cmd.has_idem = true;
    c->cmd.idem_scope = scope;
    snprintf(c->cmd.idem_key, sizeof c->cmd.idem_key, "%s", key);
    /* as the API sets it: the writer hands it to the engine instead of hashing again */
    c->cmd.idem_hash = fg_engine_idem_hash(scope, c->cmd.idem_key);
    crypto_generichash(c->cmd.fingerprint, sizeof c->cmd.fingerprint,
                       (const unsigned char *)request, strlen(request), NULL, 0);
}

static void tcmd_free(tcmd_t *c) {
    free(c->cmd.body);
    free(c->cmd.idem_body);
    free(c);
}

static int done_calls(tcmd_t *c) {
    pthread_mutex_lock(&g_mu);
    int n = c->done_calls;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static long answers_now(void) {
    pthread_mutex_lock(&g_mu);
    long n = g_answers;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static struct timespec deadline_in(int ms) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Waits until at least n answers were given in all; returns how many were. */
static long wait_answers(long n) {
    struct timespec until = deadline_in(WAIT_MS);
    pthread_mutex_lock(&g_mu);
    int rc = 0;
    while (g_answers < n && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&g_cv, &g_mu, &until);
    long got = g_answers;
    pthread_mutex_unlock(&g_mu);
    return got;
}

static void wait_done(tcmd_t *c, const char *what) {
    struct timespec until = deadline_in(WAIT_MS);
    pthread_mutex_lock(&g_mu);
    int rc = 0;
    while (c->done_calls == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g_cv, &g_mu, &until);
    int n = c->done_calls;
    pthread_mutex_unlock(&g_mu);
    cr_assert(n >= 1, "%s: not answered within %d ms", what, WAIT_MS);
}

static void submit_ok(tcmd_t *c, const char *what) {
    cr_assert(fg_writer_submit(g_writer, &c->cmd), "%s: fg_writer_submit refused it", what);
}

/* Submits and waits for the answer. */
#define ANSWER(c)                                                                             \
    do {                                                                                      \
        submit_ok((c), #c);                                                                   \
        wait_done((c), #c);                                                                   \
    } while (0)

/* Asserts an answer's status and problem code (NULL: no code), printing both and the body. */
#define EXPECT_ANSWER(c, want_status, want_code)                                              \
    do {                                                                                      \
        const tcmd_t *c_ = (c);                                                               \
        const char *wc_ = (want_code);                                                        \
        const char *b_ = c_->cmd.body ? c_->cmd.body : "(null)";                              \
        cr_assert_eq(c_->cmd.status, (want_status), "%s: status got %d, want %d (body %s)",   \
                     #c, c_->cmd.status, (want_status), b_);                                  \
        const char *gc_ = c_->cmd.code ? c_->cmd.code : "(none)";                             \
        cr_assert_str_eq(gc_, wc_ ? wc_ : "(none)", "%s: code got %s, want %s (body %s)", #c,  \
                         gc_, wc_ ? wc_ : "(none)", b_);                                      \
    } while (0)

static fg_writer_stats_t *stats(void) { return fg_writer_stats(g_writer); }
static uint64_t batches_total(void) { return atomic_load(&stats()->batches_total); }
static uint64_t commands_total(void) { return atomic_load(&stats()->commands_total); }

static void sleep_ms(int ms) {
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- exec, admit, replay */

static void exec_read_markets(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    ran(cmd);
    set_answer(cmd, 200, NULL, strf("{\"markets\":%d}", fg_engine_market_count(e)));
}

static void put_market(fg_engine_t *e, fg_cmd_t *cmd, const char *code) {
    fg_market_t m = {0};
    snprintf(m.code, sizeof m.code, "%s", code);
    snprintf(m.name, sizeof m.name, "Market %s", code);
    snprintf(m.currency, sizeof m.currency, "EUR");
    bool created = false;
    if (fg_engine_market_put(e, &m, &created) != FG_OK) {
        set_answer(cmd, 503, "overloaded", strf("{\"detail\":\"%s\"}", fg_engine_detail(e)));
        return;
    }
    set_answer(cmd, created ? 201 : 200, NULL,
               strf("{\"code\":\"%s\",\"created\":%s}", code, created ? "true" : "false"));
}

static void exec_put_market(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    tcmd_t *c = ran(cmd);
    put_market(e, cmd, c->arg);
}

/* Registers the buyer c->arg (an email) in DE with c->token. */
static void exec_register(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    tcmd_t *c = ran(cmd);
    uint64_t id = 0;
    fg_err_t err = fg_engine_buyer_register(e, c->arg, "DE", c->token, now_ms, &id);
    if (err == FG_ERR_BUYER_EXISTS) {
        set_answer(cmd, 409, "buyer_exists", strf("{\"code\":\"buyer_exists\"}"));
        return;
    }
    if (err != FG_OK) {
        set_answer(cmd, 400, "invalid_field", strf("{\"detail\":\"%s\"}", fg_engine_detail(e)));
        return;
    }
    c->buyer_id = id;
    set_answer(cmd, 201, NULL, strf("{\"id\":%llu,\"email\":\"%s\"}", (unsigned long long)id,
                                    c->arg));
}

/* A refusal, as sold_out is: an answer and no change. */
static void exec_refuse(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    ran(cmd);
    set_answer(cmd, 409, "sold_out", strf("{\"code\":\"sold_out\"}"));
}

/* A refusal that changed state on its way, as releasing an expired hold does: the hold expires
 * (a change record) and the answer is 409 hold_expired. */
static void exec_change_then_refuse(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    tcmd_t *c = ran(cmd);
    put_market(e, cmd, c->arg);
    set_answer(cmd, 409, "hold_expired", strf("{\"code\":\"hold_expired\"}"));
}

/* A write whose answer holds a secret and whose stored copy holds it sealed, as a buyer's
 * registration does. */
static void exec_sealed(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    tcmd_t *c = ran(cmd);
    put_market(e, cmd, c->arg);
    if (cmd->status != 201) return;
    set_answer(cmd, 201, NULL, strf("{\"token\":\"secret-%s\"}", c->arg));
    free(cmd->idem_body);
    cmd->idem_body = strf("{\"token_sealed\":\"box-%s\"}", c->arg);
}

/* Market DE, product p1 with SKU sku-1, and its offer in DE. */
static void exec_catalog(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    ran(cmd);
    put_market(e, cmd, "DE");
    if (cmd->status >= 300) return;
    fg_product_t p = {0};
    snprintf(p.id, sizeof p.id, "p1");
    snprintf(p.name, sizeof p.name, "Phone");
    p.specs_json = strf("{}");
    p.skus = calloc(1, sizeof *p.skus);
    if (p.skus == NULL) abort();
    p.sku_count = 1;
    snprintf(p.skus[0].id, sizeof p.skus[0].id, "sku-1");
    snprintf(p.skus[0].name, sizeof p.skus[0].name, "Phone, black");
    p.skus[0].attributes_json = strf("{}");
    bool created = false;
    fg_err_t err = fg_engine_product_put(e, &p, &created);
    if (err != FG_OK) fg_product_free(&p);
    fg_offer_t o = {0};
    snprintf(o.sku, sizeof o.sku, "sku-1");
    snprintf(o.market, sizeof o.market, "DE");
    o.price_minor = 79900;
    if (err == FG_OK) err = fg_engine_offer_put(e, &o, &created);
    if (err != FG_OK)
        set_answer(cmd, 400, "invalid_field", strf("{\"detail\":\"%s\"}", fg_engine_detail(e)));
    else set_answer(cmd, 201, NULL, strf("{\"catalog\":true}"));
}

/* Sale c->arg selling 5 of sku-1 in DE, open since a second ago. */
static void exec_sale_create(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    tcmd_t *c = ran(cmd);
    fg_sale_row_t d = {0};
    snprintf(d.id, sizeof d.id, "%.*s", FG_ID_BYTES_MAX, c->arg);
    snprintf(d.name, sizeof d.name, "Launch");
    d.opens_at_ms = now_ms - 1000;
    d.limit_per_buyer = 2;
    d.hold_ttl_s = 30;
    d.pool_count = 1;
    snprintf(d.pools[0].sku, sizeof d.pools[0].sku, "sku-1");
    d.pools[0].stock = 5;
    d.pools[0].markets[0] = fg_mcode("DE");
    d.pools[0].market_count = 1;
    if (fg_engine_sale_create(e, &d, now_ms) != FG_OK)
        set_answer(cmd, 400, "invalid_field", strf("{\"detail\":\"%s\"}", fg_engine_detail(e)));
    else set_answer(cmd, 201, NULL, strf("{\"id\":\"%s\"}", c->arg));
}

static void exec_sale_pause(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    tcmd_t *c = ran(cmd);
    if (fg_engine_sale_pause(e, c->arg, now_ms) != FG_OK)
        set_answer(cmd, 404, "not_found", strf("{\"detail\":\"%s\"}", fg_engine_detail(e)));
    else set_answer(cmd, 200, NULL, strf("{\"paused\":true}"));
}

/* A wrong token: refused before the idempotency store is looked at. */
static bool admit_refuse(fg_engine_t *e, fg_cmd_t *cmd) {
    tcmd_t *c = cmd->ctx;
    c->admit_calls++;
    set_answer(cmd, 401, "unauthorized", strf("{\"code\":\"unauthorized\"}"));
    return false;
}

static bool admit_pass(fg_engine_t *e, fg_cmd_t *cmd) {
    tcmd_t *c = cmd->ctx;
    c->admit_calls++;
    return true;
}

static char *replay_unseal(fg_cmd_t *cmd, const char *stored) {
    tcmd_t *c = cmd->ctx;
    c->replay_calls++;
    snprintf(c->stored_seen, sizeof c->stored_seen, "%s", stored ? stored : "(null)");
    return strf("{\"unsealed\":%s}", stored);
}

static char *replay_fail(fg_cmd_t *cmd, const char *stored) {
    tcmd_t *c = cmd->ctx;
    c->replay_calls++;
    return NULL;
}

static void record_change(void *ctx, const fg_engine_t *e, const fg_sale_t *s, int64_t now_ms) {
    if (s == NULL) return; /* the engine was loaded or dropped */
    pthread_mutex_lock(&g_mu);
    g_change.calls++;
    snprintf(g_change.sale_id, sizeof g_change.sale_id, "%s", s->def.id);
    g_change.state = fg_engine_sale_state(s, now_ms);
    g_change.thread = pthread_self();
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* ---------------------------------------------------------------- fixture */

static void ledger_open(void) {
    char err[512] = "";
    int rc = fg_ledger_open(g_dir, &g_ledger, err, sizeof err);
    cr_assert(rc == 0 && g_ledger != NULL, "fg_ledger_open(%s): %s", g_dir, err);
}

static void writer_start(void) {
    char err[512] = "";
    g_writer = fg_writer_start(g_ledger, record_change, NULL, false, err, sizeof err);
    cr_assert_not_null(g_writer, "fg_writer_start: %s", err);
}

static void writer_stop(void) {
    fg_writer_stop(g_writer);
    fg_writer_free(g_writer);
    g_writer = NULL;
}

/* Stops the writer, closes the ledger and rebuilds an engine from the files, as a restarted
 * server does. The caller frees the engine; the ledger is open again. */
static fg_engine_t *reload(void) {
    writer_stop();
    fg_ledger_close(g_ledger);
    g_ledger = NULL;
    ledger_open();
    fg_engine_t *e = NULL;
    char err[512] = "";
    int rc = fg_engine_load(g_ledger, fg_clock_now_ms(), &e, err, sizeof err);
    cr_assert(rc == 0 && e != NULL, "fg_engine_load: %s", err);
    return e;
}

static void wait_ready(void) {
    for (int i = 0; i < WAIT_MS && !atomic_load(&stats()->ready); i++) sleep_ms(1);
    cr_assert(atomic_load(&stats()->ready), "writer not ready within %d ms", WAIT_MS);
}

static void setup(void) {
    cr_assert(sodium_init() >= 0, "sodium_init failed");
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cv, &attr);
    pthread_condattr_destroy(&attr);
    snprintf(g_dir, sizeof g_dir, "/tmp/fg_writer_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
    ledger_open();
    writer_start();
}

static void teardown(void) {
    if (g_writer != NULL) writer_stop();
    if (g_ledger != NULL) fg_ledger_close(g_ledger);
    g_ledger = NULL;
    DIR *d = opendir(g_dir);
    if (d == NULL) return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", g_dir, ent->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(g_dir);
}

TestSuite(writer, .init = setup, .fini = teardown, .timeout = 60);

/* Market DE, which buyers register in. */
static void market_de(void) {
    tcmd_t *c = tcmd_new(exec_put_market, "DE");
    ANSWER(c);
    EXPECT_ANSWER(c, 201, NULL);
    tcmd_free(c);
}

/* ---------------------------------------------------------------- reads and writes */

Test(writer, read_is_answered_on_the_writer_thread_and_commits_nothing) {
    /* A write first: once it is answered, every earlier batch (the writer commits a prune of
     * old stored answers when it starts) has committed too, so the count below is stable. */
    market_de();
    uint64_t batches = batches_total(), commands = commands_total();

    tcmd_t *r = tcmd_new(exec_read_markets, NULL);
    ANSWER(r);
    EXPECT_ANSWER(r, 200, NULL);
    STREQ(r->cmd.body, "{\"markets\":1}");
    EQ(r->exec_calls, 1);
    cr_assert(!pthread_equal(r->exec_thread, pthread_self()), "exec ran on the test thread");
    cr_assert(!r->cmd.replayed, "a command without a key was marked replayed");

    sleep_ms(SETTLE_MS);
    EQ(batches_total(), batches);
    EQ(commands_total(), commands + 1);
    tcmd_free(r);
}

Test(writer, write_is_answered_only_once_its_batch_is_on_disk) {
    tcmd_t *w = tcmd_new(exec_put_market, "DE");
    w->cmd.done = done_check_ledger;
    ANSWER(w);
    EXPECT_ANSWER(w, 201, NULL);
    /* Read from the file by another connection at the moment the answer was released. */
    EQ(w->ledger_rows_at_done, 1);
    cr_assert_geq(batches_total(), 1, "batches_total: got %llu, want >= 1",
                  (unsigned long long)batches_total());

    fg_engine_t *e = reload();
    const fg_market_t *m = fg_engine_market_get(e, "DE");
    cr_assert_not_null(m, "market DE missing after a restart, though its write was answered");
    STREQ(m->name, "Market DE");
    EQ(fg_engine_market_count(e), 1);
    fg_engine_free(e);
    tcmd_free(w);
}

typedef struct {
    tcmd_t **cmds;
    int n;
    int refused;
} submitter_t;

static void *submit_all(void *arg) {
    submitter_t *s = arg;
    for (int i = 0; i < s->n; i++)
        if (!fg_writer_submit(g_writer, &s->cmds[i]->cmd)) s->refused++;
    return NULL;
}

Test(writer, many_submitters_get_one_answer_each_and_writes_are_grouped) {
    market_de();
    uint64_t batches = batches_total(), commands = commands_total();
    long answers = answers_now();
    enum { N = SUBMITTERS * PER_SUBMITTER };
    tcmd_t **cmds = calloc(N, sizeof *cmds);
    cr_assert_not_null(cmds);
    for (int i = 0; i < N; i++) {
        char email[64];
        snprintf(email, sizeof email, "buyer%d@example.test", i);
        cmds[i] = tcmd_new(exec_register, email);
    }
    submitter_t sub[SUBMITTERS];
    pthread_t th[SUBMITTERS];
    for (int t = 0; t < SUBMITTERS; t++) {
        sub[t] = (submitter_t){.cmds = cmds + t * PER_SUBMITTER, .n = PER_SUBMITTER};
        cr_assert_eq(pthread_create(&th[t], NULL, submit_all, &sub[t]), 0);
    }
    for (int t = 0; t < SUBMITTERS; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < SUBMITTERS; t++) EQ(sub[t].refused, 0);

    long got = wait_answers(answers + N);
    EQ(got - answers, N);
    sleep_ms(SETTLE_MS); /* a second answer to any command would show now */
    EQ(answers_now() - answers, N);
    bool *seen = calloc(N + 1, sizeof *seen);
    cr_assert_not_null(seen);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(done_calls(cmds[i]), 1, "command %d: done called %d times, want 1", i,
                     done_calls(cmds[i]));
        EXPECT_ANSWER(cmds[i], 201, NULL);
        uint64_t id = cmds[i]->buyer_id;
        cr_assert(id >= 1 && id <= N && !seen[id], "command %d: buyer id %llu out of 1..%d or twice",
                  i, (unsigned long long)id, N);
        seen[id] = true;
    }
    EQ(commands_total() - commands, N);
    uint64_t batches_used = batches_total() - batches;
    cr_assert(batches_used >= 1 && batches_used < N,
              "batches for %d writes: got %llu, want 1..%d (grouped)", N,
              (unsigned long long)batches_used, N - 1);
    EQ(atomic_load(&stats()->batch_commands.total), batches_total());

    fg_engine_t *e = reload();
    EQ(fg_engine_buyer_count(e), N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(fg_engine_buyer_auth(e, cmds[i]->buyer_id, cmds[i]->token), FG_OK,
                     "buyer %llu (command %d): token does not match after a restart",
                     (unsigned long long)cmds[i]->buyer_id, i);
    fg_engine_free(e);
    for (int i = 0; i < N; i++) tcmd_free(cmds[i]);
    free(cmds);
    free(seen);
}

/* ---------------------------------------------------------------- idempotency */

Test(writer, same_key_and_request_replays_the_stored_answer_without_a_second_write) {
    market_de();
    tcmd_t *a = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(a, 0, "key-1", "POST /v1/buyers ann");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);
    cr_assert(!a->cmd.replayed, "the first answer was marked replayed");

    tcmd_t *b = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(b, 0, "key-1", "POST /v1/buyers ann");
    ANSWER(b);
    EXPECT_ANSWER(b, 201, NULL);
    STREQ(b->cmd.body, a->cmd.body);
    cr_assert(b->cmd.replayed, "the second answer was not marked replayed");
    EQ(b->exec_calls, 0);

    fg_engine_t *e = reload();
    EQ(fg_engine_buyer_count(e), 1);
    fg_engine_free(e);
    tcmd_free(a);
    tcmd_free(b);
}

/* Runs one SQL statement on the ledger file through a connection of its own, as an operator's
 * tool (or a damaged disk) would change it behind the server's back. */
static void ledger_exec(const char *sql) {
    char path[128];
    snprintf(path, sizeof path, "%s/floodgate.db", g_dir);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
}

Test(writer, committed_answer_is_read_back_from_the_ledger_not_kept_in_memory) {
    market_de();
    tcmd_t *a = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(a, 0, "key-1", "POST /v1/buyers ann");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);
    /* The stored answer's row changes on disk: a replay answers what the ledger now says. */
    ledger_exec("UPDATE idempotency SET body = '{\"id\":1,\"edited\":true}' WHERE key = 'key-1'");
    tcmd_t *b = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(b, 0, "key-1", "POST /v1/buyers ann");
    ANSWER(b);
    EXPECT_ANSWER(b, 201, NULL);
    STREQ(b->cmd.body, "{\"id\":1,\"edited\":true}");
    cr_assert(b->cmd.replayed);
    EQ(b->exec_calls, 0);
    /* A row that no longer reads as a stored answer: the writer cannot tell, so 503, no exec. */
    ledger_exec("UPDATE idempotency SET status = 999 WHERE key = 'key-1'");
    tcmd_t *c = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(c, 0, "key-1", "POST /v1/buyers ann");
    ANSWER(c);
    EXPECT_ANSWER(c, 503, "overloaded");
    EQ(c->exec_calls, 0);
    /* The row gone (as pruning does): the key is new again; the email is taken, so 409. */
    ledger_exec("DELETE FROM idempotency WHERE key = 'key-1'");
    tcmd_t *d = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(d, 0, "key-1", "POST /v1/buyers ann");
    ANSWER(d);
    EXPECT_ANSWER(d, 409, "buyer_exists");
    EQ(d->exec_calls, 1);
    tcmd_free(a);
    tcmd_free(b);
    tcmd_free(c);
    tcmd_free(d);
}

Test(writer, same_key_with_another_request_is_422_idempotency_key_reused) {
    market_de();
    tcmd_t *a = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(a, 0, "key-1", "POST /v1/buyers ann");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);

    tcmd_t *b = tcmd_new(exec_register, "bob@example.test");
    tcmd_key(b, 0, "key-1", "POST /v1/buyers bob");
    ANSWER(b);
    EXPECT_ANSWER(b, 422, "idempotency_key_reused");
    EQ(b->exec_calls, 0);
    cr_assert(!b->cmd.replayed, "a 422 was marked replayed");

    fg_engine_t *e = reload();
    EQ(fg_engine_buyer_count(e), 1);
    fg_engine_free(e);
    tcmd_free(a);
    tcmd_free(b);
}

Test(writer, same_key_twice_before_the_commit_writes_once) {
    enum { PAIRS = 20 };
    market_de();
    tcmd_t *a[PAIRS], *b[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        char email[64], key[32];
        snprintf(key, sizeof key, "pair-%d", i);
        /* Different emails behind one fingerprint: a second exec would show as a second buyer. */
        snprintf(email, sizeof email, "a%d@example.test", i);
        a[i] = tcmd_new(exec_register, email);
        tcmd_key(a[i], 0, key, "POST /v1/buyers");
        snprintf(email, sizeof email, "b%d@example.test", i);
        b[i] = tcmd_new(exec_register, email);
        tcmd_key(b[i], 0, key, "POST /v1/buyers");
    }
    int in_progress = 0, replays = 0;
    for (int i = 0; i < PAIRS; i++) {
        submit_ok(a[i], "first of the pair");
        submit_ok(b[i], "second of the pair");
        wait_done(a[i], "first of the pair");
        wait_done(b[i], "second of the pair");
        EXPECT_ANSWER(a[i], 201, NULL);
        EQ(a[i]->exec_calls + b[i]->exec_calls, 1);
        if (b[i]->cmd.status == 409) {
            EXPECT_ANSWER(b[i], 409, "idempotency_in_progress");
            in_progress++;
        } else {
            EXPECT_ANSWER(b[i], 201, NULL);
            cr_assert(b[i]->cmd.replayed, "pair %d: second 201 not marked replayed", i);
            STREQ(b[i]->cmd.body, a[i]->cmd.body);
            replays++;
        }
    }
    cr_log_info("back-to-back pairs: %d answered 409 in progress, %d replayed", in_progress,
                replays);
    fg_engine_t *e = reload();
    EQ(fg_engine_buyer_count(e), PAIRS);
    fg_engine_free(e);
    for (int i = 0; i < PAIRS; i++) {
        tcmd_free(a[i]);
        tcmd_free(b[i]);
    }
}

Test(writer, refusal_is_not_stored_so_the_same_key_runs_again) {
    market_de();
    tcmd_t *r1 = tcmd_new(exec_refuse, NULL);
    tcmd_key(r1, 5, "key-r", "POST /v1/holds");
    ANSWER(r1);
    EXPECT_ANSWER(r1, 409, "sold_out");

    tcmd_t *r2 = tcmd_new(exec_refuse, NULL);
    tcmd_key(r2, 5, "key-r", "POST /v1/holds");
    ANSWER(r2);
    EXPECT_ANSWER(r2, 409, "sold_out");
    EQ(r2->exec_calls, 1);
    cr_assert(!r2->cmd.replayed, "a refusal was replayed from the store");

    /* The key is still free: the same request, now succeeding, is run and stored. */
    tcmd_t *ok = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(ok, 5, "key-r", "POST /v1/holds");
    ANSWER(ok);
    EXPECT_ANSWER(ok, 201, NULL);
    EQ(ok->exec_calls, 1);
    tcmd_t *again = tcmd_new(exec_refuse, NULL);
    tcmd_key(again, 5, "key-r", "POST /v1/holds");
    ANSWER(again);
    EXPECT_ANSWER(again, 201, NULL);
    cr_assert(again->cmd.replayed, "the stored 201 was not replayed");
    EQ(again->exec_calls, 0);
    tcmd_free(r1);
    tcmd_free(r2);
    tcmd_free(ok);
    tcmd_free(again);
}

Test(writer, refusal_that_changed_state_is_not_stored_either) {
    tcmd_t *r1 = tcmd_new(exec_change_then_refuse, "DE");
    tcmd_key(r1, 5, "key-x", "DELETE /v1/holds/1");
    ANSWER(r1);
    EXPECT_ANSWER(r1, 409, "hold_expired");

    tcmd_t *r2 = tcmd_new(exec_change_then_refuse, "DE");
    tcmd_key(r2, 5, "key-x", "DELETE /v1/holds/1");
    ANSWER(r2);
    EXPECT_ANSWER(r2, 409, "hold_expired");
    EQ(r2->exec_calls, 1);
    cr_assert(!r2->cmd.replayed, "a refusal was replayed from the store");

    fg_engine_t *e = reload();
    cr_assert_not_null(fg_engine_market_get(e, "DE"), "the refusal's change was not committed");
    fg_engine_free(e);
    tcmd_free(r1);
    tcmd_free(r2);
}

Test(writer, keys_are_separate_per_scope) {
    market_de();
    tcmd_t *a = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(a, 1, "same-key", "POST /v1/buyers");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);
    tcmd_t *b = tcmd_new(exec_register, "bob@example.test");
    tcmd_key(b, 2, "same-key", "POST /v1/buyers");
    ANSWER(b);
    EXPECT_ANSWER(b, 201, NULL);
    EQ(b->exec_calls, 1);
    cr_assert(!b->cmd.replayed, "another scope's answer was replayed");
    tcmd_free(a);
    tcmd_free(b);
}

Test(writer, admit_refusal_answers_without_exec_or_the_idempotency_store) {
    market_de();
    tcmd_t *a = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(a, 9, "key-a", "request-1");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);

    /* Another request under the stored key: the store would say 422, admit says 401 first. */
    tcmd_t *other = tcmd_new(exec_register, "bob@example.test");
    tcmd_key(other, 9, "key-a", "request-2");
    other->cmd.admit = admit_refuse;
    ANSWER(other);
    EXPECT_ANSWER(other, 401, "unauthorized");
    EQ(other->admit_calls, 1);
    EQ(other->exec_calls, 0);
    cr_assert(!other->cmd.replayed, "a refused command was marked replayed");

    /* The same request: the store would replay it, but not to someone admit refuses. */
    tcmd_t *same = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(same, 9, "key-a", "request-1");
    same->cmd.admit = admit_refuse;
    ANSWER(same);
    EXPECT_ANSWER(same, 401, "unauthorized");
    EQ(same->exec_calls, 0);
    cr_assert(!same->cmd.replayed, "a stored answer was replayed past a refusing admit");

    /* A passing admit runs first, then the store replays. */
    tcmd_t *pass = tcmd_new(exec_register, "ann@example.test");
    tcmd_key(pass, 9, "key-a", "request-1");
    pass->cmd.admit = admit_pass;
    ANSWER(pass);
    EXPECT_ANSWER(pass, 201, NULL);
    EQ(pass->admit_calls, 1);
    EQ(pass->exec_calls, 0);
    cr_assert(pass->cmd.replayed, "not replayed after a passing admit");
    STREQ(pass->cmd.body, a->cmd.body);

    /* Without a key too. */
    tcmd_t *nokey = tcmd_new(exec_register, "cid@example.test");
    nokey->cmd.admit = admit_refuse;
    ANSWER(nokey);
    EXPECT_ANSWER(nokey, 401, "unauthorized");
    EQ(nokey->exec_calls, 0);

    fg_engine_t *e = reload();
    EQ(fg_engine_buyer_count(e), 1);
    fg_engine_free(e);
    tcmd_free(a);
    tcmd_free(other);
    tcmd_free(same);
    tcmd_free(pass);
    tcmd_free(nokey);
}

Test(writer, idem_body_is_stored_and_handed_to_the_replay_hook) {
    tcmd_t *a = tcmd_new(exec_sealed, "FR");
    tcmd_key(a, 0, "key-s", "PUT /v1/markets/FR");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);
    STREQ(a->cmd.body, "{\"token\":\"secret-FR\"}");

    tcmd_t *b = tcmd_new(exec_sealed, "FR");
    tcmd_key(b, 0, "key-s", "PUT /v1/markets/FR");
    b->cmd.replay = replay_unseal;
    ANSWER(b);
    EXPECT_ANSWER(b, 201, NULL);
    cr_assert(b->cmd.replayed, "not replayed");
    EQ(b->exec_calls, 0);
    EQ(b->replay_calls, 1);
    STREQ(b->stored_seen, "{\"token_sealed\":\"box-FR\"}");
    STREQ(b->cmd.body, "{\"unsealed\":{\"token_sealed\":\"box-FR\"}}");

    /* Without a hook the stored text itself is the answer: the secret never is. */
    tcmd_t *c = tcmd_new(exec_sealed, "FR");
    tcmd_key(c, 0, "key-s", "PUT /v1/markets/FR");
    ANSWER(c);
    EXPECT_ANSWER(c, 201, NULL);
    STREQ(c->cmd.body, "{\"token_sealed\":\"box-FR\"}");

    /* And the same after a restart, from the ledger. */
    writer_stop();
    writer_start();
    tcmd_t *d = tcmd_new(exec_sealed, "FR");
    tcmd_key(d, 0, "key-s", "PUT /v1/markets/FR");
    d->cmd.replay = replay_unseal;
    ANSWER(d);
    EXPECT_ANSWER(d, 201, NULL);
    EQ(d->replay_calls, 1);
    STREQ(d->stored_seen, "{\"token_sealed\":\"box-FR\"}");
    tcmd_free(a);
    tcmd_free(b);
    tcmd_free(c);
    tcmd_free(d);
}

Test(writer, replay_hook_that_fails_answers_503) {
    tcmd_t *a = tcmd_new(exec_sealed, "FR");
    tcmd_key(a, 0, "key-f", "PUT /v1/markets/FR");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);
    tcmd_t *b = tcmd_new(exec_sealed, "FR");
    tcmd_key(b, 0, "key-f", "PUT /v1/markets/FR");
    b->cmd.replay = replay_fail;
    ANSWER(b);
    EXPECT_ANSWER(b, 503, "overloaded");
    EQ(b->replay_calls, 1);
    EQ(b->exec_calls, 0);
    cr_assert_not_null(b->cmd.body);
    tcmd_free(a);
    tcmd_free(b);
}

Test(writer, longest_key_replays_after_a_restart) {
    char key[FG_IDEM_KEY_BYTES_MAX + 1];
    memset(key, 'k', FG_IDEM_KEY_BYTES_MAX);
    key[FG_IDEM_KEY_BYTES_MAX] = '\0';
    tcmd_t *a = tcmd_new(exec_put_market, "FR");
    tcmd_key(a, FG_IDEM_SCOPE_ADMIN, key, "PUT /v1/markets/FR");
    ANSWER(a);
    EXPECT_ANSWER(a, 201, NULL);
    EQ(strlen(a->cmd.idem_key), FG_IDEM_KEY_BYTES_MAX);

    writer_stop();
    writer_start();
    tcmd_t *b = tcmd_new(exec_put_market, "FR");
    tcmd_key(b, FG_IDEM_SCOPE_ADMIN, key, "PUT /v1/markets/FR");
    ANSWER(b);
    EXPECT_ANSWER(b, 201, NULL);
    cr_assert(b->cmd.replayed, "not replayed after a restart");
    STREQ(b->cmd.body, a->cmd.body);
    EQ(b->exec_calls, 0);
    tcmd_t *c = tcmd_new(exec_put_market, "IT");
    tcmd_key(c, FG_IDEM_SCOPE_ADMIN, key, "PUT /v1/markets/IT");
    ANSWER(c);
    EXPECT_ANSWER(c, 422, "idempotency_key_reused");
    tcmd_free(a);
    tcmd_free(b);
    tcmd_free(c);
}

/* ---------------------------------------------------------------- stop */

typedef struct {
    tcmd_t **cmds;
    int n;
    atomic_int *accepted;
} stop_submitter_t;

static void *submit_paced(void *arg) {
    stop_submitter_t *s = arg;
    for (int i = 0; i < s->n; i++) {
        s->cmds[i]->accepted = fg_writer_submit(g_writer, &s->cmds[i]->cmd);
        if (s->cmds[i]->accepted) atomic_fetch_add(s->accepted, 1);
        /* Paced so that stop lands in the middle of the run. */
        if (i % 8 == 7) nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
    }
    return NULL;
}

/* Submitters keep going while stop runs, over several writer lifetimes. A submit that passed its
 * stop check must be answered even if its push lands after the writer's last look at the inbox;
 * the window is nanoseconds wide, so this catches a writer that exits too early only sometimes
 * (every time with a delay placed inside the window). */
Test(writer, stop_answers_every_accepted_command_and_refuses_later_ones) {
    market_de();
    long created = 0;
    for (int round = 0; round < STOP_ROUNDS; round++) {
        if (g_writer == NULL) writer_start();
        long answers = answers_now();
        uint64_t commands = commands_total();
        tcmd_t *cmds[STOP_THREADS][STOP_CMDS];
        for (int t = 0; t < STOP_THREADS; t++)
            for (int i = 0; i < STOP_CMDS; i++) {
                char email[64];
                snprintf(email, sizeof email, "r%d-t%d-%d@example.test", round, t, i);
                /* Writes and reads mixed: writes wait for a commit, reads do not. */
                cmds[t][i] = i % 2 ? tcmd_new(exec_read_markets, NULL)
                                   : tcmd_new(exec_register, email);
            }
        atomic_int accepted = 0;
        stop_submitter_t sub[STOP_THREADS];
        pthread_t th[STOP_THREADS];
        for (int t = 0; t < STOP_THREADS; t++) {
            sub[t] = (stop_submitter_t){.cmds = cmds[t], .n = STOP_CMDS, .accepted = &accepted};
            cr_assert_eq(pthread_create(&th[t], NULL, submit_paced, &sub[t]), 0);
        }
        for (int i = 0; i < WAIT_MS && atomic_load(&accepted) < STOP_AFTER; i++) sleep_ms(1);
        fg_writer_stop(g_writer);
        for (int t = 0; t < STOP_THREADS; t++) pthread_join(th[t], NULL);

        /* Stop has returned: every accepted command must have its answer already. */
        long n_accepted = 0;
        for (int t = 0; t < STOP_THREADS; t++)
            for (int i = 0; i < STOP_CMDS; i++) {
                tcmd_t *c = cmds[t][i];
                int want = c->accepted ? 1 : 0;
                cr_assert_eq(done_calls(c), want,
                             "round %d thread %d command %d (%s): done called %d times, want %d",
                             round, t, i, c->accepted ? "accepted" : "refused", done_calls(c),
                             want);
                if (!c->accepted) continue;
                n_accepted++;
                if (c->cmd.exec == exec_register) {
                    EXPECT_ANSWER(c, 201, NULL);
                    created++;
                } else {
                    EXPECT_ANSWER(c, 200, NULL);
                }
            }
        EQ(answers_now() - answers, n_accepted);
        EQ(commands_total() - commands, n_accepted);
        cr_log_info("stop round %d: %ld of %d submits accepted", round, n_accepted,
                    STOP_THREADS * STOP_CMDS);

        tcmd_t *late = tcmd_new(exec_read_markets, NULL);
        cr_assert(!fg_writer_submit(g_writer, &late->cmd), "a submit after stop was accepted");
        sleep_ms(1);
        EQ(done_calls(late), 0);
        fg_writer_free(g_writer);
        g_writer = NULL;
        tcmd_free(late);
        for (int t = 0; t < STOP_THREADS; t++)
            for (int i = 0; i < STOP_CMDS; i++) tcmd_free(cmds[t][i]);
    }
    writer_start();
    fg_engine_t *e = reload();
    EQ(fg_engine_buyer_count(e), created);
    fg_engine_free(e);
}

/* ---------------------------------------------------------------- sale changes */

Test(writer, on_change_reports_a_created_sale_on_the_writer_thread) {
    tcmd_t *cat = tcmd_new(exec_catalog, NULL);
    ANSWER(cat);
    EXPECT_ANSWER(cat, 201, NULL);
    pthread_mutex_lock(&g_mu);
    int before = g_change.calls;
    pthread_mutex_unlock(&g_mu);
    EQ(before, 0);

    tcmd_t *sale = tcmd_new(exec_sale_create, "s1");
    ANSWER(sale);
    EXPECT_ANSWER(sale, 201, NULL);
    /* The callback runs in the loop that applied the command, before its batch is handed to
     * the commit thread, so it has run by the time the answer is released. */
    pthread_mutex_lock(&g_mu);
    int calls = g_change.calls;
    char id[sizeof g_change.sale_id];
    snprintf(id, sizeof id, "%s", g_change.sale_id);
    fg_sale_state_t state = g_change.state;
    pthread_t thread = g_change.thread;
    pthread_mutex_unlock(&g_mu);
    EQ(calls, 1);
    STREQ(id, "s1");
    STREQ(fg_sale_state_name(state), "open");
    cr_assert(pthread_equal(thread, sale->exec_thread), "on_change ran off the writer thread");
    cr_assert(!pthread_equal(thread, pthread_self()), "on_change ran on the test thread");

    /* A read moves nothing: no call. A pause does. */
    tcmd_t *r = tcmd_new(exec_read_markets, NULL);
    ANSWER(r);
    sleep_ms(SETTLE_MS);
    pthread_mutex_lock(&g_mu);
    calls = g_change.calls;
    pthread_mutex_unlock(&g_mu);
    EQ(calls, 1);

    tcmd_t *pause = tcmd_new(exec_sale_pause, "s1");
    ANSWER(pause);
    EXPECT_ANSWER(pause, 200, NULL);
    pthread_mutex_lock(&g_mu);
    calls = g_change.calls;
    state = g_change.state;
    pthread_mutex_unlock(&g_mu);
    EQ(calls, 2);
    STREQ(fg_sale_state_name(state), "paused");
    tcmd_free(cat);
    tcmd_free(sale);
    tcmd_free(r);
    tcmd_free(pause);
}

/* ---------------------------------------------------------------- a failed commit */

Test(writer, refused_commit_answers_503_and_the_engine_is_rebuilt_from_the_ledger) {
    market_de();
    /* The engine takes a lower-case market code (the API layer checks codes); the ledger does
     * not, so this batch cannot commit. */
    tcmd_t *bad = tcmd_new(exec_put_market, "zz");
    tcmd_key(bad, 3, "key-z", "PUT /v1/markets/zz");
    ANSWER(bad);
    EXPECT_ANSWER(bad, 503, "overloaded");
    EQ(atomic_load(&stats()->commit_failures_total), 1);
    wait_ready();

    tcmd_t *r = tcmd_new(exec_read_markets, NULL);
    ANSWER(r);
    EXPECT_ANSWER(r, 200, NULL);
    STREQ(r->cmd.body, "{\"markets\":1}");

    /* The key's record went with the failed batch: a retry runs (no 409, no replay). */
    tcmd_t *retry = tcmd_new(exec_put_market, "FR");
    tcmd_key(retry, 3, "key-z", "PUT /v1/markets/zz");
    ANSWER(retry);
    EXPECT_ANSWER(retry, 201, NULL);
    EQ(retry->exec_calls, 1);

    fg_engine_t *e = reload();
    EQ(fg_engine_market_count(e), 2);
    cr_assert_not_null(fg_engine_market_get(e, "FR"));
    cr_assert_null(fg_engine_market_get(e, "zz"), "the refused market reached the ledger");
    fg_engine_free(e);
    tcmd_free(bad);
    tcmd_free(r);
    tcmd_free(retry);
}
