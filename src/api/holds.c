/*
 * holds.c — the buyer's calls: holds, orders from holds, reading them back; and the payment
 * provider's signed webhook.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "engine/payment.h"
#include "util/clock.h"

/* ---------------------------------------------------------------- holds */

/* A new hold's answer is stored for its Idempotency-Key in short, "h1 <id> <created_at_ms>
 * <expires_at_ms> <quantity> <market> <sale id> <sku>" (about 60 bytes instead of 330: every
 * hold writes one), and a retry gets it rendered again. That gives the same bytes: a new hold's
 * answer shows it held and without an order, and none of the fields above ever changes. */
#define HOLD_STORED_TAG "h1"
/* The longest short form: the tag, four numbers, the market, two ids, seven spaces. */
#define HOLD_STORED_BYTES_MAX                                                                      \
    (sizeof HOLD_STORED_TAG - 1 + 4 * FG_BUF_I64_BYTES_MAX + 2 + 2 * FG_ID_BYTES_MAX + 7)
/* Past this the answer is stored whole. */
#define HOLD_STORED_BUF_BYTES_MAX 256
_Static_assert(HOLD_STORED_BYTES_MAX <= HOLD_STORED_BUF_BYTES_MAX, "every short form fits");

char *fg__hold_stored(const fg_hold_view_t *v) {
    FG_ASSERT(v->state == FG_HOLD_HELD && v->order_id == 0);
    fg_buf_t b;
    fg_buf_init(&b, HOLD_STORED_BUF_BYTES_MAX);
    /* One allocation for the longest form (always under the limit), so that no piece below
     * grows the buffer. */
    (void)fg_buf_reserve(&b, HOLD_STORED_BYTES_MAX);
    FG_BUF_LIT(&b, HOLD_STORED_TAG " ");
    fg_buf_i64(&b, (int64_t)v->id);
    FG_BUF_LIT(&b, " ");
    fg_buf_i64(&b, v->created_at_ms);
    FG_BUF_LIT(&b, " ");
    fg_buf_i64(&b, v->expires_at_ms);
    FG_BUF_LIT(&b, " ");
    fg_buf_i64(&b, v->quantity);
    FG_BUF_LIT(&b, " ");
    fg_buf_add(&b, v->market, 2);
    FG_BUF_LIT(&b, " ");
    fg_buf_str(&b, v->sale_id);
    FG_BUF_LIT(&b, " ");
    fg_buf_str(&b, v->sku);
    if (b.overflow) {
        fg_buf_free(&b);
        return NULL;
    }
    return fg_buf_take(&b);
}

/* The next space-separated field of *p as a whole number within [min, max]. */
static bool stored_i64(const char **p, int64_t min, int64_t max, int64_t *out) {
    const char *s = *p;
    int64_t v = 0;
    if (*s < '0' || *s > '9') return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (*s - '0');
    }
    if (*s != ' ' || v < min || v > max) return false;
    *p = s + 1;
    *out = v;
    return true;
}

/* The next space-separated id of *p into out (a valid id, as the API takes them). */
static bool stored_id(const char **p, bool last, char out[FG_ID_BYTES_MAX + 1]) {
    const char *end = strchr(*p, ' ');
    size_t n = end != NULL ? (size_t)(end - *p) : strlen(*p);
    if ((end == NULL) != last || n == 0 || n > FG_ID_BYTES_MAX) return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    if (!fg__valid_id(out)) return false;
    *p += n + (last ? 0 : 1);
    return true;
}

/* Renders a stored hold answer again; NULL when the stored text is not one (a damaged ledger:
 * the retry gets 503). Answers stored whole (before the short form) replay as they are. */
char *fg__hold_replay(const char *stored) {
    if (stored[0] == '{') return strdup(stored);
    const char *p = stored;
    int64_t id, created, expires, qty;
    char market[3], sale[FG_ID_BYTES_MAX + 1], sku[FG_ID_BYTES_MAX + 1];
    if (strncmp(p, HOLD_STORED_TAG " ", sizeof HOLD_STORED_TAG) != 0) return NULL;
    p += sizeof HOLD_STORED_TAG;
    if (!stored_i64(&p, 1, INT64_MAX, &id) || !stored_i64(&p, 0, INT64_MAX, &created) ||
        !stored_i64(&p, 0, INT64_MAX, &expires) ||
        !stored_i64(&p, 1, FG_LIMIT_PER_BUYER_MAX, &qty))
        return NULL;
    if (p[0] < 'A' || p[0] > 'Z' || p[1] < 'A' || p[1] > 'Z' || p[2] != ' ') return NULL;
    memcpy(market, p, 2);
    market[2] = '\0';
    p += 3;
    if (!stored_id(&p, false, sale) || !stored_id(&p, true, sku)) return NULL;
    fg_hold_view_t v = {.id = (uint64_t)id,
                        .sale_id = sale,
                        .sku = sku,
                        .quantity = qty,
                        .state = FG_HOLD_HELD,
                        .created_at_ms = created,
                        .expires_at_ms = expires};
    memcpy(v.market, market, sizeof market);
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg__render_hold_view(&b, &v);
    if (b.overflow) {
        fg_buf_free(&b);
        return NULL;
    }
    return fg_buf_take(&b);
}

static char *replay_hold(fg_cmd_t *cmd, const char *stored) {
    (void)cmd;
    return fg__hold_replay(stored);
}

static void exec_hold(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_hold_params_t *hp = &p->u.hold;
    if (hp->market == 0) hp->market = fg_engine_buyer_market(e, p->buyer_id);
    const fg_hold_t *h = NULL;
    fg_err_t err =
        fg_engine_hold(e, p->buyer_id, p->id, hp->sku, hp->market, hp->quantity, now_ms, &h);
    if (err == FG_ERR_NOT_OFFERED) {
        char market[3];
        fg_mcode_str(hp->market, market);
        fg__not_offered(cmd, e, fg_engine_sale_get(e, p->id), hp->sku, market, fg_engine_detail(e));
        return;
    }
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_hold_view_t v;
    fg__hold_view(e, h, &v);
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg__render_hold_view(&b, &v);
    fg__ok(cmd, 201, &b);
    if (cmd->status == 201) {
        free(cmd->idem_body);
        cmd->idem_body = fg__hold_stored(&v); /* NULL: the answer is stored whole */
    }
}

/* A buyer's call: token parsed now, checked on the writer thread before anything else. */
static fg_api_cmd_t *buyer_call(fg_api_t *api, const fg_api_request_t *rq, fg_api_slot_t *slot,
                                fg_cmd_exec_fn exec, fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec);
    slot->cmd.admit = fg__admit_buyer;
    return fg__auth_buyer(rq, p, ans) ? p : NULL;
}

/* A hold on a sold-out sale is refused here, on the HTTP thread, when the gate allows it
 * (gate.c): no hashing of the token, no trip through the writer. Otherwise the key is marked
 * as sent before the command goes, so a later retry of it always reaches the writer (I5). */
fg_answer_kind_t fg__h_holds(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                             fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_hold);
    slot->cmd.admit = fg__admit_buyer;
    slot->cmd.replay = replay_hold;
    const char *secret = NULL;
    if (!fg__buyer_token(rq, &p->buyer_id, &secret, ans) || !fg__rate_ok(api, rq, ans))
        return FG_ANSWER_NOW;
    size_t id_len = strlen(parts[2]);
    if (!fg__valid_id(parts[2])) {
        fg_api_problem(ans, 404, "not_found", "no such sale");
        return FG_ANSWER_NOW;
    }
    memcpy(p->id, parts[2], id_len + 1); /* valid: at most FG_ID_BYTES_MAX */
    if (!fg__idem_key(rq, &slot->cmd, p->buyer_id, ans)) return FG_ANSWER_NOW;
    fg_hold_body_t body;
    if (!fg__hold_body(rq, &body, ans)) return FG_ANSWER_NOW;
    fg_hold_params_t *hp = &p->u.hold;
    memcpy(hp->sku, body.sku, sizeof hp->sku);
    hp->market = body.market[0] ? fg_mcode(body.market) : 0;
    hp->quantity = (int32_t)body.quantity;
    if (fg__gate_refuses(api->gate, p->id, hp->sku, slot->cmd.idem_hash, fg_clock_now_ms())) {
        fg_api_problem(ans, 409, "sold_out", "sale %s is sold out", p->id);
        return FG_ANSWER_NOW;
    }
    fg__gate_mark_key(api->gate, slot->cmd.idem_hash);
    fg__idem_fingerprint(rq, &slot->cmd);
    fg__buyer_secret_hash(p, secret);
    return FG_ANSWER_LATER;
}

static void exec_hold_get(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    const fg_hold_t *h = fg_engine_hold_get(e, p->buyer_id, p->num_id);
    if (h == NULL) {
        fg_cmd_problem(cmd, 404, "not_found", "no such hold");
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg__render_hold(&b, e, h);
    fg__ok(cmd, 200, &b);
}

static void exec_hold_release(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    const fg_hold_t *h = NULL;
    fg_err_t err = fg_engine_hold_release(e, p->buyer_id, p->num_id, now_ms, &h);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg__render_hold(&b, e, h);
    fg__ok(cmd, 200, &b);
}

static bool path_obj_id(const char *part, char prefix, fg_api_cmd_t *p, fg_api_answer_t *ans) {
    if (fg__parse_obj_id(part, prefix, &p->num_id)) return true;
    fg_api_problem(ans, 404, "not_found", "no such %s", prefix == 'h' ? "hold" : "order");
    return false;
}

fg_answer_kind_t fg__h_hold(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                            fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg_cmd_exec_fn exec = rq->method == FG_DELETE ? exec_hold_release : exec_hold_get;
    fg_api_cmd_t *p = buyer_call(api, rq, slot, exec, ans);
    if (p == NULL || !path_obj_id(parts[2], 'h', p, ans)) return FG_ANSWER_NOW;
    return FG_ANSWER_LATER;
}

/* ---------------------------------------------------------------- orders */

static void exec_order(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_order_params_t *op = &p->u.order;
    const fg_order_t *o = NULL;
    fg_err_t err = fg_engine_order(e, p->buyer_id, p->num_id, op->shipping_json, op->country,
                                   op->method, now_ms, &o);
    if (err == FG_ERR_NOT_OFFERED) {
        const fg_hold_t *h = fg_engine_hold_get(e, p->buyer_id, p->num_id);
        const fg_sale_t *s = fg_engine_sale_at(e, (int)h->sale_index);
        char market[3];
        fg_mcode_str(h->market, market);
        fg__not_offered(cmd, e, s, s->def.pools[h->pool_index].sku, market, fg_engine_detail(e));
        return;
    }
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 8192);
    fg__render_order(&b, &o->row, false, NULL);
    fg__ok(cmd, 201, &b);
}

/* Validates the shipping address and serializes it in a fixed field order. */
static char *parse_shipping(json_t *ship, char country[3], fg_api_answer_t *ans) {
    static const char *const keys[] = {"name",        "line1",   "line2", "city",
                                       "postal_code", "country", NULL};
    struct {
        const char *key;
        bool required;
        size_t max;
        char val[FG_ADDRESS_FIELD_BYTES_MAX + 1];
    } f[] = {{"name", true, FG_ADDRESS_FIELD_BYTES_MAX, ""},
             {"line1", true, FG_ADDRESS_FIELD_BYTES_MAX, ""},
             {"line2", false, FG_ADDRESS_FIELD_BYTES_MAX, ""},
             {"city", true, FG_ADDRESS_FIELD_BYTES_MAX, ""},
             {"postal_code", true, FG_POSTAL_CODE_BYTES_MAX, ""},
             {"country", true, 2, ""}};
    if (!json_is_object(ship)) {
        fg_api_problem(ans, 400, "invalid_field", "shipping: an address object is required");
        return NULL;
    }
    if (!fg__only_keys(ship, keys, "shipping.", ans)) return NULL;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        char path[40];
        snprintf(path, sizeof path, "shipping.%s", f[i].key);
        if (!fg__str_field(ship, f[i].key, path, f[i].required, f[i].max, f[i].val, sizeof f[i].val,
                           ans))
            return NULL;
    }
    if (!fg__valid_market(f[5].val)) {
        fg_api_problem(ans, 400, "invalid_field", "shipping.country: two upper-case letters");
        return NULL;
    }
    memcpy(country, f[5].val, 3);
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        fg_buf_str(&b, i ? "," : "{");
        fg_buf_json_key(&b, f[i].key, false);
        fg_buf_json_str(&b, f[i].val);
    }
    fg_buf_str(&b, "}");
    return fg_buf_take(&b);
}

static bool parse_payment(json_t *pay, fg_pay_method_t *method, fg_api_answer_t *ans) {
    static const char *const keys[] = {"method", NULL};
    char m[16];
    if (!json_is_object(pay)) {
        fg_api_problem(ans, 400, "invalid_field", "payment: an object with a method");
        return false;
    }
    if (!fg__only_keys(pay, keys, "payment.", ans) ||
        !fg__str_field(pay, "method", "payment.method", true, 10, m, sizeof m, ans))
        return false;
    const fg_payment_provider_t *pp = fg_payment_provider_named(m);
    if (pp == NULL) {
        fg_api_problem(ans, 400, "invalid_field", "payment.method: %s",
                       fg_payment_provider_names());
        return false;
    }
    *method = pp->method;
    return true;
}

fg_answer_kind_t fg__h_hold_order(fg_api_t *api, const fg_api_request_t *rq,
                                  const char *const *parts, fg_api_slot_t *slot,
                                  fg_api_answer_t *ans) {
    static const char *const keys[] = {"shipping", "payment", NULL};
    fg_api_cmd_t *p = buyer_call(api, rq, slot, exec_order, ans);
    if (p == NULL || !path_obj_id(parts[2], 'h', p, ans) ||
        !fg__idem(rq, &slot->cmd, p->buyer_id, ans))
        return FG_ANSWER_NOW;
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    fg_order_params_t *op = &p->u.order;
    bool ok = fg__only_keys(body, keys, "", ans) &&
              parse_payment(json_object_get(body, "payment"), &op->method, ans);
    if (ok) {
        op->shipping_json = parse_shipping(json_object_get(body, "shipping"), op->country, ans);
        ok = op->shipping_json != NULL;
        p->kind = FG_OWN_ORDER;
    }
    json_decref(body);
    return ok ? FG_ANSWER_LATER : FG_ANSWER_NOW;
}

static void exec_order_get(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    const fg_order_t *o = fg_engine_order_get(e, p->buyer_id, p->num_id);
    if (o == NULL) {
        fg_cmd_problem(cmd, 404, "not_found", "no such order");
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 8192);
    fg__render_order(&b, &o->row, false, NULL);
    fg__ok(cmd, 200, &b);
}

fg_answer_kind_t fg__h_order(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                             fg_api_slot_t *slot, fg_api_answer_t *ans) {
    fg_api_cmd_t *p = buyer_call(api, rq, slot, exec_order_get, ans);
    if (p == NULL || !path_obj_id(parts[2], 'o', p, ans)) return FG_ANSWER_NOW;
    return FG_ANSWER_LATER;
}

static void exec_me_orders(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_buf_t b;
    fg_buf_init(&b, 4 << 20);
    fg_buf_str(&b, "{\"orders\":[");
    int n = 0;
    const fg_order_t *o = fg_engine_buyer_orders(e, p->buyer_id);
    for (; o != NULL && p->u.page.cursor && o->row.id >= p->u.page.cursor; o = o->next_of_buyer) {
    }
    for (; o != NULL && n < p->u.page.limit; o = o->next_of_buyer) {
        if (n++) fg_buf_str(&b, ",");
        fg__render_order(&b, &o->row, false, NULL);
    }
    if (o != NULL && n > 0) {
        /* The cursor names the last order shown: the next page starts below it. */
        const fg_order_t *last = fg_engine_buyer_orders(e, p->buyer_id);
        while (last->next_of_buyer != o)
            last = last->next_of_buyer;
        fg_buf_printf(&b, "],\"next_cursor\":\"o_%llu\"}", (unsigned long long)last->row.id);
    } else {
        fg_buf_str(&b, "],\"next_cursor\":null}");
    }
    fg__ok(cmd, 200, &b);
}

fg_answer_kind_t fg__h_me_orders(fg_api_t *api, const fg_api_request_t *rq,
                                 const char *const *parts, fg_api_slot_t *slot,
                                 fg_api_answer_t *ans) {
    fg_api_cmd_t *p = buyer_call(api, rq, slot, exec_me_orders, ans);
    if (p == NULL) return FG_ANSWER_NOW;
    char v[32];
    p->u.page.limit = 20;
    if (fg__query_param(rq->query, "limit", v, sizeof v)) {
        char *end = NULL;
        long n = strtol(v, &end, 10);
        if (end == v || *end != '\0' || n < 1 || n > FG_ME_ORDERS_MAX) {
            fg_api_problem(ans, 400, "invalid_field", "limit: 1 to %d", FG_ME_ORDERS_MAX);
            return FG_ANSWER_NOW;
        }
        p->u.page.limit = (int)n;
    }
    if (fg__query_param(rq->query, "cursor", v, sizeof v) &&
        !fg__parse_obj_id(v, 'o', &p->u.page.cursor)) {
        fg_api_problem(ans, 400, "invalid_field", "cursor: an order id from next_cursor");
        return FG_ANSWER_NOW;
    }
    return FG_ANSWER_LATER;
}

/* ---------------------------------------------------------------- payment webhook */

static void exec_webhook(fg_engine_t *e, fg_cmd_t *cmd, int64_t now_ms) {
    fg_api_cmd_t *p = fg__cmd_params(cmd);
    fg_pay_params_t *pp = &p->u.pay;
    if (fg_engine_webhook_use(e, pp->digest, pp->t_s, now_ms) != FG_OK) {
        fg_cmd_problem(cmd, 401, "unauthorized", "this signature was already used (replay)");
        return;
    }
    const fg_order_t *o = NULL;
    fg_err_t err = fg_engine_payment(e, pp->order_id, pp->succeeded, now_ms, &o);
    if (err != FG_OK) {
        fg__engine_err(cmd, e, err);
        return;
    }
    fg_buf_t b;
    fg_buf_init(&b, 8192);
    fg__render_order(&b, &o->row, false, NULL);
    fg__ok(cmd, 200, &b);
}

/* Checks "t=<unix>,v1=<hex>" against HMAC-SHA256(secret, "<t>.<body>"), in constant time. */
static bool verify_signature(const fg_api_t *api, const fg_api_request_t *rq, int64_t *t_s,
                             fg_api_answer_t *ans) {
    const char *sig = rq->signature;
    long long t = 0;
    int tlen = 0;
    if (sig == NULL || sscanf(sig, "t=%18lld,v1=%n", &t, &tlen) != 1 || tlen == 0 ||
        strlen(sig + tlen) != 64) {
        fg_api_problem(ans, 401, "unauthorized", "Floodgate-Signature: t=<unix>,v1=<hex> needed");
        return false;
    }
    uint8_t given[32], want[32];
    size_t bin_len = 0;
    if (sodium_hex2bin(given, sizeof given, sig + tlen, 64, NULL, &bin_len, NULL) != 0 ||
        bin_len != 32) {
        fg_api_problem(ans, 401, "unauthorized", "Floodgate-Signature: v1 must be 64 hex digits");
        return false;
    }
    char tbuf[24];
    int n = snprintf(tbuf, sizeof tbuf, "%lld.", t);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)api->webhook_secret,
                                strlen(api->webhook_secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)tbuf, (unsigned long long)n);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)rq->body, rq->body_len);
    crypto_auth_hmacsha256_final(&st, want);
    if (sodium_memcmp(given, want, 32) != 0) {
        fg_api_problem(ans, 401, "unauthorized", "the signature does not match");
        return false;
    }
    int64_t now_s = fg_clock_now_ms() / 1000;
    if (t < now_s - FG_WEBHOOK_TOLERANCE_S || t > now_s + FG_WEBHOOK_TOLERANCE_S) {
        fg_api_problem(ans, 401, "unauthorized",
                       "the signature's timestamp is more than %d s "
                       "from now",
                       FG_WEBHOOK_TOLERANCE_S);
        return false;
    }
    *t_s = t;
    return true;
}

fg_answer_kind_t fg__h_webhook(fg_api_t *api, const fg_api_request_t *rq, const char *const *parts,
                               fg_api_slot_t *slot, fg_api_answer_t *ans) {
    static const char *const keys[] = {"order_id", "status", NULL};
    fg_api_cmd_t *p = fg__cmd_init(api, slot, exec_webhook);
    fg_pay_params_t *pp = &p->u.pay;
    if (!verify_signature(api, rq, &pp->t_s, ans)) return FG_ANSWER_NOW;
    crypto_generichash(pp->digest, 32, (const unsigned char *)rq->signature, strlen(rq->signature),
                       NULL, 0);
    json_t *body = fg__parse_body(rq, ans);
    if (body == NULL) return FG_ANSWER_NOW;
    char order[32], status[16];
    bool ok = fg__only_keys(body, keys, "", ans) &&
              fg__str_field(body, "order_id", "order_id", true, 24, order, sizeof order, ans) &&
              fg__str_field(body, "status", "status", true, 10, status, sizeof status, ans);
    json_decref(body);
    if (!ok) return FG_ANSWER_NOW;
    if (!fg__parse_obj_id(order, 'o', &pp->order_id)) {
        fg_api_problem(ans, 404, "not_found", "no such order");
        return FG_ANSWER_NOW;
    }
    if (strcmp(status, "succeeded") != 0 && strcmp(status, "failed") != 0) {
        fg_api_problem(ans, 400, "invalid_field", "status: succeeded or failed");
        return FG_ANSWER_NOW;
    }
    pp->succeeded = status[0] == 's';
    return FG_ANSWER_LATER;
}
