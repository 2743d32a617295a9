/*
 * buyers.c — registration: a buyer gets an id and a bearer token.
 *
 * The token is "fgb_<id>_<secret>", the secret 32 random bytes in base64url. Only the secret's
 * BLAKE2b-256 hash is stored; the id in the token finds the buyer without an index of hashes.
 */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

static void exec_register(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_buyer_params_t *bp = &p->u.buyer;
    uint64_t id = 0;
    fg_err_t err = fg_engine_buyer_register(e, bp->email, bp->market, bp->token_hash, now_ms, &id);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg_buf_printf(&b, "{\"id\":\"b_%llu\",\"email\":", (unsigned long long)id);
    fg_buf_json_str(&b, bp->email);
    fg_buf_printf(&b, ",\"market\":\"%s\",\"token\":\"fgb_%llu_%s\"}", bp->market,
                  (unsigned long long)id, bp->token);
    fg__ok(cmd, 201, &b);
}

/* Trims white space (spaces, tabs, line ends), lower-cases and checks an address: one '@', something on each side, a dot after it,
 * no spaces or control characters. Full RFC 5322 is not the point: delivery proves an address. */
static bool normalize_email(char *s) {
    size_t n = strlen(s);
    size_t a = 0;
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
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
    while (n > 0 && isspace((unsigned char)*s)) s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
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
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    fg_buyer_params_t *bp = &p->u.buyer;
    bool ok = fg__only_keys(body, keys, "", ans) && email_field(body, bp->email, ans) &&
              fg__str_field(body, "market", "market", true, 2, bp->market, sizeof bp->market,
                            ans);
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
