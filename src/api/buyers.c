/*
 * buyers.c — registration: a buyer gets an id and a bearer token.
 *
 * The token is "fgb_<id>_<secret>", the secret 32 random bytes in base64url. Only the secret's
 * BLAKE2b-256 hash is stored; the id in the token finds the buyer without an index of hashes.
 *
 * A registration's answer must replay for 24 hours (Idempotency-Key) and it holds the token.
 * The stored copy therefore has the token sealed (XSalsa20-Poly1305) with a key derived from
 * the client's Idempotency-Key, which the ledger keeps only as a hash: the ledger alone cannot
 * give the token back, a retry that presents the key can.
 */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

#define FG_SEAL_BYTES_MAX (crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 160)

static void seal_key(const char *raw_key, uint8_t key[crypto_secretbox_KEYBYTES]) {
    static const char ctx[] = "floodgate-token-seal-v1";
    crypto_generichash(key, crypto_secretbox_KEYBYTES, (const unsigned char *)raw_key,
                       strlen(raw_key), (const unsigned char *)ctx, sizeof ctx - 1);
}

/* The answer, with the token in clear (to the client) or sealed (to the store). */
static void render_buyer(fg_buf_t *b, const char *id, const char *email, const char *market,
                         const char *token_key, const char *token) {
    fg_buf_printf(b, "{\"id\":\"%s\",\"email\":", id);
    fg_buf_json_str(b, email);
    fg_buf_printf(b, ",\"market\":\"%s\",\"%s\":\"%s\"}", market, token_key, token);
}

/* base64url(nonce || secretbox(token)) into out. */
static void seal(const char *raw_key, const char *token, char *out, size_t cap) {
    uint8_t key[crypto_secretbox_KEYBYTES], box[FG_SEAL_BYTES_MAX];
    size_t n = strlen(token);
    FG_ASSERT(n + crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES <= sizeof box);
    seal_key(raw_key, key);
    randombytes_buf(box, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(box + crypto_secretbox_NONCEBYTES, (const unsigned char *)token, n, box,
                          key);
    sodium_bin2base64(out, cap, box, crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(key, sizeof key);
}

static char *replay_register(fg_cmd_t *cmd, const char *stored) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    json_t *j = json_loads(stored, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *email = json_string_value(json_object_get(j, "email"));
    const char *market = json_string_value(json_object_get(j, "market"));
    const char *sealed = json_string_value(json_object_get(j, "token_sealed"));
    uint8_t box[FG_SEAL_BYTES_MAX], key[crypto_secretbox_KEYBYTES];
    char token[FG_SEAL_BYTES_MAX + 1];
    size_t len = 0;
    char *out = NULL;
    if (id && email && market && sealed &&
        sodium_base642bin(box, sizeof box, sealed, strlen(sealed), NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
        len > crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
        seal_key(p->u.buyer.raw_key, key);
        size_t n = len - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
        if (crypto_secretbox_open_easy((unsigned char *)token, box + crypto_secretbox_NONCEBYTES,
                                       len - crypto_secretbox_NONCEBYTES, box, key) == 0) {
            token[n] = '\0';
            fg_buf_t b;
            fg_buf_init(&b, 4096);
            render_buyer(&b, id, email, market, "token", token);
            out = b.overflow ? (fg_buf_free(&b), NULL) : fg_buf_take(&b);
        }
        sodium_memzero(token, sizeof token);
    }
    json_decref(j);
    return out;
}

static void exec_register(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_buyer_params_t *bp = &p->u.buyer;
    uint64_t id = 0;
    fg_err_t err = fg_engine_buyer_register(e, bp->email, bp->market, bp->token_hash, now_ms, &id);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    char id_text[24], token[FG_TOKEN_BYTES_MAX + 24], sealed[2 * FG_SEAL_BYTES_MAX];
    snprintf(id_text, sizeof id_text, "b_%llu", (unsigned long long)id);
    snprintf(token, sizeof token, "fgb_%llu_%s", (unsigned long long)id, bp->token);
    seal(bp->raw_key, token, sealed, sizeof sealed);
    fg_buf_t stored;
    fg_buf_init(&stored, 4096);
    render_buyer(&stored, id_text, bp->email, bp->market, "token_sealed", sealed);
    free(cmd->idem_body);
    cmd->idem_body = fg_buf_take(&stored);
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    render_buyer(&b, id_text, bp->email, bp->market, "token", token);
    sodium_memzero(token, sizeof token);
    fg__ok(cmd, 201, &b);
}

/* Trims white space (spaces, tabs, line ends), lower-cases and checks an address: one '@',
 * something on each side, a dot after it, no spaces or control characters. Full RFC 5322 is not the
 * point: delivery proves an address. */
static bool normalize_email(char *s) {
    size_t n = strlen(s);
    size_t a = 0;
    while (a < n && isspace((unsigned char)s[a]))
        a++;
    while (n > a && isspace((unsigned char)s[n - 1]))
        n--;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL || strchr(at, '.') == NULL ||
        at[1] == '.' || s[strlen(s) - 1] == '.')
        return false;
    for (char *p = s; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) return false;
        *p = (char)tolower((unsigned char)*p);
    }
    return true;
}

/* The email, trimmed of surrounding white space (tabs and line ends too) before its checks. */
static bool email_field(json_t *body, char out[FG_EMAIL_BYTES_MAX + 1], fg_api_answer_t *ans) {
    json_t *v = json_object_get(body, "email");
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) != json_string_length(v)) {
        fg_api_problem(ans, 400, "invalid_field", "email: required, a string");
        return false;
    }
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0 || n > FG_EMAIL_BYTES_MAX) {
        fg_api_problem(ans, 400, "invalid_field", "email: 1 to %d bytes", FG_EMAIL_BYTES_MAX);
        return false;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

fg_answer_kind_t fg__h_buyers(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                              fg_api_slot_t *slot, fg_api_answer_t *ans) {
    static const char *const keys[] = {"email", "market", NULL};
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_register);
    if (!fg__rate_ok(api, rq, ans) || !fg__idem(rq, &slot->cmd, 0, ans)) return FG_ANSWER_NOW;
    slot->cmd.replay = replay_register;
    snprintf(p->u.buyer.raw_key, sizeof p->u.buyer.raw_key, "%s", rq->idempotency_key);
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    fg_buyer_params_t *bp = &p->u.buyer;
    bool ok = fg__only_keys(body, keys, "", ans) && email_field(body, bp->email, ans) &&
              fg__str_field(body, "market", "market", true, 2, bp->market, sizeof bp->market, ans);
    json_decref(body);
    if (!ok) return FG_ANSWER_NOW;
    if (!normalize_email(bp->email)) {
        fg_api_problem(ans, 400, "invalid_field", "email: an address like ana@example.com");
        return FG_ANSWER_NOW;
    }
    if (!fg__valid_market(bp->market)) {
        fg_api_problem(ans, 400, "invalid_field", "market: two upper-case letters");
        return FG_ANSWER_NOW;
    }
    uint8_t secret[32];
    randombytes_buf(secret, sizeof secret);
    sodium_bin2base64(bp->token, sizeof bp->token, secret, sizeof secret,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_generichash(bp->token_hash, 32, (const unsigned char *)bp->token, strlen(bp->token),
                       NULL, 0);
    sodium_memzero(secret, sizeof secret);
    return FG_ANSWER_LATER;
}
