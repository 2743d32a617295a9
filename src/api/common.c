/*
 * common.c — what every handler uses: problem answers, input checks, authentication,
 * idempotency keys, the per-IP rate limit, and route and status names for metrics.
 */
#include <ctype.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "util/clock.h"
#include "util/log.h"

/* ---------------------------------------------------------------- names */

static const char *const route_names[FG_R_COUNT] = {
    [FG_R_UNKNOWN] = "unknown",
    [FG_R_HEALTHZ] = "healthz",
    [FG_R_READYZ] = "readyz",
    [FG_R_METRICS] = "metrics",
    [FG_R_MARKETS] = "markets",
    [FG_R_PRODUCTS] = "products",
    [FG_R_PRODUCT] = "product",
    [FG_R_SALE] = "sale",
    [FG_R_SALE_EVENTS] = "sale_events",
    [FG_R_BUYERS] = "buyers",
    [FG_R_HOLDS] = "holds",
    [FG_R_HOLD] = "hold",
    [FG_R_HOLD_ORDER] = "hold_order",
    [FG_R_WEBHOOK] = "payment_webhook",
    [FG_R_ORDER] = "order",
    [FG_R_ME_ORDERS] = "me_orders",
    [FG_R_ADMIN_MARKET] = "admin_market",
    [FG_R_ADMIN_PRODUCT] = "admin_product",
    [FG_R_ADMIN_OFFER] = "admin_offer",
    [FG_R_ADMIN_SALES] = "admin_sales",
    [FG_R_ADMIN_SALE_ACTION] = "admin_sale_action",
    [FG_R_ADMIN_STOCK] = "admin_stock",
    [FG_R_ADMIN_STATS] = "admin_stats",
    [FG_R_ADMIN_EXPORT] = "admin_export",
};

const char *fg_route_name(fg_route_t r) {
    return route_names[r];
}

static const int slot_statuses[FG_STATUS_SLOTS] = {0,   200, 201, 400, 401, 403, 404, 405,
                                                   409, 413, 414, 422, 429, 431, 500, 503};

int fg_status_slot(int status) {
    for (int i = 1; i < FG_STATUS_SLOTS; i++)
        if (slot_statuses[i] == status) return i;
    return 0;
}

int fg_status_of_slot(int slot) {
    return slot_statuses[slot];
}

/* ---------------------------------------------------------------- problems */

void fg_api_problem(fg_api_answer_t *ans, int status, const char *code, const char *fmt, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg_buf_problem_open(&b, status, code, detail);
    fg_buf_str(&b, "}");
    free(ans->body);
    ans->status = status;
    ans->code = code;
    ans->body = fg_buf_take(&b);
    ans->content_type = "application/problem+json";
    if (status == 429 || status == 503) ans->retry_after_s = FG_RETRY_AFTER_S;
}

void fg__ok(fg_cmd_t *cmd, int status, fg_buf_t *body) {
    if (body->overflow) {
        fg_buf_free(body);
        fg_cmd_problem(cmd, 503, "overloaded", "the answer is too large to build");
        return;
    }
    free(cmd->body);
    cmd->status = status;
    cmd->code = NULL;
    cmd->body = fg_buf_take(body);
}

void fg__engine_err(fg_cmd_t *cmd, const fg_engine_t *e, fg_err_t err) {
    static const struct {
        int status;
        const char *code;
    } map[] = {
        [FG_OK] = {500, "internal"},
        [FG_ERR_NOT_FOUND] = {404, "not_found"},
        [FG_ERR_INVALID] = {400, "invalid_field"},
        [FG_ERR_SOLD_OUT] = {409, "sold_out"},
        [FG_ERR_SALE_NOT_OPEN] = {409, "sale_not_open"},
        [FG_ERR_LIMIT_REACHED] = {403, "limit_reached"},
        [FG_ERR_NOT_OFFERED] = {403, "not_offered_in_market"},
        [FG_ERR_HOLD_EXPIRED] = {409, "hold_expired"},
        [FG_ERR_HOLD_NOT_ACTIVE] = {409, "hold_not_active"},
        [FG_ERR_BUYER_EXISTS] = {409, "buyer_exists"},
        [FG_ERR_UNAUTHORIZED] = {401, "unauthorized"},
        [FG_ERR_CAPACITY] = {503, "overloaded"},
    };
    FG_ASSERT(err > FG_OK && err <= FG_ERR_CAPACITY);
    fg_cmd_problem(cmd, map[err].status, map[err].code, fg_engine_detail(e));
}

void fg__not_offered(fg_cmd_t *cmd, const fg_engine_t *e, const fg_sale_t *sale, const char *sku,
                     const char *market, const char *reason) {
    const fg_product_t *p = NULL;
    fg_engine_sku_get(e, sku, &p);
    char detail[400];
    snprintf(detail, sizeof detail, "%s is not offered in %s: %s", sku, market, reason);
    fg_buf_t b;
    fg_buf_init(&b, 16384);
    fg_buf_problem_open(&b, 403, "not_offered_in_market", detail);
    fg_buf_json_key(&b, "reason", true);
    fg_buf_json_str(&b, reason);
    fg_buf_json_key(&b, "market", true);
    fg_buf_json_str(&b, market);
    fg_buf_json_key(&b, "alternatives", true);
    fg__render_alternatives(&b, e, sale, p ? p->id : NULL, sku, market);
    fg_buf_str(&b, "}");
    cmd->code = "not_offered_in_market";
    cmd->status = 403;
    free(cmd->body);
    cmd->body = fg_buf_take(&b);
}

/* ---------------------------------------------------------------- input */

json_t *fg__parse_body(const fg_api_request_t *rq, fg_api_answer_t *ans) {
    json_error_t jerr;
    if (rq->body_len == 0) {
        fg_api_problem(ans, 400, "invalid_json", "a JSON object body is required");
        return NULL;
    }
    json_t *v = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        fg_api_problem(ans, 400, "invalid_json", "line %d column %d: %s", jerr.line, jerr.column,
                       jerr.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        fg_api_problem(ans, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return v;
}

bool fg__only_keys(json_t *obj, const char *const *keys, const char *prefix, fg_api_answer_t *ans) {
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        bool known = false;
        for (const char *const *p = keys; *p && !known; p++)
            known = strcmp(*p, k) == 0;
        if (!known) {
            fg_api_problem(ans, 400, "invalid_field", "%s%.64s: unknown field", prefix, k);
            return false;
        }
    }
    return true;
}

static bool valid_utf8_text(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return false; /* jansson has checked UTF-8 */
    return true;
}

bool fg__str_field(json_t *obj, const char *key, const char *path, bool required, size_t max,
                   char *out, size_t cap, fg_api_answer_t *ans) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        out[0] = '\0';
        if (!required) return true;
        fg_api_problem(ans, 400, "invalid_field", "%s: required", path);
        return false;
    }
    if (!json_is_string(v)) {
        fg_api_problem(ans, 400, "invalid_field", "%s: must be a string", path);
        return false;
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    FG_ASSERT(max < cap);
    if (n > max || strlen(s) != n) {
        fg_api_problem(ans, 400, "invalid_field", "%s: at most %zu bytes, no NUL", path, max);
        return false;
    }
    if (required && n == 0) {
        fg_api_problem(ans, 400, "invalid_field", "%s: must not be empty", path);
        return false;
    }
    if (!valid_utf8_text(s)) {
        fg_api_problem(ans, 400, "invalid_field", "%s: control characters are not allowed", path);
        return false;
    }
    memcpy(out, s, n + 1);
    return true;
}

bool fg__int_field(json_t *obj, const char *key, const char *path, bool required, int64_t min,
                   int64_t max, int64_t *out, fg_api_answer_t *ans) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (!required) return true;
        fg_api_problem(ans, 400, "invalid_field", "%s: required", path);
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        fg_api_problem(ans, 400, "invalid_field", "%s: an integer from %lld to %lld", path,
                       (long long)min, (long long)max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

bool fg__valid_id(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > FG_ID_BYTES_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

bool fg__valid_market(const char *s) {
    return strlen(s) == 2 && isupper((unsigned char)s[0]) && isupper((unsigned char)s[1]);
}

bool fg__valid_currency(const char *s) {
    return strlen(s) == 3 && isupper((unsigned char)s[0]) && isupper((unsigned char)s[1]) &&
           isupper((unsigned char)s[2]);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool fg__query_param(const char *query, const char *name, char *out, size_t cap) {
    size_t nlen = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t o = 0;
            for (size_t i = nlen + 1; i < len; i++) {
                char c = p[i];
                if (c == '+')
                    c = ' ';
                else if (c == '%' && i + 2 < len && hexval(p[i + 1]) >= 0 &&
                         hexval(p[i + 2]) >= 0) {
                    c = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
                    i += 2;
                }
                if (o + 1 >= cap) return false; /* too long: treat as absent-invalid */
                out[o++] = c;
            }
            out[o] = '\0';
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

bool fg__parse_obj_id(const char *s, char prefix, uint64_t *id) {
    if (s[0] != prefix || s[1] != '_' || s[2] < '1' || s[2] > '9') return false;
    uint64_t v = 0;
    for (const char *p = s + 2; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *id = v;
    return true;
}

/* ---------------------------------------------------------------- auth */

/* The token after "Bearer ", or NULL. */
static const char *bearer(const fg_api_request_t *rq) {
    const char *a = rq->authorization;
    if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0) return NULL;
    a += 7;
    while (*a == ' ')
        a++;
    size_t n = strlen(a);
    return n >= 1 && n <= FG_TOKEN_BYTES_MAX ? a : NULL;
}

bool fg__auth_admin(const fg_api_t *api, const fg_api_request_t *rq, fg_api_answer_t *ans) {
    const char *t = bearer(rq);
    uint8_t h[32];
    if (t != NULL) {
        crypto_generichash(h, sizeof h, (const unsigned char *)t, strlen(t), NULL, 0);
        if (sodium_memcmp(h, api->admin_token_hash, sizeof h) == 0) return true;
    }
    fg_api_problem(ans, 401, "unauthorized", "an operator's bearer token is required");
    return false;
}

bool fg__buyer_token(const fg_api_request_t *rq, uint64_t *buyer_id, const char **secret,
                     fg_api_answer_t *ans) {
    const char *t = bearer(rq);
    /* fgb_<id>_<secret>: the id finds the buyer, the secret's hash proves it. */
    const char *sep = t && strncmp(t, "fgb_", 4) == 0 ? strchr(t + 4, '_') : NULL;
    uint64_t id = 0;
    char idbuf[24];
    if (sep != NULL && sep - (t + 4) >= 1 && sep - (t + 4) < 20) {
        idbuf[0] = 'b';
        idbuf[1] = '_';
        memcpy(idbuf + 2, t + 4, (size_t)(sep - (t + 4)));
        idbuf[2 + (sep - (t + 4))] = '\0';
        if (fg__parse_obj_id(idbuf, 'b', &id) && strlen(sep + 1) >= 16) {
            *buyer_id = id;
            *secret = sep + 1;
            return true;
        }
    }
    fg_api_problem(ans, 401, "unauthorized", "a buyer's bearer token is required");
    return false;
}

void fg__buyer_secret_hash(fg_api_cmd_t *p, const char *secret) {
    crypto_generichash(p->secret_hash, 32, (const unsigned char *)secret, strlen(secret), NULL,
                       0);
}

bool fg__auth_buyer(const fg_api_request_t *rq, fg_api_cmd_t *p, fg_api_answer_t *ans) {
    const char *secret = NULL;
    if (!fg__buyer_token(rq, &p->buyer_id, &secret, ans)) return false;
    fg__buyer_secret_hash(p, secret);
    return true;
}

bool fg__admit_buyer(fg_engine_t *e, fg_cmd_t *cmd) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    if (fg_engine_buyer_auth(e, p->buyer_id, p->secret_hash) == FG_OK) return true;
    fg_cmd_problem(cmd, 401, "unauthorized", "the buyer token is not valid");
    return false;
}

bool fg__idem_key(const fg_api_request_t *rq, fg_cmd_t *cmd, uint64_t scope,
                  fg_api_answer_t *ans) {
    const char *k = rq->idempotency_key;
    if (k == NULL || k[0] == '\0') {
        fg_api_problem(ans, 400, "missing_idempotency_key",
                       "every POST needs an Idempotency-Key header");
        return false;
    }
    size_t n = strlen(k);
    bool printable = n <= FG_IDEM_KEY_BYTES_MAX;
    for (size_t i = 0; i < n && printable; i++)
        printable = k[i] > 0x20 && k[i] < 0x7f;
    if (!printable) {
        fg_api_problem(ans, 400, "invalid_field",
                       "Idempotency-Key: 1 to %d printable ASCII characters",
                       FG_IDEM_KEY_BYTES_MAX);
        return false;
    }
    cmd->has_idem = true;
    cmd->idem_scope = scope;
    /* Keys are kept as hashes: a key may be a secret of the client's (registration answers are
     * sealed with it, see buyers.c). */
    static const char hex[] = "0123456789abcdef";
    uint8_t kh[32];
    _Static_assert(sizeof cmd->idem_key > 2 * sizeof kh, "room for the hex digest");
    crypto_generichash(kh, sizeof kh, (const unsigned char *)k, n, NULL, 0);
    /* the digest is not a secret: plain hex, not sodium's constant-time sodium_bin2hex */
    for (size_t i = 0; i < sizeof kh; i++) {
        cmd->idem_key[2 * i] = hex[kh[i] >> 4];
        cmd->idem_key[2 * i + 1] = hex[kh[i] & 15];
    }
    cmd->idem_key[2 * sizeof kh] = '\0';
    cmd->idem_hash = fg_engine_idem_hash(scope, cmd->idem_key);
    return true;
}

/* The fingerprint binds the key to this exact request. */
void fg__idem_fingerprint(const fg_api_request_t *rq, fg_cmd_t *cmd) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    const char *m = rq->method == FG_POST ? "POST " : "OTHER ";
    crypto_generichash_update(&st, (const unsigned char *)m, strlen(m));
    crypto_generichash_update(&st, (const unsigned char *)rq->path, strlen(rq->path) + 1);
    if (rq->body_len) crypto_generichash_update(&st, (const unsigned char *)rq->body, rq->body_len);
    crypto_generichash_final(&st, cmd->fingerprint, 32);
}

bool fg__idem(const fg_api_request_t *rq, fg_cmd_t *cmd, uint64_t scope, fg_api_answer_t *ans) {
    if (!fg__idem_key(rq, cmd, scope, ans)) return false;
    fg__idem_fingerprint(rq, cmd);
    return true;
}

/* ---------------------------------------------------------------- rate limit */

#define FG_RATE_BUCKETS_MAX 65536 /* client IPs tracked; past it the table starts over */

bool fg__rate_ok(fg_api_t *api, const fg_api_request_t *rq, fg_api_answer_t *ans) {
    if (api->rate_limit_per_s <= 0 || rq->client_ip == NULL) return true;
    uint64_t key = fg_hash_str(rq->client_ip, strlen(rq->client_ip));
    uint64_t now_s = (uint64_t)(fg_clock_mono_ns() / 1000000000LL) & 0xffffffffu;
    bool ok = true;
    pthread_mutex_lock(&api->rate_mu);
    uint64_t v = 0;
    uint64_t tokens = (uint64_t)api->rate_limit_per_s;
    if (fg_map_get(&api->rate_buckets, key, &v) && (v & 0xffffffffu) == now_s) tokens = v >> 32;
    if (tokens == 0) {
        ok = false;
    } else {
        if (api->rate_buckets.count >= FG_RATE_BUCKETS_MAX) {
            fg_map_free(&api->rate_buckets);
            fg_map_init(&api->rate_buckets);
        }
        /* Out of memory here forgets one client's count; it does not refuse anyone. */
        if (fg_map_put(&api->rate_buckets, key, ((tokens - 1) << 32) | now_s) != 0)
            FG_LOG_WARN("event=rate_table_full");
    }
    pthread_mutex_unlock(&api->rate_mu);
    if (!ok)
        fg_api_problem(ans, 429, "rate_limited", "at most %d requests per second from one address",
                       api->rate_limit_per_s);
    return ok;
}

/* ---------------------------------------------------------------- commands */

fg_api_cmd_t *fg__cmd_init(fg_api_t *api, fg_api_slot_t *slot, fg_cmd_exec_fn exec) {
    fg_api_cmd_t *p = fg__params(slot);
    slot->cmd.exec = exec;
    p->api = api;
    return p;
}

void fg_api_slot_release(fg_api_slot_t *slot) {
    fg_api_cmd_t *p = fg__params(slot);
    switch (p->kind) {
    case FG_OWN_PRODUCT: fg_product_free(&p->u.product); break;
    case FG_OWN_SALE: free(p->u.sale); break;
    case FG_OWN_ORDER: free(p->u.order.shipping_json); break;
    default: break;
    }
    p->kind = FG_OWN_NONE;
}
