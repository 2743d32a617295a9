/*
 * writer.h — the single writer: runs commands against the engine in batches and commits each
 * batch to the ledger before any of its answers leave (I3), with group commit.
 *
 * Two threads. The writer thread owns the engine: it takes every queued command, applies it
 * (the command's exec function runs here and writes the answer), and gathers the resulting
 * change records into the next batch. The commit thread writes a batch to the ledger in one
 * transaction; while it does, the writer keeps applying commands into the following batch.
 * When a batch commits, the answers of its commands are released (their done callbacks run).
 * Commands that changed nothing (reads, refusals) are answered at once.
 *
 * Idempotency (I5) is handled here for every command that carries a key: a committed stored
 * answer is replayed, a key whose batch has not committed gets 409, a key seen with another
 * request gets 422; a new key's 2xx answer is stored in the same batch as its write.
 *
 * If a commit fails, the answers of that batch and of everything applied after it become
 * 503, and the engine is rebuilt from the ledger (what is on disk is the truth) once a probe
 * write shows that the ledger takes writes again; until then every command gets 503. After a
 * failed fsync nothing is rebuilt: the writer sets ledger_unsafe and floodgate exits.
 */
#ifndef FG_WRITER_H
#define FG_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "ledger/ledger.h"
#include "limits.h"
#include "util/hist.h"

typedef struct fg_cmd fg_cmd_t;
typedef struct fg_writer fg_writer_t;

/* Runs on the writer thread: read or change the engine and set the answer (status, body). */
typedef void (*fg_cmd_exec_fn)(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms);
/* Runs once per command when its answer may leave; on the writer or commit thread. After it
 * returns the writer no longer touches the command. */
typedef void (*fg_cmd_done_fn)(fg_cmd_t *cmd);

/* Builds the answer to replay from a stored one (malloc'd), for commands that store something
 * other than their answer (see idem_body). NULL when it cannot. */
typedef char *(*fg_cmd_replay_fn)(fg_cmd_t *cmd, const char *stored);

/* Runs on the writer thread before the idempotency check: false refuses the command (it has set
 * the answer, e.g. 401 for a wrong token), so a stored answer is never shown to a stranger. */
typedef bool (*fg_cmd_admit_fn)(fg_engine_t *e, fg_cmd_t *cmd);

struct fg_cmd {
    fg_cmd_admit_fn admit; /* may be NULL */
    fg_cmd_exec_fn exec;
    fg_cmd_done_fn done;
    void *ctx; /* the caller's */

    /* idempotency: set has_idem to use it */
    bool has_idem;
    uint64_t idem_scope;
    char idem_key[FG_IDEM_KEY_BYTES_MAX + 1];
    /* fg_engine_idem_hash(idem_scope, idem_key), or 0: not computed. Whoever sets the key sets
     * this too (or leaves 0): the writer hands it to the engine as the key's hash unchecked. */
    uint64_t idem_hash;
    uint8_t fingerprint[32];

    fg_cmd_replay_fn replay; /* NULL: the stored answer is replayed as it is */

    /* the answer, written by exec or by the writer */
    int status;
    char *body;               /* malloc'd JSON, owned by the command's owner */
    const char *code;         /* problem code for errors, static */
    const char *content_type; /* NULL: JSON (problem+json when code is set) */
    bool replayed;            /* answer came from the idempotency store */
    char *idem_body;          /* when set, stored for replay instead of body (malloc'd,
                                 owned like body): e.g. with a secret sealed */

    /* writer's own */
    const fg_idem_row_t *idem_rec; /* stored answer awaiting its commit */
    struct fg_cmd *next;
};

typedef struct {
    atomic_uint_fast64_t batches_total;
    atomic_uint_fast64_t commands_total;
    atomic_uint_fast64_t commit_failures_total;
    atomic_int_fast64_t queue_depth;
    atomic_bool ready;        /* engine loaded and ledger healthy */
    fg_hist_t batch_commands; /* commands per committed batch */
    fg_hist_t commit_seconds; /* ledger commit latency */
    /* an fsync failed: the writer refuses everything for good; main exits to be restarted */
    atomic_bool ledger_unsafe;
} fg_writer_stats_t;

/* Called on the writer thread after each loop with the sales whose stock or state changed.
 * Also with s == NULL: once the engine is loaded or rebuilt, before any sale of it (e is the
 * engine); and when the engine is dropped after a failed commit (e is NULL too). */
typedef void (*fg_sale_change_fn)(void *ctx, const fg_engine_t *e, const fg_sale_t *s,
                                  int64_t now_ms);

/* The Idempotency-Key gate a command with a key passes before it runs: true for a new key;
 * otherwise false with the answer set (the stored one replayed, 409 in flight, 422 reused,
 * 503 unreadable). The engine's thread. */
bool fg_cmd_idem_gate(fg_engine_t *e, fg_cmd_t *cmd);

/* Sets a command's answer to a problem+json error (replacing any body). Writer thread, or the
 * command's owner before submitting. */
void fg_cmd_problem(fg_cmd_t *cmd, int status, const char *code, const char *detail);

/* Loads the engine from the ledger (which the writer then owns) and starts both threads.
 * Returns NULL with a message in err on failure. */
fg_writer_t *fg_writer_start(fg_ledger_t *ledger, fg_sale_change_fn on_change, void *change_ctx,
                             bool log_batches, char *err, size_t errlen);
/* Queues a command; any thread. Returns false (and does not take it) when the queue is full or
 * the writer is stopping: the caller answers 503. */
FG_MUST_USE bool fg_writer_submit(fg_writer_t *w, fg_cmd_t *cmd);
/* Answers everything queued, commits the last batch, stops both threads. Later submits are
 * refused, so the HTTP layer may still call it until it stops. The ledger stays open. */
void fg_writer_stop(fg_writer_t *w);
/* Frees a stopped writer; call it once nothing can submit any more (HTTP stopped). */
void fg_writer_free(fg_writer_t *w);
fg_writer_stats_t *fg_writer_stats(fg_writer_t *w);

/* Rebuilds a fresh engine from the ledger (also used by tools). 0 or -1 with err. */
FG_MUST_USE int fg_engine_load(fg_ledger_t *ledger, int64_t now_ms, fg_engine_t **out, char *err,
                               size_t errlen);

#endif
