/*
 * audit.c — the audit; see audit.h for what it checks.
 *
 * The export is read as a stream, one NDJSON line at a time (a line is at most
 * FGC_EXPORT_LINE_BYTES_MAX), so a sale of a million orders needs memory for the record and
 * one (buyer, units) pair per exported order, not for the export's text.
 */
#include "crowd/audit.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "crowd/call.h"
#include "crowd/http.h"
#include "crowd/ids.h"
#include "crowd/report.h"
#include "util/buf.h"
#include "util/clock.h"

typedef struct {
    uint32_t buyer_id;
    uint32_t units;
} pair_t;

typedef struct {
    FILE *out;
    fgc_record_t *rec;
    int retries; /* of a read that got no answer, a 5xx or a 429 */
    uint64_t violations;
    /* stats */
    int64_t stock, available, held, sold, orders_total;
    /* export */
    fg_buf_t line;
    uint64_t rows, paid_units, unacknowledged, found;
    pair_t *pairs;
    size_t pair_count, pair_cap;
    bool oom;
} audit_t;

static void violation(audit_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violation(audit_t *a, const char *fmt, ...) {
    if (a->violations++ >= FGC_VIOLATIONS_KEPT_MAX) return;
    char text[FGC_VIOLATION_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fprintf(a->out, "audit: violation: %s\n", text);
}

static const char *jstr(json_t *j, const char *key) {
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

static int order_cmp(const void *x, const void *y) {
    uint32_t a = ((const fgc_told_order_t *)x)->order_id,
             b = ((const fgc_told_order_t *)y)->order_id;
    return a < b ? -1 : a > b;
}

static fgc_told_order_t *told(audit_t *a, uint32_t order_id) {
    fgc_told_order_t key = {.order_id = order_id};
    return bsearch(&key, a->rec->orders, a->rec->order_count, sizeof key, order_cmp);
}

/* ---- waiting, stats ---------------------------------------------------------------------- */

static void wait_for_expiry(fgc_loop_t *l, const fgc_record_t *rec, FILE *out) {
    int64_t until_ms = rec->holds_end_ms + FGC_EXPIRY_MARGIN_MS;
    int64_t left_ms = until_ms - fg_clock_now_ms();
    if (left_ms <= 0) return;
    fprintf(out, "audit: waiting %.1f s for every hold's TTL to pass\n", (double)left_ms / 1000);
    fflush(out);
    /* Bounded: holds_end_ms is at most a TTL (<= 3600 s) after the last hold request ended. */
    int64_t steps = left_ms / FGC_LOOP_WAIT_MS_MAX + 2;
    for (int64_t i = 0; i < steps && fg_clock_now_ms() < until_ms; i++)
        if (fgc_loop_step(l, FGC_LOOP_WAIT_MS_MAX) != 0) break;
}

static bool stats_int(json_t *j, const char *key, int64_t *out) {
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v)) return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

static int read_stats(fgc_loop_t *l, const char *token, audit_t *a) {
    char path[160];
    snprintf(path, sizeof path, "/admin/v1/sales/%s/stats", a->rec->sale_id);
    fgc_reply_t r;
    int rc = fgc_call_retry(l, a->retries, "GET", path, token, NULL, NULL, &r);
    json_t *j = rc == 0 && r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
    bool ok = j && stats_int(j, "stock", &a->stock) && stats_int(j, "available", &a->available) &&
              stats_int(j, "held", &a->held) && stats_int(j, "sold", &a->sold) &&
              stats_int(j, "orders_total", &a->orders_total);
    if (!ok)
        fprintf(a->out, "audit: impossible: GET %s: %d %.200s\n", path, r.status,
                rc == 0 ? r.body : r.error);
    json_decref(j);
    fgc_reply_free(&r);
    return ok ? 0 : -1;
}

/* Units still held after every TTL: the expiry may lag by the server's tick, so the stats are
 * read again, once a second, for FGC_HELD_RECHECK_S_MAX seconds before it counts. */
static int recheck_held(fgc_loop_t *l, const char *token, audit_t *a) {
    fprintf(a->out, "audit: %lld units still held; reading the stats again for up to %d s\n",
            (long long)a->held, FGC_HELD_RECHECK_S_MAX);
    fflush(a->out);
    for (int i = 0; i < FGC_HELD_RECHECK_S_MAX && a->held != 0; i++) {
        int64_t until = fg_clock_mono_ns() + 1000000000LL;
        for (int k = 0; k < 1000 / FGC_LOOP_WAIT_MS_MAX + 1 && fg_clock_mono_ns() < until; k++)
            if (fgc_loop_step(l, FGC_LOOP_WAIT_MS_MAX) != 0) break;
        if (read_stats(l, token, a) != 0) return -1;
    }
    return 0;
}

/* ---- the export -------------------------------------------------------------------------- */

static void add_pair(audit_t *a, uint32_t buyer, uint32_t units) {
    if (a->pair_count == a->pair_cap) {
        size_t cap = a->pair_cap ? a->pair_cap * 2 : 4096;
        pair_t *p = realloc(a->pairs, cap * sizeof *p);
        if (p == NULL) {
            a->oom = true;
            return;
        }
        a->pairs = p;
        a->pair_cap = cap;
    }
    a->pairs[a->pair_count++] = (pair_t){buyer, units};
}

/* An exported order the crowd was told about: the two must agree. */
static void compare(audit_t *a, fgc_told_order_t *t, json_t *j, uint32_t hold, uint32_t buyer,
                    int64_t q) {
    if (t->seen) violation(a, "order o_%u appears twice in the export", (unsigned)t->order_id);
    t->seen = true;
    a->found++;
    if (hold != t->hold_id || buyer != t->buyer_id || strcmp(jstr(j, "sku"), a->rec->sku) != 0 ||
        strcmp(jstr(j, "market"), t->market) != 0 || q != t->quantity ||
        strcmp(jstr(j, "state"), "paid") != 0)
        violation(a,
                  "order o_%u differs: told h_%u b_%u %s %s x%u paid, export has %s %s %s %s "
                  "x%lld %s",
                  (unsigned)t->order_id, (unsigned)t->hold_id, (unsigned)t->buyer_id, a->rec->sku,
                  t->market, (unsigned)t->quantity, jstr(j, "hold_id"), jstr(j, "buyer_id"),
                  jstr(j, "sku"), jstr(j, "market"), (long long)q, jstr(j, "state"));
}

static void export_row(audit_t *a, json_t *j) {
    uint32_t oid = 0, hold = 0, buyer = 0;
    json_t *qv = json_object_get(j, "quantity");
    int64_t q = json_is_integer(qv) ? (int64_t)json_integer_value(qv) : -1;
    const char *id = jstr(j, "id"), *market = jstr(j, "market"), *state = jstr(j, "state");
    const char *country = jstr(json_object_get(j, "shipping"), "country");
    a->rows++;
    if (!fgc_id_parse(id, 'o', &oid) || !fgc_id_parse(jstr(j, "hold_id"), 'h', &hold) ||
        !fgc_id_parse(jstr(j, "buyer_id"), 'b', &buyer) || q < 1) {
        violation(a, "export row %llu is not a well-formed order", (unsigned long long)a->rows);
        return;
    }
    if (strcmp(jstr(j, "sale_id"), a->rec->sale_id) != 0)
        violation(a, "order %s in the export belongs to sale %s", id, jstr(j, "sale_id"));
    if (strcmp(market, a->rec->blocked) == 0)
        violation(a, "order %s ships to %s, where %s is not offered", id, market, a->rec->sku);
    if (strcmp(country, market) != 0)
        violation(a, "order %s of market %s ships to country %s", id, market, country);
    if (strcmp(state, "paid") == 0) a->paid_units += (uint64_t)q;
    if (strcmp(state, "cancelled") != 0) add_pair(a, buyer, (uint32_t)q);
    fgc_told_order_t *t = told(a, oid);
    if (t != NULL)
        compare(a, t, j, hold, buyer, q);
    else
        a->unacknowledged++;
}

static void export_line(audit_t *a, const char *s, size_t n) {
    if (n == 0) return;
    json_t *j = json_loadb(s, n, 0, NULL);
    if (!json_is_object(j))
        violation(a, "export row %llu is not JSON", (unsigned long long)a->rows + 1);
    else
        export_row(a, j);
    json_decref(j);
}

static bool export_sink(void *ctx, const char *p, size_t n) {
    audit_t *a = ctx;
    for (const char *end = p + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fg_buf_add(&a->line, p, take);
        if (a->line.overflow) return false;
        p += take;
        if (nl == NULL) break;
        export_line(a, a->line.data ? a->line.data : "", a->line.len);
        fg_buf_reset(&a->line);
        p++;
    }
    return true;
}

static int read_export(fgc_loop_t *l, const char *token, audit_t *a) {
    char path[160];
    snprintf(path, sizeof path, "/admin/v1/sales/%s/orders?format=ndjson", a->rec->sale_id);
    fg_buf_init(&a->line, FGC_EXPORT_LINE_BYTES_MAX);
    fgc_reply_t r;
    int rc = fgc_call_stream(l, path, token, export_sink, a, &r);
    if (rc == 0 && r.status == 200 && a->line.len > 0) /* a last line without its newline */
        export_line(a, a->line.data, a->line.len);
    fg_buf_free(&a->line);
    bool ok = rc == 0 && r.status == 200 && !a->oom;
    if (!ok)
        fprintf(a->out, "audit: impossible: GET %s: %s\n", path,
                rc != 0  ? r.error
                : a->oom ? "out of memory"
                         : "not 200");
    fgc_reply_free(&r);
    return ok ? 0 : -1;
}

/* ---- checks over the whole ---------------------------------------------------------------- */

static int pair_cmp(const void *x, const void *y) {
    uint32_t a = ((const pair_t *)x)->buyer_id, b = ((const pair_t *)y)->buyer_id;
    return a < b ? -1 : a > b;
}

static void check_limits(audit_t *a) {
    qsort(a->pairs, a->pair_count, sizeof *a->pairs, pair_cmp);
    for (size_t i = 0; i < a->pair_count;) {
        uint64_t units = 0;
        size_t k = i;
        for (; k < a->pair_count && a->pairs[k].buyer_id == a->pairs[i].buyer_id; k++)
            units += a->pairs[k].units;
        if (units > (uint64_t)a->rec->limit)
            violation(a, "buyer b_%u has %llu units in orders, over the limit of %d",
                      (unsigned)a->pairs[i].buyer_id, (unsigned long long)units, a->rec->limit);
        i = k;
    }
}

static void check_totals(audit_t *a) {
    const fgc_record_t *r = a->rec;
    for (size_t i = 0; i < r->order_count; i++)
        if (!r->orders[i].seen)
            violation(a,
                      "order o_%u (hold h_%u, buyer b_%u) was acknowledged with 201 but is "
                      "not in the export",
                      (unsigned)r->orders[i].order_id, (unsigned)r->orders[i].hold_id,
                      (unsigned)r->orders[i].buyer_id);
    if (a->unacknowledged > r->unknown)
        violation(a,
                  "%llu orders in the export were never acknowledged to the crowd, but only "
                  "%llu requests went unanswered",
                  (unsigned long long)a->unacknowledged, (unsigned long long)r->unknown);
    if (a->stock != r->stock)
        violation(a, "stats stock %lld, the sale was created with %lld", (long long)a->stock,
                  (long long)r->stock);
    if (a->paid_units > (uint64_t)r->stock)
        violation(a, "oversold: %llu paid units of %lld in stock",
                  (unsigned long long)a->paid_units, (long long)r->stock);
    if (a->sold + a->held + a->available != a->stock)
        violation(a, "stats sold %lld + held %lld + available %lld != stock %lld",
                  (long long)a->sold, (long long)a->held, (long long)a->available,
                  (long long)a->stock);
    if ((uint64_t)a->sold != a->paid_units)
        violation(a, "stats sold %lld, the export has %llu paid units", (long long)a->sold,
                  (unsigned long long)a->paid_units);
    if ((int64_t)a->rows != a->orders_total)
        violation(a, "the export has %llu orders, stats orders_total %lld",
                  (unsigned long long)a->rows, (long long)a->orders_total);
    if (a->held != 0)
        violation(a, "%lld units still held after every hold's TTL passed", (long long)a->held);
    if (a->available != a->stock - a->sold - a->held)
        violation(
            a, "available %lld != stock %lld - sold %lld - held %lld: units did not come back",
            (long long)a->available, (long long)a->stock, (long long)a->sold, (long long)a->held);
}

/* ---- acknowledged holds ------------------------------------------------------------------ */

enum { H_PENDING, H_EXPIRED, H_ORDERED, H_WRONG, H_NO_ANSWER };

typedef struct {
    audit_t *a;
    fgc_loop_t *loop;
    const fgc_told_hold_t *list; /* the record's abandoned or unordered holds */
    size_t count;
    const char *kind;    /* "abandoned", "unordered": for the messages */
    bool may_be_ordered; /* an unordered hold's order may have gone through unanswered */
    uint8_t *result;     /* H_* per hold of the list */
    size_t pending;
    int why_status;    /* of the last hold without an answer: its status (0: none came) */
    const char *why;   /* and why none came (static text), for the message */
    int retry_after_s; /* the longest Retry-After of the pass, -1 when none */
} holds_t;

static void hold_write(void *ctx, uint32_t tag, fg_buf_t *out) {
    holds_t *h = ctx;
    const fgc_told_hold_t *t = &h->list[tag];
    char path[64], token[FGC_TOKEN_TEXT_BYTES_MAX];
    snprintf(path, sizeof path, "/v1/holds/h_%u", (unsigned)t->hold_id);
    fgc_token_format(t->buyer_id, t->secret, token, sizeof token);
    fgc_http_request(out, "GET", fgc_loop_host(h->loop), path, token, NULL, NULL, 0);
}

static void hold_done(void *ctx, uint32_t tag, const fgc_answer_t *ans) {
    holds_t *h = ctx;
    const fgc_told_hold_t *t = &h->list[tag];
    FG_ASSERT(h->pending > 0);
    h->pending--;
    if (ans->status == 0 || ans->status >= 500 || ans->status == 429) { /* read it again */
        h->result[tag] = H_NO_ANSWER;
        h->why_status = ans->status;
        h->why = ans->status == 0 ? (ans->timed_out ? "timeout" : ans->error) : "";
        if (ans->retry_after_s > h->retry_after_s) h->retry_after_s = ans->retry_after_s;
        return;
    }
    json_t *j = json_loadb(ans->body, ans->body_len, 0, NULL);
    const char *state = jstr(j, "state");
    if (ans->status == 200 && strcmp(state, "expired") == 0) {
        h->result[tag] = H_EXPIRED;
    } else if (ans->status == 200 && h->may_be_ordered && strcmp(state, "ordered") == 0) {
        h->result[tag] = H_ORDERED;
    } else {
        h->result[tag] = H_WRONG;
        violation(h->a, "%s hold h_%u of buyer b_%u: %d %s, expected expired%s", h->kind,
                  (unsigned)t->hold_id, (unsigned)t->buyer_id, ans->status,
                  ans->status == 200 ? state : jstr(j, "code"),
                  h->may_be_ordered ? " or ordered" : "");
    }
    json_decref(j);
}

/* One pass over the holds still H_PENDING or H_NO_ANSWER; returns how many have no answer. */
static size_t holds_pass(holds_t *h) {
    fgc_client_t client = {.write = hold_write, .done = hold_done, .ctx = h};
    h->retry_after_s = -1;
    for (size_t i = 0; i < h->count; i++) {
        if (h->result[i] != H_PENDING && h->result[i] != H_NO_ANSWER) continue;
        h->result[i] = H_PENDING;
        if (fgc_loop_submit(h->loop, &client, (uint32_t)i, 0, 0) == 0)
            h->pending++;
        else
            h->result[i] = H_NO_ANSWER;
    }
    /* Bounded: the loop's timeout ends each request; this deadline ends the pass regardless. */
    int64_t until = fg_clock_mono_ns() + ((int64_t)FGC_AUDIT_CALL_MS + (int64_t)h->count) * 1000000;
    while (h->pending > 0 && fg_clock_mono_ns() < until)
        if (fgc_loop_step(h->loop, FGC_LOOP_WAIT_MS_MAX) != 0) break;
    fgc_loop_abort_all(h->loop, "the audit gave up waiting"); /* `client` dies with this frame */
    size_t failed = 0;
    for (size_t i = 0; i < h->count; i++)
        failed += h->result[i] == H_NO_ANSWER;
    return failed;
}

/* Reads every hold of `h->list` with its buyer's token, the ones without an answer again up to
 * `retries` times (a server shedding load answers 503 with Retry-After); counts[] gets the H_*
 * tallies. */
static int check_holds(holds_t *h, int retries, uint64_t counts[H_NO_ANSWER + 1]) {
    memset(counts, 0, sizeof(uint64_t) * (H_NO_ANSWER + 1));
    if (h->count == 0) return 0;
    h->result = calloc(h->count, 1);
    if (h->result == NULL) {
        fprintf(h->a->out, "audit: impossible: out of memory\n");
        return -1;
    }
    size_t failed = holds_pass(h);
    for (int i = 0; failed > 0 && i < retries; i++) {
        int s = h->retry_after_s < FGC_RETRY_AFTER_S_MAX ? h->retry_after_s : FGC_RETRY_AFTER_S_MAX;
        fgc_loop_pause(h->loop, s >= 0 ? (int64_t)s * 1000 : fgc_backoff_ms(i));
        failed = holds_pass(h);
    }
    for (size_t i = 0; i < h->count; i++)
        counts[h->result[i]]++;
    free(h->result);
    h->result = NULL;
    if (failed > 0) {
        const char *why = h->why != NULL && h->why[0] != '\0' ? h->why : "an error answer";
        fprintf(h->a->out, "audit: impossible: %zu %s holds could not be read (the last: %d, %s)\n",
                failed, h->kind, h->why_status, why);
        return -1;
    }
    return 0;
}

/* Abandoned holds must have expired; the other acknowledged holds without an acknowledged
 * order must exist (I3): expired, or ordered by an order whose answer was lost. */
static int check_acknowledged_holds(fgc_loop_t *l, audit_t *a, uint64_t abandoned[],
                                    uint64_t unordered[]) {
    const fgc_record_t *r = a->rec;
    holds_t h = {
        .a = a, .loop = l, .list = r->abandoned, .count = r->abandoned_count, .kind = "abandoned"};
    if (check_holds(&h, a->retries, abandoned) != 0) return -1;
    h = (holds_t){.a = a,
                  .loop = l,
                  .list = r->unordered,
                  .count = r->unordered_count,
                  .kind = "unordered",
                  .may_be_ordered = true};
    return check_holds(&h, a->retries, unordered);
}

/* ---- the audit --------------------------------------------------------------------------- */

static void report(audit_t *a, const uint64_t abandoned[], const uint64_t unordered[]) {
    const fgc_record_t *r = a->rec;
    char n1[32], n2[32], n3[32], n4[32], n5[32], n6[32], n7[32], n8[32], n9[32], n10[32];
    fprintf(a->out,
            "audit: sale %s: %s orders told, %s exported (%s unacknowledged, %s "
            "requests unanswered); %s of %s units paid; %s abandoned holds expired\n",
            r->sale_id, fgc_fmt_count(r->order_count, n1), fgc_fmt_count(a->rows, n2),
            fgc_fmt_count(a->unacknowledged, n3), fgc_fmt_count(r->unknown, n4),
            fgc_fmt_count(a->paid_units, n5), fgc_fmt_count((uint64_t)r->stock, n6),
            fgc_fmt_count(abandoned[H_EXPIRED], n7));
    if (r->unordered_count > 0)
        fprintf(a->out,
                "audit: %s other acknowledged holds without an acknowledged order: %s expired, "
                "%s ordered (the order's answer was lost)\n",
                fgc_fmt_count(r->unordered_count, n8), fgc_fmt_count(unordered[H_EXPIRED], n9),
                fgc_fmt_count(unordered[H_ORDERED], n10));
    for (size_t i = 0; i < r->observed_count; i++)
        violation(a, "seen by the crowd: %s", r->observed[i]);
    a->violations += r->observed_total - r->observed_count;
    if (a->violations > FGC_VIOLATIONS_KEPT_MAX)
        fprintf(a->out, "audit: ... and %llu more violations\n",
                (unsigned long long)(a->violations - FGC_VIOLATIONS_KEPT_MAX));
    if (a->violations == 0)
        fprintf(a->out, "audit: ok\n");
    else
        fprintf(a->out, "audit: %llu violations\n", (unsigned long long)a->violations);
    fflush(a->out);
}

int fgc_audit_run(fgc_loop_t *l, const char *admin_token, int retries, fgc_record_t *rec,
                  FILE *out) {
    FG_ASSERT(fgc_loop_queued(l) == 0 && fgc_loop_inflight(l) == 0);
    FG_ASSERT(retries >= 0 && retries <= FGC_RETRIES_MAX);
    audit_t a = {.out = out, .rec = rec, .retries = retries};
    qsort(rec->orders, rec->order_count, sizeof *rec->orders, order_cmp);
    for (size_t i = 1; i < rec->order_count; i++)
        if (rec->orders[i].order_id == rec->orders[i - 1].order_id)
            violation(&a, "order o_%u was acknowledged twice", (unsigned)rec->orders[i].order_id);
    wait_for_expiry(l, rec, out);
    uint64_t abandoned[H_NO_ANSWER + 1] = {0}, unordered[H_NO_ANSWER + 1] = {0};
    int rc = check_acknowledged_holds(l, &a, abandoned, unordered);
    if (rc == 0) rc = read_stats(l, admin_token, &a);
    if (rc == 0 && a.held != 0) rc = recheck_held(l, admin_token, &a);
    if (rc == 0) rc = read_export(l, admin_token, &a);
    if (rc != 0) {
        free(a.pairs);
        fflush(out);
        return FGC_AUDIT_IMPOSSIBLE;
    }
    check_limits(&a);
    check_totals(&a);
    free(a.pairs);
    report(&a, abandoned, unordered);
    return a.violations == 0 ? FGC_AUDIT_OK : FGC_AUDIT_VIOLATION;
}
