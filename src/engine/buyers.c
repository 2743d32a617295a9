/*
 * buyers.c — buyer accounts: registration, token check, market.
 *
 * Buyers sit in a dense array indexed by id - 1 (ids are handed out in order), about 56 bytes
 * each, so a million buyers fit in tens of MiB. The email itself is not kept in memory, only a
 * 128-bit keyed hash of it for the "same email twice" check; the ledger keeps the address.
 * The token's secret is never stored, only its BLAKE2b-256 hash, compared in constant time.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

static void email_hash(const char *email, uint8_t out[16]) {
    static const uint8_t key[16] = "floodgate-email";
    crypto_generichash(out, 16, (const unsigned char *)email, strlen(email), key, sizeof key);
}

/* The email set maps the first 8 bytes of the hash to the next 8; a clash of the first 8 with a
 * different second half (about 1 in 2^64 per pair) probes on to the next key. Returns true when
 * the email is known; otherwise *slot_key is a free key to insert at. */
static bool email_known(const fg_engine_t *e, const uint8_t h[16], uint64_t *slot_key) {
    uint64_t k, v, have;
    memcpy(&k, h, 8);
    memcpy(&v, h + 8, 8);
    for (int probe = 0; probe < 64; probe++) {
        uint64_t key = (k + (uint64_t)probe * 0x9e3779b97f4a7c15ULL) | 1;
        if (!fg_map_get(&e->email_seen, key, &have)) {
            *slot_key = key;
            return false;
        }
        if (have == v) return true;
    }
    FG_ASSERT(!"email hash probe exhausted");
    return true;
}

static fg_err_t add_buyer(fg_engine_t *e, uint64_t id, const uint8_t eh[16], fg_mcode_t market,
                          const uint8_t token_hash[32]) {
    uint64_t slot_key = 0;
    if (email_known(e, eh, &slot_key))
        return fg__fail(e, FG_ERR_BUYER_EXISTS, "a buyer with this email exists");
    if (id > FG_BUYERS_MAX) return fg__fail(e, FG_ERR_CAPACITY, "at most %d buyers", FG_BUYERS_MAX);
    if (id > e->buyer_cap) {
        uint64_t cap = e->buyer_cap ? e->buyer_cap : 1024;
        while (cap < id)
            cap *= 2;
        fg__buyer_t *b = realloc(e->buyers, cap * sizeof *b);
        if (b == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
        memset(b + e->buyer_cap, 0, (cap - e->buyer_cap) * sizeof *b);
        e->buyers = b;
        e->buyer_cap = cap;
    }
    uint64_t v;
    memcpy(&v, eh + 8, 8);
    if (fg_map_put(&e->email_seen, slot_key, v) != 0)
        return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg__buyer_t *b = &e->buyers[id - 1];
    FG_ASSERT(!b->present);
    memcpy(b->token_hash, token_hash, 32);
    memcpy(b->email_hash, eh, 16);
    b->market = market;
    b->present = true;
    e->buyer_count++;
    if (id >= e->next_buyer_id) e->next_buyer_id = id + 1;
    return FG_OK;
}

fg_err_t fg_engine_buyer_register(fg_engine_t *e, const char *email, const char *market,
                                  const uint8_t token_hash[32], int64_t now_ms, uint64_t *id) {
    if (fg_engine_market_get(e, market) == NULL)
        return fg__fail(e, FG_ERR_INVALID, "market: no market %s", market);
    if (!fg__reserve_changes(e, 1)) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg_buyer_row_t *row = calloc(1, sizeof *row);
    if (row == NULL) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    uint8_t eh[16];
    email_hash(email, eh);
    uint64_t new_id = e->next_buyer_id;
    fg_err_t err = add_buyer(e, new_id, eh, fg_mcode(market), token_hash);
    if (err != FG_OK) {
        free(row);
        return err;
    }
    row->id = new_id;
    snprintf(row->email, sizeof row->email, "%s", email);
    memcpy(row->market, market, 3);
    memcpy(row->token_hash, token_hash, 32);
    row->created_at_ms = now_ms;
    fg__emit(e, &(fg_change_t){.kind = FG_CH_BUYER, .u.buyer = row});
    *id = new_id;
    return FG_OK;
}

fg_err_t fg_engine_restore_buyer(fg_engine_t *e, const fg_buyer_row_t *row) {
    if (row->id == 0 || row->id > FG_BUYERS_MAX)
        return fg__fail(e, FG_ERR_INVALID, "buyer id %llu out of range",
                        (unsigned long long)row->id);
    if (row->id <= e->buyer_cap && e->buyers[row->id - 1].present)
        return fg__fail(e, FG_ERR_INVALID, "buyer %llu twice", (unsigned long long)row->id);
    uint8_t eh[16];
    email_hash(row->email, eh);
    return add_buyer(e, row->id, eh, fg_mcode(row->market), row->token_hash);
}

fg_err_t fg_engine_buyer_auth(const fg_engine_t *e, uint64_t id, const uint8_t secret_hash[32]) {
    uint8_t zero[32] = {0};
    const uint8_t *want = zero;
    bool present = id >= 1 && id <= e->buyer_cap && e->buyers[id - 1].present;
    if (present) want = e->buyers[id - 1].token_hash;
    /* Compare even for unknown ids so timing does not tell which ids exist. */
    bool same = sodium_memcmp(want, secret_hash, 32) == 0;
    return present && same ? FG_OK : FG_ERR_UNAUTHORIZED;
}

fg_mcode_t fg_engine_buyer_market(const fg_engine_t *e, uint64_t id) {
    if (id < 1 || id > e->buyer_cap || !e->buyers[id - 1].present) return 0;
    return e->buyers[id - 1].market;
}

uint64_t fg_engine_buyer_count(const fg_engine_t *e) {
    return e->buyer_count;
}
