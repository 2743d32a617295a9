/*
 * fuzz_api.c — libFuzzer target for every decoder of a request: the router (paths), query
 * strings, the Authorization header (operator and buyer tokens), Idempotency-Key,
 * Floodgate-Signature, Last-Event-ID and every endpoint's JSON body.
 *
 * The input is a request in HTTP's own shape, which keeps seeds readable and lets the
 * dictionary work on real field names:
 *
 *     POST /v1/sales/launch/holds?x=1
 *     Authorization: Bearer fgb_1_...
 *     Idempotency-Key: k1
 *
 *     {"sku":"nova-x-black"}
 *
 * The first line is the method and the URI; header lines follow up to an empty line (CR LF or
 * LF); the rest is the body. It reaches fg_api_handle as the HTTP layer would hand it over
 * (server.c: the URI split at '?', a URI or body past its limit never gets here). A
 * Floodgate-Signature of "@sign" or "@sign<seconds>" is replaced by a valid signature of the
 * body at now (plus the seconds), since no fuzzer forges HMAC-SHA256 and the body decoder sits
 * behind it.
 *
 * What the API answers at once is checked (a status, a JSON object, a problem that names its
 * code). A command runs as the writer runs it (writer.c: the tick that ends what is due, then
 * apply(): admit, idempotency gate, exec, stored answer) against a fresh copy of the fuzz
 * world, then fg_engine_check asserts I1, I2, I4 and I6. A command that wrote is committed to a
 * real ledger, which must accept it, and the engine rebuilt from that ledger must agree with
 * the live one; a retry must get the stored answer (I5) and the same key with another body
 * 422. Streams (events, exports) are read until they end or would wait. Every run starts from
 * the same world, in memory and on disk.
 */
#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "engine/writer.h"
#include "fuzz_support.h"
#include "ledger/ledger.h"
#include "util/clock.h"
#include "util/log.h"

#define FZ_STREAM_READS_MAX    64      /* reads of one stream before the run gives up on it */
#define FZ_STREAM_READ_BYTES   4096    /* what the HTTP layer asks a stream for, roughly */
#define FZ_SIGN_SHIFT_S_MAX    1000000 /* "@sign<seconds>": further off is taken as 0 */
#define FZ_SIGNATURE_BYTES_MAX 128     /* "t=<20 digits>,v1=<64 hex>" and its NUL */
#define FZ_WIPE_SQL_BYTES_MAX  2048    /* a DELETE per table of the schema */

/* ---------------------------------------------------------------- the server */

static struct {
    fg_api_t *api;
    fg_ledger_t *ledger; /* in the API's data dir: the world, committed; exports read it */
    sqlite3 *side;       /* another connection to it, to wipe it back to the world */
    char wipe_sql[FZ_WIPE_SQL_BYTES_MAX];
    fg_ledger_t *idle_ledger; /* the idle writer's, so /metrics and /readyz have one */
    fg_writer_t *idle_writer;
    bool verbose; /* FG_FUZZ_VERBOSE set: each answer is printed, to see what a seed reaches */
} g;

static void commit_pending(fg_engine_t *e, const char *what) {
    fg_change_t *ch = NULL;
    size_t n = fg_engine_take_changes(e, &ch);
    char err[512] = "";
    int rc = fg_ledger_commit(g.ledger, ch, n, err, sizeof err);
    for (size_t i = 0; i < n; i++)
        fg_change_release(&ch[i]);
    free(ch);
    if (rc != 0) fz_fail("the ledger refused %s: %s", what, err);
}

/* "DELETE FROM t;" for every table of the schema but meta, so a wipe follows migrations. */
static void build_wipe_sql(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/floodgate.db", dir);
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(path, &g.side) != SQLITE_OK ||
        sqlite3_prepare_v2(g.side,
                           "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'meta'"
                           " AND name NOT LIKE 'sqlite_%'",
                           -1, &st, NULL) != SQLITE_OK)
        fz_fail("cannot read the schema: %s", sqlite3_errmsg(g.side));
    size_t n = (size_t)snprintf(g.wipe_sql, sizeof g.wipe_sql, "BEGIN;");
    while (sqlite3_step(st) == SQLITE_ROW && n < sizeof g.wipe_sql)
        n += (size_t)snprintf(g.wipe_sql + n, sizeof g.wipe_sql - n, "DELETE FROM \"%s\";",
                              (const char *)sqlite3_column_text(st, 0));
    if (n < sizeof g.wipe_sql)
        n += (size_t)snprintf(g.wipe_sql + n, sizeof g.wipe_sql - n, "COMMIT;");
    if (n >= sizeof g.wipe_sql) fz_fail("the wipe SQL does not fit");
    sqlite3_finalize(st);
    sqlite3_busy_timeout(g.side, FZ_BUSY_TIMEOUT_MS);
}

/* Puts the ledger back to the world after a run that wrote to it. */
static void ledger_reset(int64_t now_ms) {
    if (sqlite3_exec(g.side, g.wipe_sql, NULL, NULL, NULL) != SQLITE_OK)
        fz_fail("cannot wipe the ledger: %s", sqlite3_errmsg(g.side));
    fg_engine_t *w = fz_world_new(now_ms);
    commit_pending(w, "the world");
    fg_engine_free(w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fg_log_set_quiet(true);
    g.verbose = getenv("FG_FUZZ_VERBOSE") != NULL;
    if (sodium_init() < 0) fz_fail("libsodium does not start");
    const char *dir = fz_scratch_dir("api");
    const char *idle_dir = fz_scratch_dir("idle");
    char err[512];
    if (fg_ledger_open(dir, &g.ledger, err, sizeof err) != 0 ||
        fg_ledger_open(idle_dir, &g.idle_ledger, err, sizeof err) != 0)
        fz_fail("%s", err);
    build_wipe_sql(dir);
    int64_t now_ms = fg_clock_now_ms();
    fg_engine_t *w = fz_world_new(now_ms);
    commit_pending(w, "the world");
    uint8_t admin_hash[32];
    crypto_generichash(admin_hash, sizeof admin_hash, (const unsigned char *)FZ_ADMIN_TOKEN,
                       strlen(FZ_ADMIN_TOKEN), NULL, 0);
    fg_api_config_t cfg = {.data_dir = dir,
                           .admin_token_hash = admin_hash,
                           .webhook_secret = FZ_WEBHOOK_SECRET,
                           .rate_limit_per_s = 0}; /* a limit would make runs depend on time */
    g.api = fg_api_new(&cfg);
    g.idle_writer = fg_writer_start(g.idle_ledger, NULL, NULL, false, err, sizeof err);
    if (g.api == NULL || g.idle_writer == NULL) fz_fail("cannot start: %s", err);
    fg_api_set_writer(g.api, g.idle_writer);
    /* Event streams exist for sales the writer has published. */
    for (int i = 0; i < fg_engine_sale_count(w); i++)
        fg_api_on_sale_change(g.api, w, fg_engine_sale_at(w, i), now_ms);
    fg_engine_free(w);
    return 0;
}

/* ---------------------------------------------------------------- the input */

typedef struct {
    fg_api_request_t rq;
    char *path, *query, *authorization, *idempotency_key, *signature, *last_event_id;
    char *body; /* exactly body_len bytes, no NUL after them */
} fz_request_t;

static fg_method_t parse_method(const char *m, size_t n) {
    static const struct {
        const char *name;
        fg_method_t method;
    } methods[] = {{"GET", FG_GET}, {"POST", FG_POST}, {"PUT", FG_PUT}, {"DELETE", FG_DELETE}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strlen(methods[i].name) == n && memcmp(methods[i].name, m, n) == 0)
            return methods[i].method;
    return FG_OTHER;
}

/* A heap copy of n bytes with a NUL after them, cut at an inner NUL as a C string would be. */
static char *copy_str(const char *p, size_t n) {
    const char *nul = memchr(p, '\0', n);
    if (nul != NULL) n = (size_t)(nul - p);
    char *s = malloc(n + 1);
    if (s == NULL) fz_fail("out of memory");
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* "t=<now + shift>,v1=<hex HMAC-SHA256 of "t.body">" as the payment provider signs. */
static char *sign(const char *value, const char *body, size_t body_len) {
    long long shift = strtoll(value + 5, NULL, 10);
    if (shift < -FZ_SIGN_SHIFT_S_MAX || shift > FZ_SIGN_SHIFT_S_MAX) shift = 0;
    long long t = (long long)(fg_clock_now_ms() / 1000) + shift;
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "%lld.", t);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)FZ_WEBHOOK_SECRET,
                                strlen(FZ_WEBHOOK_SECRET));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)prefix, (unsigned long long)n);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_len);
    crypto_auth_hmacsha256_final(&st, mac);
    char hex[2 * sizeof mac + 1], out[FZ_SIGNATURE_BYTES_MAX];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    snprintf(out, sizeof out, "t=%lld,v1=%s", t, hex);
    return copy_str(out, strlen(out));
}

/* One header line: the four headers the API reads, first one wins (as MHD looks them up). */
static void parse_header(fz_request_t *r, const char *p, size_t n) {
    static const char *const names[] = {"Authorization", "Idempotency-Key", "Floodgate-Signature",
                                        "Last-Event-ID"};
    char **slots[] = {&r->authorization, &r->idempotency_key, &r->signature, &r->last_event_id};
    const char *colon = memchr(p, ':', n);
    if (colon == NULL) return;
    size_t name_len = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (*slots[i] == NULL && strlen(names[i]) == name_len &&
            strncasecmp(names[i], p, name_len) == 0)
            *slots[i] = copy_str(v, (size_t)(end - v));
}

/* The next line of [*p, end) without its CR LF or LF; *p moves past it. */
static size_t next_line(const char **p, const char *end, const char **line) {
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *stop = nl ? nl : end;
    *line = *p;
    *p = nl ? nl + 1 : end;
    size_t n = (size_t)(stop - *line);
    if (n > 0 && (*line)[n - 1] == '\r') n--;
    return n;
}

/* False when the server would not pass this request to the API (URI or body too long). */
static bool request_decode(const uint8_t *data, size_t size, fz_request_t *r) {
    memset(r, 0, sizeof *r);
    const char *p = (const char *)data, *end = p + size, *line;
    size_t n = next_line(&p, end, &line);
    const char *method = line;
    const char *sp = memchr(line, ' ', n);
    size_t mlen = sp ? (size_t)(sp - line) : n;
    const char *uri = sp ? sp + 1 : line + n;
    size_t ulen = n - (size_t)(uri - line);
    if (ulen > FG_URL_BYTES_MAX) return false;
    const char *q = memchr(uri, '?', ulen);
    r->path = copy_str(uri, q ? (size_t)(q - uri) : ulen);
    r->query = q ? copy_str(q + 1, ulen - (size_t)(q + 1 - uri)) : copy_str("", 0);
    while (p < end && (n = next_line(&p, end, &line)) > 0)
        parse_header(r, line, n);
    size_t body_len = (size_t)(end - p);
    if (body_len > FG_BODY_BYTES_MAX) return false;
    r->body = malloc(body_len ? body_len : 1);
    if (r->body == NULL) fz_fail("out of memory");
    memcpy(r->body, p, body_len);
    if (r->signature != NULL && strncmp(r->signature, "@sign", 5) == 0) {
        char *s = sign(r->signature, r->body, body_len);
        free(r->signature);
        r->signature = s;
    }
    r->rq = (fg_api_request_t){.method = parse_method(method, mlen),
                               .path = r->path,
                               .query = r->query,
                               .authorization = r->authorization,
                               .idempotency_key = r->idempotency_key,
                               .signature = r->signature,
                               .last_event_id = r->last_event_id,
                               .body = body_len ? r->body : "",
                               .body_len = body_len,
                               .client_ip = "127.0.0.1"};
    return true;
}

static void request_free(fz_request_t *r) {
    char *owned[] = {r->path,      r->query,         r->authorization, r->idempotency_key,
                     r->signature, r->last_event_id, r->body};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        free(owned[i]);
}

/* ---------------------------------------------------------------- commands */

/* Runs a command as the writer's apply() does and returns whether it changed the engine;
 * *stored is the answer kept for its Idempotency-Key, or NULL. */
static bool apply(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms, const fg_idem_row_t **stored) {
    *stored = NULL;
    if (cmd->admit != NULL && !cmd->admit(e, cmd)) return false;
    if (cmd->has_idem && !fg_cmd_idem_gate(e, cmd)) return false;
    size_t before = fg_engine_pending_changes(e);
    cmd->exec(e, cmd, now_ms);
    if (fg_engine_pending_changes(e) == before) return false;
    if (cmd->has_idem && cmd->status >= 200 && cmd->status < 300 &&
        fg_engine_idem_store(e, cmd->idem_scope, cmd->idem_key, cmd->fingerprint, cmd->status,
                             cmd->idem_body ? cmd->idem_body : cmd->body, now_ms, stored) != FG_OK)
        fz_fail("the world has no room for one stored answer: %s", fg_engine_detail(e));
    return true;
}

/* Frees what a request's slot holds, as the HTTP layer does when a request completes. */
static void slot_free(fg_api_slot_t *slot) {
    fg_api_slot_release(slot);
    free(slot->cmd.body);
    free(slot->cmd.idem_body);
    free(slot);
}

static fg_api_slot_t *slot_new(void) {
    fg_api_slot_t *slot = calloc(1, sizeof *slot);
    if (slot == NULL) fz_fail("out of memory");
    return slot;
}

/* The live engine and the one a restart would build from the ledger hold the same stock,
 * holds, orders and buyers (I1 and I3 across a restart). */
static void compare_engines(const fg_engine_t *live, const fg_engine_t *back) {
    if (fg_engine_buyer_count(live) != fg_engine_buyer_count(back) ||
        fg_engine_active_holds(live) != fg_engine_active_holds(back) ||
        fg_engine_order_count(live) != fg_engine_order_count(back) ||
        fg_engine_sale_count(live) != fg_engine_sale_count(back))
        fz_fail("after a restart: buyers %llu/%llu, active holds %llu/%llu, orders %llu/%llu",
                (unsigned long long)fg_engine_buyer_count(live),
                (unsigned long long)fg_engine_buyer_count(back),
                (unsigned long long)fg_engine_active_holds(live),
                (unsigned long long)fg_engine_active_holds(back),
                (unsigned long long)fg_engine_order_count(live),
                (unsigned long long)fg_engine_order_count(back));
    for (int i = 0; i < fg_engine_sale_count(live); i++) {
        const fg_sale_t *a = fg_engine_sale_at(live, i), *b = fg_engine_sale_at(back, i);
        bool same = strcmp(a->def.id, b->def.id) == 0 && a->def.paused == b->def.paused &&
                    a->def.closed == b->def.closed && a->def.pool_count == b->def.pool_count;
        for (int k = 0; same && k < a->def.pool_count; k++)
            same = a->def.pools[k].stock == b->def.pools[k].stock && a->held[k] == b->held[k] &&
                   a->sold[k] == b->sold[k];
        if (!same) fz_fail("after a restart sale %s is not the same", a->def.id);
    }
}

/* Sends the request again: it must run (not be refused before) and get `status`, and the
 * same body when `body` is given; and change nothing. */
static void retry(fg_engine_t *e, const fg_api_request_t *rq, int64_t now_ms, int status,
                  const char *body, const char *what) {
    fg_api_slot_t *slot = slot_new();
    fg_api_answer_t ans = {0};
    fg_route_t route;
    if (fg_api_handle(g.api, rq, slot, &ans, &route) != FG_ANSWER_LATER)
        fz_fail("%s: refused before it ran: %d %s", what, ans.status, ans.body);
    const fg_idem_row_t *stored = NULL;
    if (apply(e, &slot->cmd, now_ms, &stored))
        fz_fail("%s: wrote again (status %d): %s", what, slot->cmd.status, slot->cmd.body);
    if (slot->cmd.status != status || (body != NULL && strcmp(slot->cmd.body, body) != 0))
        fz_fail("%s: got %d %s, want %d %s", what, slot->cmd.status, slot->cmd.body, status,
                body ? body : "");
    free(ans.body);
    slot_free(slot);
}

/* A write that succeeded, retried: with its key it gets the stored answer, also after a
 * restart, and the key with another body is refused (I5); a used webhook signature is
 * refused (replay). */
static void check_retries(fg_engine_t *e, fg_engine_t *back, const fz_request_t *r,
                          const fg_cmd_t *first, int64_t now_ms) {
    if (!first->has_idem) {
        if (strcmp(r->rq.path, "/v1/payments/webhook") == 0)
            retry(e, &r->rq, now_ms, 401, NULL, "a webhook's second delivery");
        return;
    }
    retry(e, &r->rq, now_ms, first->status, first->body, "a retry");
    retry(back, &r->rq, now_ms, first->status, first->body, "a retry after a restart");
    if (r->rq.body_len == 0 || r->rq.body_len >= FG_BODY_BYTES_MAX) return;
    /* The same JSON with a space after it: another request to the key's fingerprint. */
    char *other = malloc(r->rq.body_len + 1);
    if (other == NULL) fz_fail("out of memory");
    memcpy(other, r->rq.body, r->rq.body_len);
    other[r->rq.body_len] = ' ';
    fg_api_request_t rq = r->rq;
    rq.body = other;
    rq.body_len++;
    retry(e, &rq, now_ms, 422, NULL, "the same key with another body");
    free(other);
}

/* A write reaches the ledger, which must take it; a restart must read it back. */
static void persist(fg_engine_t *e, const fz_request_t *r, const fg_cmd_t *cmd,
                    const fg_idem_row_t *stored, int64_t now_ms) {
    commit_pending(e, "what a request wrote");
    if (stored != NULL) fg_engine_idem_committed(e, stored);
    char err[512] = "";
    fg_engine_t *back = NULL;
    if (fg_engine_load(g.ledger, now_ms, &back, err, sizeof err) != 0)
        fz_fail("a restart refuses what a request wrote: %s", err);
    compare_engines(e, back);
    if (cmd->status >= 200 && cmd->status < 300) check_retries(e, back, r, cmd, now_ms);
    fg_engine_free(back);
    ledger_reset(now_ms);
}

static void run_command(const fz_request_t *r, fg_api_slot_t *slot) {
    int64_t now_ms = fg_clock_now_ms();
    fg_engine_t *e = fz_world_new(now_ms);
    fg_engine_discard_changes(e);
    /* The writer ends what is due before it runs the commands it took (writer_main). */
    fg_engine_tick(e, now_ms);
    fg_cmd_t *cmd = &slot->cmd;
    const fg_idem_row_t *stored = NULL;
    bool wrote = apply(e, cmd, now_ms, &stored);
    if (g.verbose) fprintf(stderr, "command: %d %.300s\n", cmd->status, cmd->body);
    fz_check_answer("a command", cmd->status, cmd->code, cmd->content_type, cmd->body);
    fg_engine_check(e);
    /* A refusal may write too (a hold found expired on the way, a webhook signature used up). */
    if (wrote) persist(e, r, cmd, stored, now_ms);
    fg_engine_free(e);
}

static void no_park(void *ctx) {
    (void)ctx;
}

/* Reads a stream until it ends or would wait (a parked event stream): nothing wakes it here. */
static void drain_stream(fg_api_answer_t *ans) {
    if (ans->status != 200 || ans->content_type == NULL || ans->stream == NULL)
        fz_fail("a stream answer with status %d", ans->status);
    char buf[FZ_STREAM_READ_BYTES];
    for (int i = 0; i < FZ_STREAM_READS_MAX; i++) {
        ssize_t n = fg_api_stream_read(ans->stream, buf, sizeof buf, no_park, no_park, NULL);
        if (n <= 0) break;
        if (g.verbose) fprintf(stderr, "stream: %.*s\n", (int)(n < 300 ? n : 300), buf);
    }
    fg_api_stream_free(ans->stream);
}

/* Any body, as a hold's: the hand reader takes only what the full path reads alike
 * (hold_body.c). */
static void check_hold_body(const fg_api_request_t *rq) {
    fg_hold_body_t fast, full;
    fg_api_answer_t ans = {0};
    if (!fg__hold_body_fast(rq->body, rq->body_len, &fast)) return;
    if (!fg__hold_body_full(rq, &full, &ans))
        fz_fail("the hand reader took a hold body the full path refuses: %d %s", ans.status,
                ans.body);
    if (strcmp(fast.sku, full.sku) != 0 || strcmp(fast.market, full.market) != 0 ||
        fast.quantity != full.quantity)
        fz_fail("a hold body read two ways: sku %s/%s market %s/%s quantity %lld/%lld", fast.sku,
                full.sku, fast.market, full.market, (long long)fast.quantity,
                (long long)full.quantity);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_request_t r;
    if (!request_decode(data, size, &r)) {
        request_free(&r);
        return 0;
    }
    check_hold_body(&r.rq);
    fg_api_slot_t *slot = slot_new();
    fg_api_answer_t ans = {0};
    fg_route_t route = FG_R_UNKNOWN;
    switch (fg_api_handle(g.api, &r.rq, slot, &ans, &route)) {
    case FG_ANSWER_NOW:
        if (g.verbose) fprintf(stderr, "answer: %d %.300s\n", ans.status, ans.body);
        fz_check_answer("an answer", ans.status, ans.code, ans.content_type, ans.body);
        if (ans.status == 405 && ans.allow == NULL) fz_fail("405 without Allow");
        break;
    case FG_ANSWER_STREAM: drain_stream(&ans); break;
    case FG_ANSWER_LATER: run_command(&r, slot); break;
    }
    if (route >= FG_R_COUNT) fz_fail("route %d", (int)route);
    free(ans.body);
    slot_free(slot);
    request_free(&r);
    return 0;
}
