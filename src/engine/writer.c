/*
 * writer.c — the single writer and its commit thread; see writer.h.
 *
 * Queue: producers push commands onto a lock-free stack (one CAS each); the writer takes the
 * whole stack with one exchange and reverses it, so commands run in arrival order. An eventfd
 * wakes the writer for new commands and for finished commits.
 *
 * Batches: `gather` collects the commands whose answers wait for the next commit; `commit`
 * is the batch the commit thread is writing. The writer hands `gather` over only when the
 * commit thread is idle, so while one batch is on its way to disk the next one grows: group
 * commit. The hand-over is a mutex and a condition variable, touched once per batch.
 */
#include "engine/writer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"

typedef struct {
    fg_change_t *changes;
    size_t change_count;
    fg_cmd_t *head, *tail; /* commands answered when this batch commits */
    size_t cmd_count;
    int result; /* 0 committed, -1 failed */
    double seconds;
} batch_t;

struct fg_writer {
    fg_engine_t *engine;
    fg_ledger_t *ledger;
    fg_sale_change_fn on_change;
    void *change_ctx;
    bool log_batches;

    _Atomic(fg_cmd_t *) inbox; /* lock-free stack, newest first */
    int wake_fd;               /* eventfd */
    atomic_bool stopping;
    atomic_int entering;           /* submitters between their stop check and push */
    atomic_bool awaiting_commands; /* the writer sleeps until a command arrives */

    pthread_t writer_thread, commit_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch_t gather;   /* writer thread only */
    batch_t commit;   /* guarded by mu while in flight */
    bool commit_busy; /* guarded by mu */
    bool commit_done; /* guarded by mu: result waiting for the writer */
    bool commit_exit; /* guarded by mu */

    bool loaded_untold;      /* the engine was (re)loaded: on_change(NULL sale) is due */
    uint64_t *sale_versions; /* last version seen per sale index, writer only */
    uint8_t *sale_states;
    int sale_slots;
    int64_t last_idem_expire_ms;
    fg_writer_stats_t stats;
};

static void wake(fg_writer_t *w) {
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n; /* a full counter still wakes the reader */
}

bool fg_writer_submit(fg_writer_t *w, fg_cmd_t *cmd) {
    /* `entering` lets the writer know no push is on its way before it exits. */
    atomic_fetch_add(&w->entering, 1);
    if (atomic_load(&w->stopping) || !atomic_load(&w->stats.ready)) {
        atomic_fetch_sub(&w->entering, 1);
        return false;
    }
    if (atomic_fetch_add(&w->stats.queue_depth, 1) >= FG_QUEUE_DEPTH_MAX) {
        atomic_fetch_sub(&w->stats.queue_depth, 1);
        atomic_fetch_sub(&w->entering, 1);
        return false;
    }
    cmd->idem_rec = NULL;
    FG_ASSERT(!cmd->has_idem || cmd->idem_key[0] != '\0'); /* the ledger refuses empty keys */
    fg_cmd_t *head = atomic_load_explicit(&w->inbox, memory_order_relaxed);
    do {
        cmd->next = head;
    } while (!atomic_compare_exchange_weak(&w->inbox, &head, cmd));
    /* Wake the writer only when it sleeps waiting for commands: while a commit is in flight it
     * waits for that instead, and takes everything queued meanwhile in one go (one wake-up per
     * batch rather than per request). */
    if (head == NULL && atomic_load(&w->awaiting_commands)) wake(w);
    atomic_fetch_sub(&w->entering, 1);
    return true;
}

fg_writer_stats_t *fg_writer_stats(fg_writer_t *w) {
    return &w->stats;
}

/* ---------------------------------------------------------------- answers */

void fg_cmd_problem(fg_cmd_t *cmd, int status, const char *code, const char *detail) {
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg_buf_problem_open(&b, status, code, detail);
    fg_buf_str(&b, "}");
    free(cmd->body);
    cmd->status = status;
    cmd->code = code;
    cmd->body = fg_buf_take(&b);
}

static void finish(fg_writer_t *w, fg_cmd_t *cmd) {
    atomic_fetch_add_explicit(&w->stats.commands_total, 1, memory_order_relaxed);
    cmd->next = NULL;
    cmd->done(cmd);
}

static void batch_add(batch_t *b, fg_cmd_t *cmd) {
    cmd->next = NULL;
    if (b->tail)
        b->tail->next = cmd;
    else
        b->head = cmd;
    b->tail = cmd;
    b->cmd_count++;
}

/* Answers every command of a batch that could not be committed with 503. */
static void fail_batch(fg_writer_t *w, batch_t *b, const char *why) {
    for (fg_cmd_t *c = b->head; c != NULL;) {
        fg_cmd_t *next = c->next;
        fg_cmd_problem(c, 503, "overloaded", why);
        finish(w, c);
        c = next;
    }
    b->head = b->tail = NULL;
    b->cmd_count = 0;
}

/* ---------------------------------------------------------------- applying commands */

/* gcc 12's analyzer loses track of cmd->body once cmd came off the inbox list and reports the
 * replaced body as leaked; it is freed with the command (fg_cmd_t's owner). */
FG_ANALYZER_OFF("-Wanalyzer-malloc-leak")
bool fg_cmd_idem_gate(fg_engine_t *e, fg_cmd_t *cmd) {
    const fg_idem_row_t *rec = NULL;
    if (cmd->idem_hash != 0) fg_engine_idem_hint(e, cmd->idem_scope, cmd->idem_key, cmd->idem_hash);
    switch (fg_engine_idem_lookup(e, cmd->idem_scope, cmd->idem_key, cmd->fingerprint, &rec)) {
    case FG_IDEM_NEW: return true;
    case FG_IDEM_REPLAY:
        free(cmd->body);
        cmd->status = rec->status;
        cmd->code = NULL;
        cmd->body = cmd->replay ? cmd->replay(cmd, rec->body) : strdup(rec->body);
        cmd->replayed = cmd->body != NULL;
        if (cmd->body == NULL)
            fg_cmd_problem(cmd, 503, "overloaded", "the stored answer cannot be replayed");
        return false;
    case FG_IDEM_IN_FLIGHT:
        fg_cmd_problem(cmd, 409, "idempotency_in_progress",
                       "a request with this Idempotency-Key is still being processed; retry");
        return false;
    case FG_IDEM_MISMATCH:
        fg_cmd_problem(cmd, 422, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request");
        return false;
    case FG_IDEM_UNKNOWN:
        fg_cmd_problem(cmd, 503, "overloaded",
                       "the answer stored for this Idempotency-Key cannot be read now; retry");
        return false;
    }
    return false;
}
FG_ANALYZER_ON

static void apply(fg_writer_t *w, fg_cmd_t *cmd, int64_t now_ms) {
    if (cmd->admit != NULL && !cmd->admit(w->engine, cmd)) {
        FG_ASSERT(cmd->body != NULL && cmd->status >= 100);
        finish(w, cmd);
        return;
    }
    if (cmd->has_idem && !fg_cmd_idem_gate(w->engine, cmd)) {
        finish(w, cmd);
        return;
    }
    size_t before = fg_engine_pending_changes(w->engine);
    cmd->exec(w->engine, cmd, now_ms);
    FG_ASSERT(cmd->body != NULL && cmd->status >= 100);
    if (fg_engine_pending_changes(w->engine) == before) {
        finish(w, cmd);
        return;
    }
    if (cmd->has_idem && cmd->status >= 200 && cmd->status < 300) {
        const fg_idem_row_t *rec = NULL;
        if (fg_engine_idem_store(w->engine, cmd->idem_scope, cmd->idem_key, cmd->fingerprint,
                                 cmd->status, cmd->idem_body ? cmd->idem_body : cmd->body, now_ms,
                                 &rec) == FG_OK) {
            cmd->idem_rec = rec;
        } else {
            /* The write stands (it is in the batch) but cannot be made idempotent: refuse
             * nothing now, answer as it is; a retry would be treated as new. */
            FG_LOG_WARN("event=idem_store_failed detail=\"%s\"", fg_engine_detail(w->engine));
        }
    }
    batch_add(&w->gather, cmd);
}

/* Takes the inbox, oldest first. */
static fg_cmd_t *take_inbox(fg_writer_t *w) {
    fg_cmd_t *c = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
    fg_cmd_t *rev = NULL;
    while (c != NULL) {
        fg_cmd_t *next = c->next;
        c->next = rev;
        rev = c;
        c = next;
    }
    return rev;
}

/* ---------------------------------------------------------------- commit thread */

static void *commit_main(void *arg) {
    fg_writer_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->commit_exit && !(w->commit_busy && !w->commit_done))
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->commit_exit) break;
        batch_t *b = &w->commit;
        pthread_mutex_unlock(&w->mu);

        char err[256] = "";
        int64_t t0 = fg_clock_mono_ns();
        int rc = fg_ledger_commit(w->ledger, b->changes, b->change_count, err, sizeof err);
        b->seconds = (double)(fg_clock_mono_ns() - t0) / 1e9;
        b->result = rc;
        if (rc != 0)
            FG_LOG_ERROR("event=commit_failed changes=%zu class=%s error=\"%s\"", b->change_count,
                         rc == FG_LEDGER_ESYNC   ? "fsync"
                         : rc == FG_LEDGER_EDISK ? "disk"
                                                 : "refused",
                         err);

        pthread_mutex_lock(&w->mu);
        w->commit_done = true;
        wake(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Gives the gathered batch to the commit thread when it is idle. */
static void hand_off(fg_writer_t *w) {
    if (fg_engine_pending_changes(w->engine) == 0) {
        FG_ASSERT(w->gather.head == NULL); /* commands join a batch only by writing */
        return;
    }
    pthread_mutex_lock(&w->mu);
    if (!w->commit_busy) {
        w->commit = w->gather;
        w->commit.change_count = fg_engine_take_changes(w->engine, &w->commit.changes);
        memset(&w->gather, 0, sizeof w->gather);
        w->commit_busy = true;
        w->commit_done = false;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

static void release_changes(batch_t *b) {
    for (size_t i = 0; i < b->change_count; i++)
        fg_change_release(&b->changes[i]);
    free(b->changes);
    b->changes = NULL;
    b->change_count = 0;
}

/* After a failed fsync the ledger's files are not known to hold what SQLite believes they hold,
 * and no later fsync can tell (ledger.c, failure_class). Going on could acknowledge writes on
 * top of lost ones, so the writer takes nothing more: every command is refused with 503, /readyz
 * says not ready, and main exits with its own status so that the supervisor starts floodgate
 * again, which rebuilds from what the ledger really holds (SQLite's recovery at open). */
static void give_up(fg_writer_t *w) {
    atomic_store(&w->stats.ready, false);
    if (atomic_exchange(&w->stats.ledger_unsafe, true)) return;
    FG_LOG_ERROR("event=ledger_unsafe reason=fsync_failed detail=\"refusing every write; "
                 "floodgate stops and must be restarted\"");
}

/* Brings the engine back once the ledger takes writes again. A disk that refuses writes still
 * reads, so loading alone would succeed, and every following batch would fail and cost another
 * load; the probe (one durable write) keeps floodgate not ready until a commit can succeed. */
static void rebuild(fg_writer_t *w, int64_t now_ms) {
    char err[256];
    if (atomic_load(&w->stats.ledger_unsafe)) return;
    int rc = fg_ledger_probe(w->ledger, now_ms, err, sizeof err);
    if (rc == FG_LEDGER_ESYNC) {
        give_up(w);
        return;
    }
    if (rc != 0) {
        FG_LOG_WARN("event=ledger_probe_failed error=\"%s\"", err);
        return;
    }
    fg_engine_t *e = NULL;
    if (fg_engine_load(w->ledger, now_ms, &e, err, sizeof err) != 0) {
        FG_LOG_ERROR("event=reload_failed error=\"%s\"", err);
        return;
    }
    w->engine = e;
    w->loaded_untold = true;
    if (w->sale_slots > 0) {
        memset(w->sale_versions, 0, (size_t)w->sale_slots * sizeof *w->sale_versions);
        memset(w->sale_states, 0xff, (size_t)w->sale_slots);
    }
    atomic_store(&w->stats.ready, true);
}

/* Handles a finished commit: releases its answers, or on failure fails everything applied
 * since and drops the engine, to be rebuilt from what the ledger holds (rebuild). */
static void collect(fg_writer_t *w, int64_t now_ms) {
    pthread_mutex_lock(&w->mu);
    bool done = w->commit_done;
    batch_t b = {0};
    if (done) {
        b = w->commit;
        memset(&w->commit, 0, sizeof w->commit);
        w->commit_done = false;
        w->commit_busy = false;
    }
    pthread_mutex_unlock(&w->mu);
    if (!done) return;
    if (b.result == 0) {
        atomic_fetch_add_explicit(&w->stats.batches_total, 1, memory_order_relaxed);
        fg_hist_observe(&w->stats.batch_commands, (double)b.cmd_count);
        fg_hist_observe(&w->stats.commit_seconds, b.seconds);
        if (w->log_batches)
            FG_LOG_INFO("event=batch_commit commands=%zu changes=%zu commit_ms=%.3f", b.cmd_count,
                        b.change_count, b.seconds * 1e3);
        for (fg_cmd_t *c = b.head; c != NULL;) {
            fg_cmd_t *next = c->next;
            if (c->idem_rec) fg_engine_idem_committed(w->engine, c->idem_rec);
            finish(w, c);
            c = next;
        }
        release_changes(&b);
        return;
    }
    atomic_fetch_add_explicit(&w->stats.commit_failures_total, 1, memory_order_relaxed);
    atomic_store(&w->stats.ready, false);
    release_changes(&b);
    /* No 2xx for any of these: the batch did not commit (I3). A retry with the same
     * Idempotency-Key is safe either way (I5): after a failed fsync the batch may turn up
     * whole at the next start, with its stored answers. */
    fail_batch(w, &b,
               "the ledger could not commit this write; retry with the same Idempotency-Key");
    fail_batch(w, &w->gather, "the ledger could not commit an earlier write; retry");
    fg_engine_discard_changes(w->engine);
    fg_engine_free(w->engine);
    w->engine = NULL;
    if (w->on_change) w->on_change(w->change_ctx, NULL, NULL, now_ms);
    /* With no engine, writer_main refuses every command and calls rebuild every second. */
    if (b.result == FG_LEDGER_ESYNC) give_up(w);
}

/* ---------------------------------------------------------------- writer thread */

/* Tells the change callback about sales whose stock or derived state moved. */
static void notify(fg_writer_t *w, int64_t now_ms) {
    int n = fg_engine_sale_count(w->engine);
    if (n > w->sale_slots) {
        uint64_t *v = realloc(w->sale_versions, (size_t)n * sizeof *v);
        uint8_t *st = v ? realloc(w->sale_states, (size_t)n) : NULL;
        if (v) w->sale_versions = v;
        if (st == NULL) return; /* try again next loop */
        w->sale_states = st;
        memset(v + w->sale_slots, 0, (size_t)(n - w->sale_slots) * sizeof *v);
        memset(st + w->sale_slots, 0xff, (size_t)(n - w->sale_slots));
        w->sale_slots = n;
    }
    if (w->loaded_untold && w->on_change) w->on_change(w->change_ctx, w->engine, NULL, now_ms);
    w->loaded_untold = false;
    for (int i = 0; i < n; i++) {
        const fg_sale_t *s = fg_engine_sale_at(w->engine, i);
        uint8_t st = (uint8_t)fg_engine_sale_state(s, now_ms);
        if (s->version == w->sale_versions[i] && st == w->sale_states[i]) continue;
        w->sale_versions[i] = s->version;
        w->sale_states[i] = st;
        if (w->on_change) w->on_change(w->change_ctx, w->engine, s, now_ms);
    }
}

/* Waits for a wake-up or the next expiry, at most FG_TICK_MS. While a commit is in flight the
 * wake-up that counts is its end; otherwise a command's arrival. */
static void wait_for_work(fg_writer_t *w) {
    pthread_mutex_lock(&w->mu);
    bool committing = w->commit_busy && !w->commit_done;
    bool collected = w->commit_done;
    pthread_mutex_unlock(&w->mu);
    if (collected) return;
    if (!committing) {
        atomic_store(&w->awaiting_commands, true); /* seq_cst: pairs with submit's push */
        if (atomic_load(&w->inbox) != NULL || atomic_load(&w->stopping)) {
            atomic_store(&w->awaiting_commands, false);
            return;
        }
    }
    int timeout_ms = FG_TICK_MS;
    if (w->engine != NULL) {
        int64_t until = fg_engine_next_expiry_ms(w->engine) - fg_clock_now_ms();
        if (until < timeout_ms) timeout_ms = until < 0 ? 0 : (int)until;
    }
    struct pollfd p = {.fd = w->wake_fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) > 0) {
        uint64_t v;
        ssize_t r = read(w->wake_fd, &v, sizeof v);
        (void)r;
    }
    atomic_store(&w->awaiting_commands, false);
}

/* Answers the whole inbox with 503 (no engine to run it on). */
static void refuse_inbox(fg_writer_t *w) {
    for (fg_cmd_t *c = take_inbox(w); c != NULL;) {
        fg_cmd_t *next = c->next;
        atomic_fetch_sub(&w->stats.queue_depth, 1);
        fg_cmd_problem(c, 503, "overloaded", "the ledger is unavailable; retry");
        finish(w, c);
        c = next;
    }
}

static bool idle(fg_writer_t *w) {
    pthread_mutex_lock(&w->mu);
    bool busy = w->commit_busy;
    pthread_mutex_unlock(&w->mu);
    /* entering before inbox: a submitter that passed its stop check is either still counted
     * in entering or has already pushed. */
    return !busy && w->gather.head == NULL &&
           (w->engine == NULL || fg_engine_pending_changes(w->engine) == 0) &&
           atomic_load(&w->entering) == 0 && atomic_load(&w->inbox) == NULL;
}

static void *writer_main(void *arg) {
    fg_writer_t *w = arg;
    int64_t last_reload_ms = 0;
    for (;;) {
        wait_for_work(w);
        int64_t now_ms = fg_clock_now_ms();
        collect(w, now_ms);
        if (w->engine == NULL) {
            if (now_ms - last_reload_ms >= 1000) {
                last_reload_ms = now_ms;
                rebuild(w, now_ms);
            }
            if (w->engine == NULL) {
                refuse_inbox(w);
                if (atomic_load(&w->stopping) && idle(w)) break;
                continue;
            }
        }
        fg_engine_tick(w->engine, now_ms);
        if (now_ms - w->last_idem_expire_ms >= 1000) {
            fg_engine_idem_expire(w->engine, now_ms);
            w->last_idem_expire_ms = now_ms;
        }
        for (fg_cmd_t *c = take_inbox(w); c != NULL;) {
            fg_cmd_t *next = c->next;
            atomic_fetch_sub_explicit(&w->stats.queue_depth, 1, memory_order_relaxed);
            apply(w, c, now_ms);
            c = next;
        }
        notify(w, now_ms);
        hand_off(w);
        if (atomic_load(&w->stopping) && idle(w)) break;
    }
    return NULL;
}

fg_writer_t *fg_writer_start(fg_ledger_t *ledger, fg_sale_change_fn on_change, void *change_ctx,
                             bool log_batches, char *err, size_t errlen) {
    static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
    static const double commit_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   1};
    fg_writer_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->ledger = ledger;
    w->on_change = on_change;
    w->change_ctx = change_ctx;
    w->log_batches = log_batches;
    fg_hist_init(&w->stats.batch_commands, batch_bounds, 12);
    fg_hist_init(&w->stats.commit_seconds, commit_bounds, 12);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail_fd;
    }
    if (fg_engine_load(ledger, fg_clock_now_ms(), &w->engine, err, errlen) != 0) goto fail_load;
    w->loaded_untold = true;
    atomic_store(&w->stats.ready, true);
    if (pthread_create(&w->commit_thread, NULL, commit_main, w) != 0) {
        snprintf(err, errlen, "cannot start the commit thread");
        goto fail_commit;
    }
    if (pthread_create(&w->writer_thread, NULL, writer_main, w) != 0) {
        snprintf(err, errlen, "cannot start the writer thread");
        goto fail_writer;
    }
    return w;

fail_writer:
    pthread_mutex_lock(&w->mu);
    w->commit_exit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->commit_thread, NULL);
fail_commit:
    fg_engine_free(w->engine);
fail_load:
    close(w->wake_fd);
fail_fd:
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return NULL;
}

void fg_writer_stop(fg_writer_t *w) {
    atomic_store(&w->stopping, true);
    wake(w);
    pthread_join(w->writer_thread, NULL);
    pthread_mutex_lock(&w->mu);
    w->commit_exit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->commit_thread, NULL);
    FG_ASSERT(w->gather.head == NULL && w->commit.head == NULL);
    fg_engine_free(w->engine);
    w->engine = NULL;
}

void fg_writer_free(fg_writer_t *w) {
    if (w == NULL) return;
    FG_ASSERT(atomic_load(&w->stopping) && w->engine == NULL);
    close(w->wake_fd);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->sale_versions);
    free(w->sale_states);
    free(w);
}
