/*
 * crowd.c — what one simulated buyer does, request by request; run.c drives them all.
 *
 * A buyer is a small state machine (crowd_internal.h): register; then, in the sale, hold,
 * order, and depending on its kind replay the order, probe past the limit, abandon its hold,
 * or try from the blocked market. Each step's request is rebuilt from the buyer's compact
 * record when a connection takes it, with an Idempotency-Key derived from the run's random
 * nonce, the buyer and the step, so a retry of a step always carries the same key.
 *
 * Every answer is counted (step, status, code, latency). A 201 where the contract says
 * refusal, or a replay that differs, is a contract break the crowd saw itself: it goes to the
 * record at once and fails the audit.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crowd/call.h"
#include "crowd/crowd_internal.h"
#include "crowd/http.h"
#include "crowd/ids.h"
#include "crowd/setup.h"
#include "util/clock.h"

const char fgc__why_not_sent[] = "not sent: the run ended";
const char fgc__why_in_flight[] = "no answer: the run ended";

static const char step_key[] = {'-', 'r', 'h', 'o', 'o', 'x', '-'}; /* by ST_*: replay = order */

uint64_t fgc__rand(fgc_crowd_t *c) { /* splitmix64 */
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static fgc_step_t tally_step(int st) {
    switch (st) {
    case ST_REGISTER: return FGC_STEP_REGISTER;
    case ST_HOLD: return FGC_STEP_HOLD;
    case ST_ORDER: return FGC_STEP_ORDER;
    case ST_REPLAY: return FGC_STEP_REPLAY;
    default: return FGC_STEP_EXTRA;
    }
}

/* ---- requests ---------------------------------------------------------------------------- */

static void write_hold(fgc_crowd_t *c, const fgc_buyer_t *b, const char *key, const char *token,
                       fg_buf_t *out) {
    char path[160], body[256];
    int q = b->step == ST_EXTRA ? 1 : b->quantity;
    snprintf(path, sizeof path, "/v1/sales/%s/holds", c->sale_id);
    int n = snprintf(body, sizeof body, "{\"sku\":\"%s\",\"market\":\"%s\",\"quantity\":%d}",
                     FGC_SKU_ID, fgc_markets[b->market].code, q);
    FG_ASSERT(n > 0 && (size_t)n < sizeof body);
    fgc_http_request(out, "POST", fgc_loop_host(c->loop), path, token, key, body, (size_t)n);
}

static void write_order(fgc_crowd_t *c, const fgc_buyer_t *b, const char *key, const char *token,
                        fg_buf_t *out) {
    char path[64], body[512];
    snprintf(path, sizeof path, "/v1/holds/h_%u/order", (unsigned)b->hold_id);
    int n = snprintf(body, sizeof body, "{\"shipping\":%s,\"payment\":{\"method\":\"instant\"}}",
                     fgc_markets[b->market].shipping_json);
    FG_ASSERT(n > 0 && (size_t)n < sizeof body);
    fgc_http_request(out, "POST", fgc_loop_host(c->loop), path, token, key, body, (size_t)n);
}

static void crowd_write(void *ctx, uint32_t tag, fg_buf_t *out) {
    fgc_crowd_t *c = ctx;
    fgc_buyer_t *b = &c->buyers[tag];
    FG_ASSERT(b->step >= ST_REGISTER && b->step <= ST_EXTRA);
    char key[FGC_IDEM_KEY_BYTES_MAX], token[FGC_TOKEN_TEXT_BYTES_MAX];
    snprintf(key, sizeof key, "%s-%u-%c", c->nonce, (unsigned)tag, step_key[b->step]);
    if (b->step == ST_REGISTER) {
        char body[160];
        int n = snprintf(body, sizeof body,
                         "{\"email\":\"crowd-%.8s-%u@crowd.example\",\"market\":\"%s\"}", c->nonce,
                         (unsigned)tag, fgc_markets[b->market].code);
        fgc_http_request(out, "POST", fgc_loop_host(c->loop), "/v1/buyers", NULL, key, body,
                         (size_t)n);
        return;
    }
    fgc_token_format(b->id, b->secret, token, sizeof token);
    if (b->step == ST_HOLD || b->step == ST_EXTRA) {
        c->n_.hold_requests += b->step == ST_HOLD;
        write_hold(c, b, key, token, out);
    } else {
        write_order(c, b, key, token, out);
    }
}

/* ---- moving a buyer on ------------------------------------------------------------------- */

static void finish(fgc_crowd_t *c, fgc_buyer_t *b) {
    FG_ASSERT(b->step != ST_DONE && c->active > 0);
    b->step = ST_DONE;
    c->active--;
}

static void submit(fgc_crowd_t *c, uint32_t i, int64_t start_ns) {
    if (fgc_loop_submit(c->loop, &c->client, i, 0, start_ns) != 0) {
        c->n_.gave_up++; /* cannot happen: the queue has room for every buyer */
        finish(c, &c->buyers[i]);
    }
}

/* Moves buyer i to `step` and sends it, unless the run is ending. */
static void go(fgc_crowd_t *c, uint32_t i, int step) {
    fgc_buyer_t *b = &c->buyers[i];
    if (c->phase == P_DRAIN) {
        c->n_.stopped++;
        finish(c, b);
        return;
    }
    b->step = (uint8_t)step;
    b->tries = 0;
    submit(c, i, 0);
}

void fgc__crowd_start(fgc_crowd_t *c, uint32_t i, int64_t start_ns) {
    fgc_buyer_t *b = &c->buyers[i];
    FG_ASSERT(b->step == ST_WAITING || b->step == ST_DONE);
    if (c->phase == P_SALE && b->id == 0) return; /* never registered: not in the crowd */
    c->active++;
    b->step = c->phase == P_REGISTER ? ST_REGISTER : ST_HOLD;
    b->tries = 0;
    submit(c, i, start_ns);
}

static void retry_later(fgc_crowd_t *c, uint32_t i, int64_t delay_ms) {
    fgc_buyer_t *b = &c->buyers[i];
    b->tries++;
    int64_t due = fg_clock_mono_ns() + delay_ms * 1000000;
    if (c->phase == P_DRAIN || fgc_loop_timer(c->loop, &c->client, i, due) != 0) {
        c->n_.stopped += c->phase == P_DRAIN;
        finish(c, b);
    }
}

static void crowd_timer(void *ctx, uint32_t tag) {
    fgc_crowd_t *c = ctx;
    if (c->phase == P_DRAIN) {
        c->n_.stopped++;
        finish(c, &c->buyers[tag]);
        return;
    }
    submit(c, tag, 0);
}

/* The delay before the same step is tried again with the same key, or -1: give up. */
static int64_t retry_delay_ms(fgc_crowd_t *c, const fgc_buyer_t *b, const fgc_answer_t *a,
                              const char *code) {
    if (b->tries >= c->o->retries) return -1;
    int64_t jitter = (int64_t)(fgc__rand(c) % 100);
    if (a->status == 429 || (a->status == 503 && a->retry_after_s >= 0)) {
        int s = a->retry_after_s < 0 ? 1 : a->retry_after_s;
        return (int64_t)(s < FGC_RETRY_AFTER_S_MAX ? s : FGC_RETRY_AFTER_S_MAX) * 1000 + jitter;
    }
    bool transient = a->status == 0 || a->status >= 500 ||
                     (a->status == 409 && strcmp(code, "idempotency_in_progress") == 0);
    if (!transient || !((b->flags & F_RETRIER) || b->step == ST_REGISTER)) return -1;
    return fgc_backoff_ms(b->tries) + jitter;
}

/* No answer that settles the step: retry it, or give up on the buyer. */
static void unsettled(fgc_crowd_t *c, uint32_t i, const fgc_answer_t *a, const char *code) {
    fgc_buyer_t *b = &c->buyers[i];
    int64_t delay = retry_delay_ms(c, b, a, code);
    if (delay >= 0 && c->phase != P_DRAIN) {
        retry_later(c, i, delay);
        return;
    }
    /* 503 (overloaded, or a failed commit that was rolled back) and 4xx mean nothing was
     * done; no answer, another 5xx, or a first request still committing leave it open. */
    bool in_progress = a->status == 409 && strcmp(code, "idempotency_in_progress") == 0;
    bool unknown = a->status == 0 || (a->status >= 500 && a->status != 503) || in_progress;
    if (unknown && (b->step == ST_HOLD || b->step == ST_ORDER || b->step == ST_EXTRA))
        b->flags |= F_UNKNOWN;
    if (a->status >= 200 && a->status < 500 && a->status != 429 && !in_progress) c->n_.unexpected++;
    c->n_.gave_up++;
    finish(c, b);
}

/* ---- answers ----------------------------------------------------------------------------- */

static const char *jstr(json_t *j, const char *key) {
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

static void on_register(fgc_crowd_t *c, uint32_t i, const fgc_answer_t *a, json_t *j,
                        const char *code) {
    fgc_buyer_t *b = &c->buyers[i];
    uint32_t id = 0, token_id = 0;
    if (a->status == 201 && fgc_id_parse(jstr(j, "id"), 'b', &id) &&
        fgc_token_parse(jstr(j, "token"), &token_id, b->secret) && id == token_id) {
        b->id = id;
        c->n_.registered++;
        finish(c, b);
        return;
    }
    if (a->status == 201) c->n_.unexpected++; /* a 201 without a usable id and token */
    if (a->status == 409 && strcmp(code, "buyer_exists") == 0) /* e-mails are unique per run */
        fgc_record_observe(&c->rec,
                           "registration #%u answered 409 buyer_exists: an earlier try with the "
                           "same Idempotency-Key registered it, and this one did not replay (I5)",
                           (unsigned)i);
    int64_t delay = a->status == 201 ? -1 : retry_delay_ms(c, b, a, code);
    if (delay >= 0) {
        retry_later(c, i, delay);
        return;
    }
    c->n_.register_failed++;
    finish(c, b);
}

/* A 201 hold: checks it is what was asked for, then orders, abandons or reports. */
static void hold_granted(fgc_crowd_t *c, uint32_t i, json_t *j) {
    fgc_buyer_t *b = &c->buyers[i];
    uint32_t hid = 0;
    const char *market = fgc_markets[b->market].code;
    json_int_t q = json_integer_value(json_object_get(j, "quantity"));
    if (!fgc_id_parse(jstr(j, "id"), 'h', &hid) || strcmp(jstr(j, "market"), market) != 0 ||
        strcmp(jstr(j, "sku"), FGC_SKU_ID) != 0 || q != b->quantity) {
        fgc_record_observe(&c->rec,
                           "hold answer for buyer b_%u does not match its request "
                           "(id %s, market %s, sku %s, quantity %lld; asked %s %d)",
                           (unsigned)b->id, jstr(j, "id"), jstr(j, "market"), jstr(j, "sku"),
                           (long long)q, market, b->quantity);
        finish(c, b);
        return;
    }
    int64_t now = fg_clock_mono_ns(), exp_ms;
    if (fg_clock_parse_rfc3339(jstr(j, "expires_at"), &exp_ms) == 0 && exp_ms > c->holds_end_ms)
        c->holds_end_ms = exp_ms;
    b->hold_id = hid;
    c->n_.holds_ok++;
    c->n_.hold_units += (uint64_t)q;
    c->last_hold_ok_ns = now;
    if (c->exhausted_ns == 0 && c->n_.hold_units >= (uint64_t)c->o->stock) c->exhausted_ns = now;
    if (b->kind == K_BLOCKED)
        fgc_record_observe(&c->rec, "hold h_%u granted to buyer b_%u in %s, where %s is blocked",
                           (unsigned)hid, (unsigned)b->id, market, FGC_SKU_ID);
    if (b->kind == K_ABANDON) {
        c->n_.abandoned++;
        finish(c, b);
        return;
    }
    go(c, i, ST_ORDER); /* a blocked buyer's unexpected hold is ordered too: the audit sees it */
}

static void on_hold(fgc_crowd_t *c, uint32_t i, const fgc_answer_t *a, json_t *j,
                    const char *code) {
    fgc_buyer_t *b = &c->buyers[i];
    if (a->status == 201) {
        hold_granted(c, i, j);
    } else if (a->status == 409 && strcmp(code, "sold_out") == 0) {
        if (c->first_sold_out_ns == 0) {
            c->first_sold_out_ns = fg_clock_mono_ns();
            c->holds_at_sold_out = c->n_.holds_ok;
            c->units_at_sold_out = c->n_.hold_units;
        }
        c->n_.sold_out++;
        finish(c, b);
    } else if (a->status == 403 && strcmp(code, "not_offered_in_market") == 0) {
        if (b->kind == K_BLOCKED)
            c->n_.blocked_refused++;
        else
            fgc_record_observe(&c->rec, "buyer b_%u refused not_offered_in_market in %s",
                               (unsigned)b->id, fgc_markets[b->market].code);
        finish(c, b);
    } else if (a->status == 409 && strcmp(code, "sale_not_open") == 0 &&
               b->tries < FGC_NOT_OPEN_RETRIES_MAX && c->phase == P_SALE && c->n_.holds_ok == 0) {
        retry_later(c, i, FGC_NOT_OPEN_RETRY_MS); /* our clock ran ahead of the server's */
    } else if (a->status == 403 && strcmp(code, "limit_reached") == 0) {
        /* A buyer's first hold is within the limit: only an earlier try of this same request
         * can have used it up, and that try's answer is what a retry must get. */
        fgc_record_observe(&c->rec,
                           "first hold of buyer b_%u (quantity %d, limit %d) refused "
                           "limit_reached: an earlier try with the same Idempotency-Key held "
                           "units, and this one did not replay (I5)",
                           (unsigned)b->id, b->quantity, c->o->limit);
        finish(c, b);
    } else {
        unsettled(c, i, a, code);
    }
}

static void order_paid(fgc_crowd_t *c, uint32_t i, json_t *j) {
    fgc_buyer_t *b = &c->buyers[i];
    uint32_t oid = 0, hid = 0;
    const char *market = fgc_markets[b->market].code;
    json_int_t q = json_integer_value(json_object_get(j, "quantity"));
    if (!fgc_id_parse(jstr(j, "id"), 'o', &oid) || !fgc_id_parse(jstr(j, "hold_id"), 'h', &hid) ||
        hid != b->hold_id || strcmp(jstr(j, "market"), market) != 0 ||
        strcmp(jstr(j, "sku"), FGC_SKU_ID) != 0 || q != b->quantity ||
        strcmp(jstr(j, "state"), "paid") != 0) {
        fgc_record_observe(&c->rec,
                           "order answer for hold h_%u of buyer b_%u does not match "
                           "(id %s, hold %s, market %s, quantity %lld, state %s)",
                           (unsigned)b->hold_id, (unsigned)b->id, jstr(j, "id"), jstr(j, "hold_id"),
                           jstr(j, "market"), (long long)q, jstr(j, "state"));
    }
    if (oid == 0) {
        finish(c, b);
        return;
    }
    b->order_id = oid;
    c->n_.orders_ok++;
    c->n_.order_units += (uint64_t)b->quantity;
    if (b->flags & F_RETRIER)
        go(c, i, ST_REPLAY);
    else if (b->kind == K_OVER_LIMIT)
        go(c, i, ST_EXTRA);
    else
        finish(c, b);
}

static void on_order(fgc_crowd_t *c, uint32_t i, const fgc_answer_t *a, json_t *j,
                     const char *code) {
    if (a->status == 201) {
        order_paid(c, i, j);
    } else if (a->status == 409 && strcmp(code, "hold_expired") == 0) {
        c->n_.expired_before_order++;
        finish(c, &c->buyers[i]);
    } else if ((a->status == 409 && strcmp(code, "hold_not_active") == 0) || a->status == 404) {
        /* The crowd never releases a hold and orders it with one key: an acknowledged hold
         * that is gone, or already ordered by an earlier try of this request, is a break. */
        const fgc_buyer_t *b = &c->buyers[i];
        fgc_record_observe(&c->rec,
                           "order of acknowledged hold h_%u of buyer b_%u answered %d %s: the "
                           "hold was lost (I3) or an earlier try ordered it without a replay (I5)",
                           (unsigned)b->hold_id, (unsigned)b->id, a->status, code);
        finish(c, &c->buyers[i]);
    } else {
        unsettled(c, i, a, code);
    }
}

static void on_replay(fgc_crowd_t *c, uint32_t i, const fgc_answer_t *a, json_t *j,
                      const char *code) {
    fgc_buyer_t *b = &c->buyers[i];
    uint32_t oid = 0;
    if (a->status != 201) {
        int64_t delay = retry_delay_ms(c, b, a, code);
        if (delay >= 0 && c->phase != P_DRAIN) {
            retry_later(c, i, delay);
            return;
        }
        /* No answer, or a refusal for load, says nothing about the stored one. */
        if (a->status == 0 || a->status == 429 || a->status == 503)
            c->n_.gave_up++;
        else
            fgc_record_observe(&c->rec,
                               "order o_%u replayed with its Idempotency-Key: %d %s, "
                               "expected the stored 201",
                               (unsigned)b->order_id, a->status, code);
    } else if (!fgc_id_parse(jstr(j, "id"), 'o', &oid) || oid != b->order_id) {
        fgc_record_observe(&c->rec, "order o_%u replayed with its Idempotency-Key gave %s",
                           (unsigned)b->order_id, jstr(j, "id"));
    } else {
        c->n_.replays_same++;
    }
    if (b->kind == K_OVER_LIMIT)
        go(c, i, ST_EXTRA);
    else
        finish(c, b);
}

static void on_extra(fgc_crowd_t *c, uint32_t i, const fgc_answer_t *a, json_t *j,
                     const char *code) {
    fgc_buyer_t *b = &c->buyers[i];
    if (a->status == 403 && strcmp(code, "limit_reached") == 0) {
        c->n_.limit_refused++;
    } else if (a->status == 409 && strcmp(code, "sold_out") == 0) {
        c->n_.limit_sold_out++; /* sold out is checked before the limit: inconclusive */
    } else if (a->status == 201) {
        fgc_record_observe(&c->rec, "buyer b_%u got hold %s past its limit of %d", (unsigned)b->id,
                           jstr(j, "id"), c->o->limit);
    } else {
        unsettled(c, i, a, code);
        return;
    }
    finish(c, b);
}

/* The answer's problem code; "" for success; why, when no answer came. */
static const char *answer_code(const fgc_answer_t *a, json_t *j) {
    if (a->status == 0) return a->timed_out ? "timeout" : a->error;
    if (a->status < 400) return "";
    const char *code = json_string_value(json_object_get(j, "code"));
    return code ? code : "(no code)";
}

static void crowd_done(void *ctx, uint32_t tag, const fgc_answer_t *a) {
    fgc_crowd_t *c = ctx;
    fgc_buyer_t *b = &c->buyers[tag];
    if (a->status == 0 && a->error == fgc__why_not_sent) { /* cut off before it was sent */
        c->n_.stopped++;
        finish(c, b);
        return;
    }
    if (b->step == ST_HOLD || b->step == ST_EXTRA) {
        /* A hold this request made exists by now at the latest: the server has been seen to
         * run a stalled request only when the crowd closed its connection, i.e. now. */
        int64_t end_ms = fg_clock_now_ms() + (int64_t)c->o->hold_ttl_s * 1000;
        if (end_ms > c->holds_end_ms) c->holds_end_ms = end_ms;
    }
    json_t *j = a->body_len > 0 ? json_loadb(a->body, a->body_len, 0, NULL) : NULL;
    const char *code = answer_code(a, j);
    fgc_tally_add(&c->tally, tally_step(b->step), a->status, code, a->latency_ns);
    if (a->status == 0 && a->error == fgc__why_in_flight) { /* sent; its answer was cut off */
        if (b->step == ST_HOLD || b->step == ST_ORDER || b->step == ST_EXTRA) b->flags |= F_UNKNOWN;
        c->n_.stopped++;
        finish(c, b);
        json_decref(j);
        return;
    }
    if (a->status == 0 || a->status >= 500) c->n_.errors++;
    switch (b->step) {
    case ST_REGISTER: on_register(c, tag, a, j, code); break;
    case ST_HOLD: on_hold(c, tag, a, j, code); break;
    case ST_ORDER: on_order(c, tag, a, j, code); break;
    case ST_REPLAY: on_replay(c, tag, a, j, code); break;
    case ST_EXTRA: on_extra(c, tag, a, j, code); break;
    default: FG_ASSERT(!"an answer for a buyer with no request");
    }
    json_decref(j);
}

int fgc_crowd_record_unordered(const fgc_crowd_t *c, fgc_record_t *r) {
    for (uint32_t i = 0; i < c->n; i++) {
        const fgc_buyer_t *b = &c->buyers[i];
        if (b->hold_id == 0 || b->order_id != 0 || b->kind == K_ABANDON) continue;
        fgc_told_hold_t h = {.hold_id = b->hold_id, .buyer_id = b->id};
        memcpy(h.secret, b->secret, sizeof h.secret);
        if (fgc_record_unordered(r, &h) != 0) return -1;
    }
    return 0;
}

void fgc__crowd_client(fgc_crowd_t *c) {
    c->client =
        (fgc_client_t){.write = crowd_write, .done = crowd_done, .timer = crowd_timer, .ctx = c};
}
