/*
 * idem.c — stored answers for Idempotency-Key (I5) and the webhook signatures already used.
 *
 * An answer is stored when a request's write succeeds, in the same batch as the write, so the
 * two are durable together. Until that batch commits the record is "in flight": the same key
 * again gets 409 idempotency_in_progress. Records are chained per hash bucket (keys are client
 * text) and listed in creation order, so forgetting old ones walks from the front.
 *
 * With an answer store (the ledger), a committed answer does not stay in memory: the engine
 * keeps one 8-byte entry per key in a packed set (util/pack.h) — 28 bits of hash(scope, key)
 * and the ledger row id — and reads the answer back on the rare replay, checking that the row
 * really is this key's (a row pruned, or another key's with the same 28 bits, is not). A million
 * stored answers thus cost 8 to 16 MiB instead of hundreds. Marks of which row ids were written
 * in which minute let a sweep forget old entries without reading rows. Without a store (unit
 * tests), records stay whole.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

uint64_t fg_engine_idem_hash(uint64_t scope, const char *key) {
    char tmp[FG_IDEM_KEY_BYTES_MAX + 24];
    size_t n = strlen(key);
    FG_ASSERT(n <= FG_IDEM_KEY_BYTES_MAX);
    memcpy(tmp, &scope, sizeof scope);
    memcpy(tmp + sizeof scope, key, n);
    return fg_hash_str(tmp, n + sizeof scope);
}

void fg_engine_idem_hint(fg_engine_t *e, uint64_t scope, const char *key, uint64_t hash) {
    size_t n = strlen(key);
    FG_ASSERT(n <= FG_IDEM_KEY_BYTES_MAX);
    e->idem_memo_set = true;
    e->idem_memo_scope = scope;
    e->idem_memo_hash = hash;
    memcpy(e->idem_memo_key, key, n + 1);
}

/* fg_engine_idem_hash, remembered for the next call with the same key. */
static uint64_t key_hash(fg_engine_t *e, uint64_t scope, const char *key) {
    if (e->idem_memo_set && e->idem_memo_scope == scope && strcmp(e->idem_memo_key, key) == 0)
        return e->idem_memo_hash;
    uint64_t h = fg_engine_idem_hash(scope, key);
    fg_engine_idem_hint(e, scope, key, h);
    return h;
}

static fg__idem_t *idem_find(const fg_engine_t *e, uint64_t scope, const char *key, uint64_t h) {
    uint64_t v;
    if (!fg_map_get(&e->idem_by_key, h, &v)) return NULL;
    for (fg__idem_t *r = (fg__idem_t *)(uintptr_t)v; r != NULL; r = r->next_in_bucket)
        if (r->row.scope == scope && strcmp(r->row.key, key) == 0) return r;
    return NULL;
}

/* ---------------------------------------------------------------- answers in the store */

#define MINUTE_MS 60000

void fg_engine_set_answer_store(fg_engine_t *e, fg_answer_fetch_fn fetch, void *ctx) {
    e->answer_fetch = fetch;
    e->answer_ctx = ctx;
}

/* Reads the answer at rowid into e->fetched. 1 found, 0 gone, -1 error. */
static int fetch(fg_engine_t *e, int64_t rowid) {
    free(e->fetched_body);
    e->fetched_body = NULL;
    memset(&e->fetched, 0, sizeof e->fetched);
    int rc = e->answer_fetch(e->answer_ctx, rowid, &e->fetched, e->fetched_key, &e->fetched_body);
    FG_ASSERT(rc <= 0 || (e->fetched.key != NULL && e->fetched.body != NULL));
    return rc;
}

/* True when the fetched row is an answer of (scope, key), of any age. */
static bool fetched_same_key(const fg_engine_t *e, uint64_t scope, const char *key) {
    return e->fetched.scope == scope && strcmp(e->fetched.key, key) == 0;
}

static uint64_t stored_tag(uint64_t h) {
    return h >> FG_PACK_LOW_BITS;
}

static int64_t stored_rowid(uint64_t entry) {
    return (int64_t)(entry & FG_PACK_LOW_MASK);
}

/* Notes where the minutes fall in row ids: rows below a mark's row id were all created at or
 * before its time. Rows come to the index in row id order (commits in order; load by row id),
 * and the ledger never reuses a row id (its prune keeps the newest row), so the marks hold. */
static void stored_mark(fg_engine_t *e, int64_t rowid, int64_t created_ms) {
    size_t n = e->idem_mark_len;
    bool due = e->idem_newest_ms != INT64_MIN &&
               (n == 0 || e->idem_newest_ms - e->idem_marks[n - 1].ms >= MINUTE_MS);
    if (due) {
        if (n == e->idem_mark_cap) {
            size_t cap = n ? 2 * n : 64;
            fg__idem_mark_t *m = realloc(e->idem_marks, cap * sizeof *m);
            /* Without the mark the sweep only waits for the next one: no harm. */
            if (m != NULL) {
                e->idem_marks = m;
                e->idem_mark_cap = cap;
            }
        }
        if (n < e->idem_mark_cap) {
            e->idem_marks[n] = (fg__idem_mark_t){.ms = e->idem_newest_ms, .rowid = rowid};
            e->idem_mark_len++;
        }
    }
    if (created_ms > e->idem_newest_ms) e->idem_newest_ms = created_ms;
}

/* Puts a committed answer in the store's index: replaces the entry of this key's older answer
 * or of a row that is gone, else adds one. False when it must stay whole in memory: no store,
 * no row id, a read error, or no memory. */
static bool stored_put(fg_engine_t *e, uint64_t h, const fg_idem_row_t *row) {
    if (e->answer_fetch == NULL || row->ledger_rowid <= 0 ||
        (uint64_t)row->ledger_rowid > FG_PACK_LOW_MASK)
        return false;
    uint64_t tag = stored_tag(h);
    uint64_t entry = tag << FG_PACK_LOW_BITS | (uint64_t)row->ledger_rowid;
    size_t cur = FG_PACK_START;
    uint64_t old;
    while (fg_pack_next(&e->idem_stored, tag, &cur, &old)) {
        int rc = fetch(e, stored_rowid(old));
        if (rc < 0) return false;
        if (rc == 0 || fetched_same_key(e, row->scope, row->key)) {
            fg_pack_replace(&e->idem_stored, cur, entry);
            stored_mark(e, row->ledger_rowid, row->created_at_ms);
            return true;
        }
    }
    if (fg_pack_add(&e->idem_stored, entry) != 0) return false;
    stored_mark(e, row->ledger_rowid, row->created_at_ms);
    return true;
}

static bool below_rowid(uint64_t entry, void *ctx) {
    return stored_rowid(entry) < *(const int64_t *)ctx;
}

/* Forgets the index entries of answers created before the horizon, by the newest mark that
 * is older than it. Runs at most once a minute: it walks the whole index. */
static void stored_sweep(fg_engine_t *e, int64_t now_ms) {
    if (now_ms - e->idem_swept_ms < MINUTE_MS && now_ms >= e->idem_swept_ms) return;
    e->idem_swept_ms = now_ms;
    size_t k = 0;
    while (k < e->idem_mark_len && e->idem_marks[k].ms < e->idem_horizon_ms)
        k++;
    if (k == 0) return;
    int64_t below = e->idem_marks[k - 1].rowid;
    fg_pack_sweep(&e->idem_stored, below_rowid, &below);
    memmove(e->idem_marks, e->idem_marks + k, (e->idem_mark_len - k) * sizeof *e->idem_marks);
    e->idem_mark_len -= k;
}

static void idem_drop(fg_engine_t *e, fg__idem_t *r); /* below */

fg_idem_result_t fg_engine_idem_lookup(fg_engine_t *e, uint64_t scope, const char *key,
                                       const uint8_t fingerprint[32], const fg_idem_row_t **rec) {
    uint64_t h = key_hash(e, scope, key);
    fg__idem_t *r = idem_find(e, scope, key, h);
    if (r != NULL && r->committed && r->row.created_at_ms < e->idem_horizon_ms) {
        idem_drop(e, r); /* expired since the last pass; no newer answer of the key exists */
        return FG_IDEM_NEW;
    }
    if (r != NULL) {
        *rec = &r->row;
        if (sodium_memcmp(r->row.fingerprint, fingerprint, 32) != 0) return FG_IDEM_MISMATCH;
        return r->committed ? FG_IDEM_REPLAY : FG_IDEM_IN_FLIGHT;
    }
    /* Candidates share the top bits of the key's hash; the ledger row tells which is the key's. */
    uint64_t tag = stored_tag(h), entry;
    size_t cur = FG_PACK_START;
    while (fg_pack_next(&e->idem_stored, tag, &cur, &entry)) {
        int rc = fetch(e, stored_rowid(entry));
        if (rc < 0) return FG_IDEM_UNKNOWN;
        if (rc == 0 || !fetched_same_key(e, scope, key)) continue;
        if (e->fetched.created_at_ms < e->idem_horizon_ms) return FG_IDEM_NEW; /* forgotten */
        *rec = &e->fetched;
        if (sodium_memcmp(e->fetched.fingerprint, fingerprint, 32) != 0) return FG_IDEM_MISMATCH;
        return FG_IDEM_REPLAY;
    }
    return FG_IDEM_NEW;
}

void fg__idem_free(fg__idem_t *r) {
    if (r->body_apart) free(r->row.body);
    free(r);
}

static fg_err_t idem_add(fg_engine_t *e, const fg_idem_row_t *src, bool committed,
                         fg__idem_t **out) {
    uint64_t h = key_hash(e, src->scope, src->key);
    if (idem_find(e, src->scope, src->key, h) != NULL)
        return fg__fail(e, FG_ERR_INVALID, "idempotency key stored twice");
    /* The record, its key and its answer in one allocation: one per write kept. */
    size_t klen = strlen(src->key) + 1, blen = strlen(src->body) + 1;
    fg__idem_t *r = malloc(sizeof *r + klen + blen);
    if (r == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    memset(r, 0, sizeof *r);
    r->row = *src;
    r->row.key = memcpy(r->text, src->key, klen);
    r->row.body = memcpy(r->text + klen, src->body, blen);
    uint64_t head = 0;
    fg_map_get(&e->idem_by_key, h, &head);
    if (fg_map_put(&e->idem_by_key, h, (uint64_t)(uintptr_t)r) != 0) {
        fg__idem_free(r);
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    }
    r->committed = committed;
    r->hash = h;
    r->next_in_bucket = (fg__idem_t *)(uintptr_t)head;
    if (e->idem_tail)
        e->idem_tail->next_fifo = r;
    else
        e->idem_head = r;
    e->idem_tail = r;
    *out = r;
    return FG_OK;
}

fg_err_t fg_engine_idem_store(fg_engine_t *e, uint64_t scope, const char *key,
                              const uint8_t fingerprint[32], int status, const char *body,
                              int64_t now_ms, const fg_idem_row_t **rec) {
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_idem_row_t row = {.scope = scope,
                         .key = (char *)key,
                         .status = status,
                         .body = (char *)body,
                         .created_at_ms = now_ms};
    memcpy(row.fingerprint, fingerprint, 32);
    fg__idem_t *r = NULL;
    fg_err_t err = idem_add(e, &row, false, &r);
    if (err != FG_OK) return err;
    fg__emit(e, &(fg_change_t){.kind = FG_CH_IDEM, .u.idem = &r->row});
    *rec = &r->row;
    return FG_OK;
}

/* Unlinks r from its bucket chain (the map slot moves to the next record, or goes). */
static void bucket_unlink(fg_engine_t *e, fg__idem_t *r) {
    uint64_t v = 0;
    FG_ASSERT(fg_map_get(&e->idem_by_key, r->hash, &v));
    fg__idem_t *head = (fg__idem_t *)(uintptr_t)v;
    if (head == r) {
        /* Replacing an existing key's value never allocates, so it cannot fail. */
        int rc = 0;
        if (r->next_in_bucket)
            rc = fg_map_put(&e->idem_by_key, r->hash, (uint64_t)(uintptr_t)r->next_in_bucket);
        else
            fg_map_del(&e->idem_by_key, r->hash);
        FG_ASSERT(rc == 0);
    } else {
        fg__idem_t *p = head;
        while (p->next_in_bucket != r)
            p = p->next_in_bucket;
        p->next_in_bucket = r->next_in_bucket;
    }
}

/* Unlinks r, which follows prev in the list (NULL: r is the head), from its bucket chain and
 * the list, and frees it. */
static void idem_unlink(fg_engine_t *e, fg__idem_t *prev, fg__idem_t *r) {
    FG_ASSERT(prev ? prev->next_fifo == r : e->idem_head == r);
    bucket_unlink(e, r);
    if (prev)
        prev->next_fifo = r->next_fifo;
    else
        e->idem_head = r->next_fifo;
    if (e->idem_tail == r) e->idem_tail = prev;
    fg__idem_free(r);
}

/* Drops r wherever it is in the list (walks to find its predecessor: whole records are few once
 * an answer store takes the committed ones). */
static void idem_drop(fg_engine_t *e, fg__idem_t *r) {
    fg__idem_t *prev = NULL;
    if (e->idem_head != r)
        for (prev = e->idem_head; prev->next_fifo != r;)
            prev = prev->next_fifo;
    idem_unlink(e, prev, r);
}

#define FG_LEDGER_PRUNE_EVERY_MS 60000

/* Moves committed records with a ledger row into the store's index. Records are listed in the
 * order they were stored and batches commit in that order, so the committed ones lead the list;
 * the few that must stay whole are stepped over. */
static void compact(fg_engine_t *e) {
    fg__idem_t *prev = NULL;
    for (fg__idem_t *r = e->idem_head; r != NULL && r->committed;) {
        fg__idem_t *next = r->next_fifo;
        if (stored_put(e, r->hash, &r->row)) {
            idem_unlink(e, prev, r);
        } else {
            prev = r;
        }
        r = next;
    }
}

void fg_engine_idem_committed(fg_engine_t *e, const fg_idem_row_t *rec) {
    fg__idem_t *r = (fg__idem_t *)(uintptr_t)rec; /* row is the first member */
    r->committed = true;
    if (e->answer_fetch != NULL) compact(e);
}

fg_err_t fg_engine_restore_idem(fg_engine_t *e, const fg_idem_row_t *row) {
    uint64_t h = fg_engine_idem_hash(row->scope, row->key);
    fg__idem_t *r = idem_find(e, row->scope, row->key, h);
    /* Rows come in the order they were written, so a key's newer answer replaces its older. */
    if (r == NULL && stored_put(e, h, row)) return FG_OK;
    if (r != NULL) {
        /* A key reused after its first answer expired: rows come oldest first, keep the newer. */
        char *body = strdup(row->body);
        if (body == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        if (r->body_apart) free(r->row.body);
        r->row.body = body;
        r->body_apart = true;
        memcpy(r->row.fingerprint, row->fingerprint, 32);
        r->row.status = row->status;
        r->row.created_at_ms = row->created_at_ms;
        return FG_OK;
    }
    return idem_add(e, row, true, &r);
}

void fg_engine_idem_expire(fg_engine_t *e, int64_t now_ms) {
    if (now_ms - FG_IDEM_TTL_MS > e->idem_horizon_ms) e->idem_horizon_ms = now_ms - FG_IDEM_TTL_MS;
    stored_sweep(e, now_ms);
    /* Every committed record older than the horizon goes; an in-flight one is still referenced
     * by its batch (once committed, lookups treat it as gone, and the next pass frees it). */
    fg__idem_t *prev = NULL;
    for (fg__idem_t *r = e->idem_head; r != NULL;) {
        fg__idem_t *next = r->next_fifo;
        if (r->committed && r->row.created_at_ms < e->idem_horizon_ms)
            idem_unlink(e, prev, r);
        else
            prev = r;
        r = next;
    }
    /* The ledger forgets them too, in the next batch, so it does not grow without end. */
    if (now_ms - e->ledger_pruned_ms >= FG_LEDGER_PRUNE_EVERY_MS && fg__reserve_changes(e, 1)) {
        e->ledger_pruned_ms = now_ms;
        fg_change_t c = {.kind = FG_CH_PRUNE};
        c.u.prune.idem_before_ms = now_ms - FG_IDEM_TTL_MS;
        c.u.prune.webhook_before_s = now_ms / 1000 - 2 * FG_WEBHOOK_TOLERANCE_S;
        fg__emit(e, &c);
    }
}

void fg_engine_idem_each_hash(const fg_engine_t *e, void (*fn)(void *ctx, uint64_t hash),
                              void *ctx) {
    for (const fg__idem_t *r = e->idem_head; r != NULL; r = r->next_fifo)
        fn(ctx, r->hash);
    /* An index entry keeps the top FG_PACK_TAG_BITS of its key's hash, and only those. */
    uint64_t entry;
    for (size_t it = 0; fg_pack_scan(&e->idem_stored, &it, &entry);)
        fn(ctx, fg_pack_tag(entry) << FG_PACK_LOW_BITS);
}

/* ---------------------------------------------------------------- webhook signatures */

static uint64_t digest_key(const uint8_t digest[32]) {
    uint64_t k;
    memcpy(&k, digest, sizeof k);
    return k ? k : 1;
}

static void prune_webhooks(fg_engine_t *e, int64_t now_ms) {
    int64_t cutoff_s = now_ms / 1000 - 2 * FG_WEBHOOK_TOLERANCE_S;
    fg_map_settle(&e->webhooks); /* the loop below walks the slots of one table */
    for (size_t i = 0; i < e->webhooks.cap;) {
        fg_map_slot_t *sl = &e->webhooks.slots[i];
        /* Deleting shifts later entries back into slot i, so look at i again. */
        if (sl->key != 0 && (int64_t)sl->val < cutoff_s)
            fg_map_del(&e->webhooks, sl->key);
        else
            i++;
    }
    e->webhooks_pruned_ms = now_ms;
}

fg_err_t fg_engine_webhook_use(fg_engine_t *e, const uint8_t digest[32], int64_t t_s,
                               int64_t now_ms) {
    if (now_ms - e->webhooks_pruned_ms > FG_WEBHOOK_TOLERANCE_S * 1000LL) prune_webhooks(e, now_ms);
    uint64_t k = digest_key(digest);
    if (fg_map_get(&e->webhooks, k, NULL))
        return fg__fail(e, FG_ERR_UNAUTHORIZED, "signature already used");
    if (!fg__reserve_changes(e, 1) || fg_map_put(&e->webhooks, k, (uint64_t)t_s) != 0)
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_change_t c = {.kind = FG_CH_WEBHOOK};
    memcpy(c.u.webhook.digest, digest, 32);
    c.u.webhook.t_s = t_s;
    fg__emit(e, &c);
    return FG_OK;
}

fg_err_t fg_engine_restore_webhook(fg_engine_t *e, const fg_webhook_row_t *row) {
    if (fg_map_put(&e->webhooks, digest_key(row->digest), (uint64_t)row->t_s) != 0)
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    return FG_OK;
}
