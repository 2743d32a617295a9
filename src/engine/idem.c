/*
 * idem.c — stored answers for Idempotency-Key (I5) and the webhook signatures already used.
 *
 * An answer is stored when a request's write succeeds, in the same batch as the write, so the
 * two are durable together. Until that batch commits the record is "in flight": the same key
 * again gets 409 idempotency_in_progress. Records are chained per hash bucket (keys are client
 * text) and listed in creation order, so forgetting old ones walks from the front.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

static uint64_t idem_hash(uint64_t scope, const char *key) {
    char tmp[FG_IDEM_KEY_BYTES_MAX + 24];
    size_t n = strlen(key);
    FG_ASSERT(n <= FG_IDEM_KEY_BYTES_MAX);
    memcpy(tmp, &scope, sizeof scope);
    memcpy(tmp + sizeof scope, key, n);
    return fg_hash_str(tmp, n + sizeof scope);
}

static fg__idem_t *idem_find(const fg_engine_t *e, uint64_t scope, const char *key, uint64_t h) {
    uint64_t v;
    if (!fg_map_get(&e->idem_by_key, h, &v)) return NULL;
    for (fg__idem_t *r = (fg__idem_t *)(uintptr_t)v; r != NULL; r = r->next_in_bucket)
        if (r->row.scope == scope && strcmp(r->row.key, key) == 0) return r;
    return NULL;
}

fg_idem_result_t fg_engine_idem_lookup(const fg_engine_t *e, uint64_t scope, const char *key,
                                       const uint8_t fingerprint[32], const fg_idem_row_t **rec) {
    fg__idem_t *r = idem_find(e, scope, key, idem_hash(scope, key));
    if (r == NULL) return FG_IDEM_NEW;
    *rec = &r->row;
    if (sodium_memcmp(r->row.fingerprint, fingerprint, 32) != 0) return FG_IDEM_MISMATCH;
    return r->committed ? FG_IDEM_REPLAY : FG_IDEM_IN_FLIGHT;
}

static fg_err_t idem_add(fg_engine_t *e, const fg_idem_row_t *src, bool committed,
                         fg__idem_t **out) {
    uint64_t h = idem_hash(src->scope, src->key);
    if (idem_find(e, src->scope, src->key, h) != NULL)
        return fg__fail(e, FG_ERR_INVALID, "idempotency key stored twice");
    fg__idem_t *r = calloc(1, sizeof *r);
    char *key = strdup(src->key);
    char *body = strdup(src->body);
    uint64_t head = 0;
    fg_map_get(&e->idem_by_key, h, &head);
    if (r == NULL || key == NULL || body == NULL ||
        fg_map_put(&e->idem_by_key, h, (uint64_t)(uintptr_t)r) != 0) {
        free(r);
        free(key);
        free(body);
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    }
    r->row = *src;
    r->row.key = key;
    r->row.body = body;
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

void fg_engine_idem_committed(fg_engine_t *e, const fg_idem_row_t *rec) {
    fg__idem_t *r = (fg__idem_t *)(uintptr_t)rec; /* row is the first member */
    r->committed = true;
}

fg_err_t fg_engine_restore_idem(fg_engine_t *e, const fg_idem_row_t *row) {
    fg__idem_t *r = idem_find(e, row->scope, row->key, idem_hash(row->scope, row->key));
    if (r != NULL) {
        /* A key reused after its first answer expired: rows come oldest first, keep the newer. */
        char *body = strdup(row->body);
        if (body == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        free(r->row.body);
        r->row.body = body;
        memcpy(r->row.fingerprint, row->fingerprint, 32);
        r->row.status = row->status;
        r->row.created_at_ms = row->created_at_ms;
        return FG_OK;
    }
    return idem_add(e, row, true, &r);
}

/* Unlinks the oldest record from its bucket chain and frees it. */
static void idem_drop_head(fg_engine_t *e) {
    fg__idem_t *r = e->idem_head;
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
    e->idem_head = r->next_fifo;
    if (e->idem_head == NULL) e->idem_tail = NULL;
    free(r->row.key);
    free(r->row.body);
    free(r);
}

#define FG_LEDGER_PRUNE_EVERY_MS 60000

void fg_engine_idem_expire(fg_engine_t *e, int64_t now_ms) {
    /* Only committed records go: an in-flight one is still referenced by its batch. */
    while (e->idem_head != NULL && e->idem_head->committed &&
           e->idem_head->row.created_at_ms < now_ms - FG_IDEM_TTL_MS)
        idem_drop_head(e);
    /* The ledger forgets them too, in the next batch, so it does not grow without end. */
    if (now_ms - e->ledger_pruned_ms >= FG_LEDGER_PRUNE_EVERY_MS && fg__reserve_changes(e, 1)) {
        e->ledger_pruned_ms = now_ms;
        fg_change_t c = {.kind = FG_CH_PRUNE};
        c.u.prune.idem_before_ms = now_ms - FG_IDEM_TTL_MS;
        c.u.prune.webhook_before_s = now_ms / 1000 - 2 * FG_WEBHOOK_TOLERANCE_S;
        fg__emit(e, &c);
    }
}

/* ---------------------------------------------------------------- webhook signatures */

static uint64_t digest_key(const uint8_t digest[32]) {
    uint64_t k;
    memcpy(&k, digest, sizeof k);
    return k ? k : 1;
}

static void prune_webhooks(fg_engine_t *e, int64_t now_ms) {
    int64_t cutoff_s = now_ms / 1000 - 2 * FG_WEBHOOK_TOLERANCE_S;
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
