/*
 * buyers.c — buyer accounts: registration, token check, market.
 *
 * Buyers sit in a dense array indexed by id - 1 (ids are handed out in order), 20 bytes each,
 * so a million buyers take about 20 MiB, plus 8 to 16 bytes of email set each. The email
 * itself is not kept in memory, only a 64-bit keyed hash of it in that set (util/pack.h), for
 * the "same email twice" check; the ledger keeps the address. The token's secret is never stored,
 * only its BLAKE2b-256 hash (its first half in memory), compared in constant time.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

/* A 64-bit keyed hash of the email: two different addresses share one with odds of about
 * n / 2^64 per registration (1 in 18 trillion with a million buyers), and the loser of such a
 * draw would be told its email is taken. The key only keeps the hashes apart from others'. */
static uint64_t email_hash(const char *email) {
    static const uint8_t key[16] = "floodgate-email";
    uint64_t h;
    crypto_generichash((uint8_t *)&h, sizeof h, (const unsigned char *)email, strlen(email), key,
                       sizeof key);
    /* 0 and all-ones are the set's empty and deleted marks. */
    return h == 0 ? 1 : h == FG_PACK_TOMB ? FG_PACK_TOMB - 1 : h;
}

static fg_err_t add_buyer(fg_engine_t *e, uint64_t id, uint64_t eh, fg_mcode_t market,
                          const uint8_t token_hash[32]) {
    if (fg_pack_has(&e->email_seen, eh))
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
    if (fg_pack_add(&e->email_seen, eh) != 0) return fg__fail(e, FG_ERR_CAPACITY, "out of memory");
    fg__buyer_t *b = &e->buyers[id - 1];
    FG_ASSERT(!b->present);
    memcpy(b->token_hash, token_hash, sizeof b->token_hash);
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
    uint64_t new_id = e->next_buyer_id;
    fg_err_t err = add_buyer(e, new_id, email_hash(email), fg_mcode(market), token_hash);
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
    return add_buyer(e, row->id, email_hash(row->email), fg_mcode(row->market), row->token_hash);
}

fg_err_t fg_engine_buyer_auth(const fg_engine_t *e, uint64_t id, const uint8_t secret_hash[32]) {
    uint8_t zero[FG__TOKEN_HASH_KEPT] = {0};
    const uint8_t *want = zero;
    bool present = id >= 1 && id <= e->buyer_cap && e->buyers[id - 1].present;
    if (present) want = e->buyers[id - 1].token_hash;
    /* Compare even for unknown ids so timing does not tell which ids exist. */
    bool same = sodium_memcmp(want, secret_hash, FG__TOKEN_HASH_KEPT) == 0;
    return present && same ? FG_OK : FG_ERR_UNAUTHORIZED;
}

fg_mcode_t fg_engine_buyer_market(const fg_engine_t *e, uint64_t id) {
    if (id < 1 || id > e->buyer_cap || !e->buyers[id - 1].present) return 0;
    return e->buyers[id - 1].market;
}

uint64_t fg_engine_buyer_count(const fg_engine_t *e) {
    return e->buyer_count;
}
