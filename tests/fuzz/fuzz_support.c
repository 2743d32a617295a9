/*
 * fuzz_support.c — the fuzz world, scratch directories and answer checks; see fuzz_support.h.
 */
#include "fuzz_support.h"

#include <dirent.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"

#define FZ_SCRATCH_DIRS_MAX 4 /* per process: a target uses two */
#define FZ_HOUR_MS          (3600LL * 1000)
#define FZ_DAY_MS           (24 * FZ_HOUR_MS)
#define FZ_HOLD_TTL_S       120   /* of every sale of the world */
#define FZ_EXPIRED_AGO_MS   60000 /* how long ago the expired holds h_5 and h_6 ran out */

/* ---------------------------------------------------------------- scratch directories */

static char scratch[FZ_SCRATCH_DIRS_MAX][256];
static int scratch_count;

/* Removes a directory and the files in it (the ledger, its -wal and -shm). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *ent;
    char path[512];
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void remove_scratch(void) {
    for (int i = 0; i < scratch_count; i++)
        remove_dir(scratch[i]);
}

const char *fz_scratch_dir(const char *tag) {
    if (scratch_count == FZ_SCRATCH_DIRS_MAX) fz_fail("more than %d scratch dirs", scratch_count);
    const char *tmp = getenv("TMPDIR");
    char *dir = scratch[scratch_count];
    snprintf(dir, sizeof scratch[0], "%s/fg-fuzz-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    if (mkdtemp(dir) == NULL) fz_fail("cannot make a scratch directory like %s", dir);
    if (scratch_count++ == 0) atexit(remove_scratch);
    return dir;
}

/* ---------------------------------------------------------------- answers */

void fz_check_answer(const char *what, int status, const char *code, const char *content_type,
                     const char *body) {
    if (status < 100 || status > 599) fz_fail("%s: status %d", what, status);
    if (body == NULL) fz_fail("%s: status %d without a body", what, status);
    if (content_type != NULL && strstr(content_type, "json") == NULL) return;
    json_error_t jerr;
    json_t *v = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(v))
        fz_fail("%s: status %d, the body is not a JSON object (%s): %.400s", what, status,
                v ? "not an object" : jerr.text, body);
    if (code != NULL) {
        const char *got = json_string_value(json_object_get(v, "code"));
        json_int_t st = json_integer_value(json_object_get(v, "status"));
        if (status < 400 || got == NULL || strcmp(got, code) != 0 || st != status)
            fz_fail("%s: problem %d %s has code %s and status %lld in its body: %.400s", what,
                    status, code, got ? got : "(none)", (long long)st, body);
    }
    json_decref(v);
}

/* ---------------------------------------------------------------- the world */

static void must(const fg_engine_t *e, fg_err_t err, const char *step) {
    if (err != FG_OK) fz_fail("the fuzz world: %s refused: %s", step, fg_engine_detail(e));
}

static void market(fg_engine_t *e, const char *code, const char *name, const char *currency) {
    fg_market_t m = {0};
    snprintf(m.code, sizeof m.code, "%s", code);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.currency, sizeof m.currency, "%s", currency);
    bool created;
    must(e, fg_engine_market_put(e, &m, &created), "market");
}

/* A product with heap strings, as the API builds one; the engine takes it over. */
static void product(fg_engine_t *e, const char *id, const char *name, int n,
                    const char *const *skus) {
    fg_product_t p = {0};
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.name, sizeof p.name, "%s", name);
    p.specs_json = strdup("{\"display\":\"6.5in\",\"weight_g\":190}");
    p.skus = calloc((size_t)n, sizeof *p.skus);
    if (p.specs_json == NULL || p.skus == NULL) fz_fail("out of memory");
    p.sku_count = n;
    for (int i = 0; i < n; i++) {
        snprintf(p.skus[i].id, sizeof p.skus[i].id, "%s", skus[i]);
        snprintf(p.skus[i].name, sizeof p.skus[i].name, "%s", skus[i]);
        p.skus[i].attributes_json = strdup("{\"storage_gb\":256}");
        if (p.skus[i].attributes_json == NULL) fz_fail("out of memory");
    }
    bool created;
    must(e, fg_engine_product_put(e, &p, &created), "product");
}

/* price_minor < 0: blocked with `reason`. */
static void offer(fg_engine_t *e, const char *sku, const char *market_code, int64_t price_minor,
                  const char *reason) {
    fg_offer_t o = {0};
    snprintf(o.sku, sizeof o.sku, "%s", sku);
    snprintf(o.market, sizeof o.market, "%s", market_code);
    o.blocked = price_minor < 0;
    o.price_minor = o.blocked ? 0 : price_minor;
    snprintf(o.reason, sizeof o.reason, "%s", o.blocked ? reason : "");
    bool created;
    must(e, fg_engine_offer_put(e, &o, &created), "offer");
}

typedef struct {
    const char *sku;
    int64_t stock;
    const char *markets; /* "DE,FR" */
} pool_spec_t;

static void sale(fg_engine_t *e, const char *id, int64_t opens_at_ms, int64_t closes_at_ms, int n,
                 const pool_spec_t *pools, int64_t now_ms) {
    fg_sale_row_t *d = calloc(1, sizeof *d); /* 100 KiB: not on the stack */
    if (d == NULL) fz_fail("out of memory");
    snprintf(d->id, sizeof d->id, "%s", id);
    snprintf(d->name, sizeof d->name, "Sale %s", id);
    d->opens_at_ms = opens_at_ms;
    d->closes_at_ms = closes_at_ms;
    d->limit_per_buyer = 4;
    d->hold_ttl_s = FZ_HOLD_TTL_S;
    d->created_at_ms = now_ms;
    d->pool_count = n;
    for (int i = 0; i < n; i++) {
        snprintf(d->pools[i].sku, sizeof d->pools[i].sku, "%s", pools[i].sku);
        d->pools[i].stock = pools[i].stock;
        for (const char *m = pools[i].markets; *m; m += m[2] ? 3 : 2)
            d->pools[i].markets[d->pools[i].market_count++] = fg_mcode(m);
    }
    must(e, fg_engine_sale_create(e, d, now_ms), "sale");
    free(d);
}

static void buyer(fg_engine_t *e, const char *email, const char *market_code, const char *secret,
                  int64_t now_ms) {
    uint8_t hash[32];
    crypto_generichash(hash, sizeof hash, (const unsigned char *)secret, strlen(secret), NULL, 0);
    uint64_t id;
    must(e, fg_engine_buyer_register(e, email, market_code, hash, now_ms, &id), "buyer");
}

static uint64_t hold(fg_engine_t *e, uint64_t buyer_id, const char *sku, const char *market_code,
                     int64_t now_ms) {
    const fg_hold_t *h = NULL;
    must(e, fg_engine_hold(e, buyer_id, "launch", sku, fg_mcode(market_code), 1, now_ms, &h),
         "hold");
    return h->id;
}

/* An order of the hold, shipped to the hold's market, as parse_shipping in holds.c writes it. */
static void order(fg_engine_t *e, uint64_t buyer_id, uint64_t hold_id, const char *country,
                  fg_pay_method_t method, int64_t now_ms) {
    char shipping[256];
    snprintf(shipping, sizeof shipping,
             "{\"name\":\"Ana\",\"line1\":\"Hauptstr. 1\",\"line2\":\"\",\"city\":\"Berlin\","
             "\"postal_code\":\"10115\",\"country\":\"%s\"}",
             country);
    const fg_order_t *o = NULL;
    must(e, fg_engine_order(e, buyer_id, hold_id, shipping, country, method, now_ms, &o), "order");
}

/* Stores an answer for buyer 1's POST of FZ_REPLAY_BODY to /v1/sales/launch/holds, keyed and
 * fingerprinted by the API's own fg__idem, so a request the fuzzer sends can match it. */
static void stored_answer(fg_engine_t *e, const char *key, bool committed, int64_t now_ms) {
    fg_api_request_t rq = {.method = FG_POST,
                           .path = "/v1/sales/launch/holds",
                           .query = "",
                           .idempotency_key = key,
                           .body = FZ_REPLAY_BODY,
                           .body_len = strlen(FZ_REPLAY_BODY)};
    fg_cmd_t cmd = {0};
    fg_api_answer_t ans = {0};
    if (!fg__idem(&rq, &cmd, 1, &ans)) fz_fail("the fuzz world: key %s refused", key);
    const fg_idem_row_t *rec = NULL;
    must(e,
         fg_engine_idem_store(e, cmd.idem_scope, cmd.idem_key, cmd.fingerprint, 201,
                              "{\"id\":\"h_1\",\"sku\":\"nova-x-black\",\"quantity\":1,"
                              "\"state\":\"held\"}",
                              now_ms, &rec),
         "stored answer");
    if (committed) fg_engine_idem_committed(e, rec);
}

static void catalog(fg_engine_t *e) {
    static const char *const phone[] = {"nova-x-black", "nova-x-white"};
    static const char *const cases[] = {"nova-case-1"};
    market(e, "DE", "Germany", "EUR");
    market(e, "FR", "France", "EUR");
    market(e, "IN", "India", "INR");
    market(e, "US", "United States", "USD");
    product(e, "nova-x", "Nova X", 2, phone);
    product(e, "nova-case", "Nova case", 1, cases);
    offer(e, "nova-x-black", "DE", 49999, NULL);
    offer(e, "nova-x-black", "FR", 49999, NULL);
    offer(e, "nova-x-black", "IN", 3999900, NULL);
    offer(e, "nova-x-black", "US", -1, "not certified");
    offer(e, "nova-x-white", "DE", 52999, NULL);
    offer(e, "nova-case-1", "DE", 1999, NULL);
    offer(e, "nova-case-1", "US", 1999, NULL);
}

fg_engine_t *fz_world_new(int64_t now_ms) {
    static const pool_spec_t launch[] = {{"nova-x-black", 10, "DE,FR"},
                                         {"nova-x-black", 5, "IN"},
                                         {"nova-x-white", 2, "DE"},
                                         {"nova-case-1", 3, "US,DE"}};
    static const pool_spec_t later[] = {{"nova-x-black", 5, "DE"}};
    static const pool_spec_t ended[] = {{"nova-case-1", 3, "DE"}};
    fg_engine_t *e = fg_engine_new();
    if (e == NULL) fz_fail("out of memory");
    catalog(e);
    sale(e, "launch", now_ms - FZ_HOUR_MS, 0, 4, launch, now_ms);
    sale(e, "later", now_ms + FZ_DAY_MS, 0, 1, later, now_ms);
    sale(e, "ended", now_ms - 2 * FZ_DAY_MS, now_ms - FZ_DAY_MS, 1, ended, now_ms);
    buyer(e, "ana@example.com", "DE", FZ_BUYER1_SECRET, now_ms);
    buyer(e, "bo@example.com", "US", FZ_BUYER2_SECRET, now_ms);
    hold(e, 1, "nova-x-black", "DE", now_ms);
    order(e, 1, hold(e, 1, "nova-x-black", "DE", now_ms), "DE", FG_PAY_WEBHOOK, now_ms);
    order(e, 1, hold(e, 1, "nova-x-white", "DE", now_ms), "DE", FG_PAY_INSTANT, now_ms);
    hold(e, 2, "nova-case-1", "US", now_ms);
    /* Placed longer ago than the hold time: the writer's next tick ends them. */
    int64_t past_ms = now_ms - FZ_HOLD_TTL_S * 1000 - FZ_EXPIRED_AGO_MS;
    hold(e, 2, "nova-case-1", "US", past_ms);
    order(e, 2, hold(e, 2, "nova-case-1", "US", past_ms), "US", FG_PAY_WEBHOOK, past_ms);
    stored_answer(e, FZ_REPLAY_KEY, true, now_ms);
    stored_answer(e, FZ_INFLIGHT_KEY, false, now_ms);
    fg_engine_check(e);
    return e;
}
