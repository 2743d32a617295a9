/*
 * setup.c — catalog and sale through the operator API; see setup.h.
 */
#include "crowd/setup.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "crowd/call.h"
#include "util/buf.h"

const fgc_market_t fgc_markets[FGC_MARKET_COUNT] = {
    {"DE", "Germany", "EUR", 99900,
     "{\"name\":\"Ana Silva\",\"line1\":\"Hauptstr. 1\",\"line2\":\"\",\"city\":\"Berlin\","
     "\"postal_code\":\"10115\",\"country\":\"DE\"}"},
    {"FR", "France", "EUR", 99900,
     "{\"name\":\"Jean Dupont\",\"line1\":\"1 rue de Rivoli\",\"line2\":\"\",\"city\":\"Paris\","
     "\"postal_code\":\"75001\",\"country\":\"FR\"}"},
    {"IN", "India", "INR", 4999900,
     "{\"name\":\"Asha Rao\",\"line1\":\"12 MG Road\",\"line2\":\"\",\"city\":\"Bengaluru\","
     "\"postal_code\":\"560001\",\"country\":\"IN\"}"},
    {"US", "United States", "USD", 0,
     "{\"name\":\"Sam Lee\",\"line1\":\"1 Main St\",\"line2\":\"Apt 2\",\"city\":\"Austin\","
     "\"postal_code\":\"73301\",\"country\":\"US\"}"},
};

/* One operator call that must answer one of two statuses, retried while no answer comes (the
 * server may be restarting); -1 with the reason otherwise. */
static int admin(fgc_loop_t *l, int retries, const char *token, const char *method,
                 const char *path, const char *idem, const char *body, int ok1, int ok2, char *err,
                 size_t cap) {
    fgc_reply_t r;
    int rc = fgc_call_retry(l, retries, method, path, token, idem, body, &r);
    if (rc == 0 && (r.status == ok1 || r.status == ok2)) {
        fgc_reply_free(&r);
        return 0;
    }
    if (rc != 0)
        snprintf(err, cap, "%s %s: no answer (%s)", method, path, r.error);
    else
        snprintf(err, cap, "%s %s: %d %.300s", method, path, r.status, r.body);
    fgc_reply_free(&r);
    return -1;
}

int fgc_setup_ready(fgc_loop_t *l, int retries, char *err, size_t cap) {
    return admin(l, retries, NULL, "GET", "/readyz", NULL, NULL, 200, 200, err, cap);
}

/* Which of the crowd's markets exist already (GET /v1/markets). */
static int existing_markets(fgc_loop_t *l, int retries, bool have[FGC_MARKET_COUNT], char *err,
                            size_t cap) {
    fgc_reply_t r;
    if (fgc_call_retry(l, retries, "GET", "/v1/markets", NULL, NULL, NULL, &r) != 0 ||
        r.status != 200) {
        snprintf(err, cap, "GET /v1/markets: %d %.200s", r.status, r.body ? r.body : r.error);
        fgc_reply_free(&r);
        return -1;
    }
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *list = json_object_get(j, "markets");
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m) {
        const char *code = json_string_value(json_object_get(m, "code"));
        for (int k = 0; code && k < FGC_MARKET_COUNT; k++)
            if (strcmp(code, fgc_markets[k].code) == 0) have[k] = true;
    }
    json_decref(j);
    fgc_reply_free(&r);
    return 0;
}

static int product(fgc_loop_t *l, int retries, const char *token, char *err, size_t cap) {
    fgc_reply_t r;
    int rc = fgc_call_retry(l, retries, "GET", "/v1/products/" FGC_PRODUCT_ID "?market=DE", NULL,
                            NULL, NULL, &r);
    int status = r.status;
    fgc_reply_free(&r);
    if (rc == 0 && status == 200) return 0;
    static const char body[] =
        "{\"name\":\"Crowd "
        "phone\",\"specs\":{\"display\":\"6.1in\"},\"skus\":[{\"id\":\"" FGC_SKU_ID
        "\",\"name\":\"Crowd phone 128 GB black\",\"attributes\":{\"storage_gb\":128}}]}";
    return admin(l, retries, token, "PUT", "/admin/v1/products/" FGC_PRODUCT_ID, NULL, body, 201,
                 200, err, cap);
}

int fgc_setup_catalog(fgc_loop_t *l, int retries, const char *token, char *err, size_t cap) {
    bool have[FGC_MARKET_COUNT] = {false};
    if (existing_markets(l, retries, have, err, cap) != 0) return -1;
    char path[128], body[256];
    for (int k = 0; k < FGC_MARKET_COUNT; k++) {
        if (have[k]) continue;
        const fgc_market_t *m = &fgc_markets[k];
        snprintf(path, sizeof path, "/admin/v1/markets/%s", m->code);
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"currency\":\"%s\"}", m->name, m->currency);
        if (admin(l, retries, token, "PUT", path, NULL, body, 201, 200, err, cap) != 0) return -1;
    }
    if (product(l, retries, token, err, cap) != 0) return -1;
    for (int k = 0; k < FGC_MARKET_COUNT; k++) {
        const fgc_market_t *m = &fgc_markets[k];
        snprintf(path, sizeof path, "/admin/v1/skus/" FGC_SKU_ID "/offers/%s", m->code);
        if (k == FGC_MARKET_BLOCKED)
            snprintf(body, sizeof body, "{\"blocked\":\"not certified\"}");
        else
            snprintf(body, sizeof body, "{\"price_minor\":%lld}", (long long)m->price_minor);
        if (admin(l, retries, token, "PUT", path, NULL, body, 200, 200, err, cap) != 0) return -1;
    }
    return 0;
}

int fgc_setup_sale(fgc_loop_t *l, int retries, const char *token, const char *sale_id,
                   int64_t opens_at_ms, int64_t stock, int limit, int hold_ttl_s, const char *idem,
                   char *err, size_t cap) {
    fg_buf_t b;
    fg_buf_init(&b, 4096);
    fg_buf_printf(&b, "{\"id\":\"%s\",\"name\":\"floodgate-crowd run\",\"opens_at\":", sale_id);
    fg_buf_json_time(&b, opens_at_ms);
    fg_buf_printf(&b,
                  ",\"limit_per_buyer\":%d,\"hold_ttl_s\":%d,\"items\":[{\"sku\":\"" FGC_SKU_ID
                  "\",\"stock\":%lld,\"markets\":[",
                  limit, hold_ttl_s, (long long)stock);
    for (int k = 0; k < FGC_MARKET_COUNT; k++)
        fg_buf_printf(&b, "%s\"%s\"", k ? "," : "", fgc_markets[k].code);
    fg_buf_str(&b, "]}]}");
    FG_ASSERT(!b.overflow);
    int rc = admin(l, retries, token, "POST", "/admin/v1/sales", idem, b.data, 201, 201, err, cap);
    fg_buf_free(&b);
    return rc;
}
