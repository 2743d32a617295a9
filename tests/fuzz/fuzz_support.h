/*
 * fuzz_support.h — what floodgate's fuzz targets share: the small world every request runs
 * against, its tokens and secrets, scratch directories, and the failure report.
 *
 * The world is built by ordinary engine calls at a given time, so each run can have a fresh
 * copy in microseconds and runs never see each other's writes. The seed corpora and the
 * dictionaries name its ids and tokens; change them together.
 */
#ifndef FG_FUZZ_SUPPORT_H
#define FG_FUZZ_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "fuzz_fail.h"

/* How long a scratch SQLite connection waits for the ledger's lock (a checkpoint) at most. */
#define FZ_BUSY_TIMEOUT_MS 5000

/* Operators' bearer token and the payment provider's HMAC key of the fuzzed server. */
#define FZ_ADMIN_TOKEN    "fuzz-admin-token-7d1c9a"
#define FZ_WEBHOOK_SECRET "fuzz-webhook-secret-51e0"

/* Buyers b_1 (DE) and b_2 (US); their tokens are "fgb_<id>_<secret>" as buyers.c issues them. */
#define FZ_BUYER1_SECRET "fuzzsecret-ana-0123456789abcdef"
#define FZ_BUYER2_SECRET "fuzzsecret-bo-fedcba9876543210"
#define FZ_BUYER1_TOKEN  "fgb_1_" FZ_BUYER1_SECRET
#define FZ_BUYER2_TOKEN  "fgb_2_" FZ_BUYER2_SECRET

/* Stored answers: one committed (a retry of its request replays it) and one whose batch has
 * not committed (a retry gets 409). Both belong to buyer 1 and POST /v1/sales/launch/holds. */
#define FZ_REPLAY_KEY   "fuzz-replay-1"
#define FZ_INFLIGHT_KEY "fuzz-inflight-1"
#define FZ_REPLAY_BODY  "{\"sku\":\"nova-x-black\"}"

/*
 * The world at now_ms: markets DE, FR, IN, US; product nova-x (SKUs nova-x-black, blocked in
 * US, and nova-x-white) and nova-case (nova-case-1); sale "launch" open since an hour with four
 * pools, "later" opening in a day, "ended" closed yesterday; buyers b_1 and b_2; holds h_1
 * (held), h_2 (ordered as o_1, payment pending), h_3 (ordered as o_2, paid) of b_1; h_4 (held)
 * of b_2, and h_5 (held) and h_6 (ordered as o_3, payment pending) of b_2 whose time ran out a
 * minute ago, which the next tick ends; the two stored answers above. Its change records are
 * left pending: commit them to a ledger or discard them. Aborts when the engine refuses a step
 * (the world is wrong).
 */
fg_engine_t *fz_world_new(int64_t now_ms);

/* Makes a fresh directory under $TMPDIR (or /tmp) and returns its path (static storage, one
 * per tag is enough); it is removed with its files when the process exits normally. */
const char *fz_scratch_dir(const char *tag);

/* Checks that an answer is what the API promises: a status from 100 to 599 and, unless
 * content_type names something else, a JSON object body; a problem answer carries its code
 * and status in the body. */
void fz_check_answer(const char *what, int status, const char *code, const char *content_type,
                     const char *body);

#endif
