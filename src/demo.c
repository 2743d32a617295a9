/*
 * demo.c — seeds the demo: the Nova X phone in two variants, offered in IN, DE, FR, ES, IT, GB,
 * ID and BR and blocked in the US ("not certified"); a case and a charger offered in the US too;
 * a sale of 10,000 phones (and 2,000 cases) that opens a minute after start.
 *
 * It builds the objects through a scratch engine, so they pass the same checks as the API's,
 * and commits the engine's change records to the ledger in one transaction.
 */
#include "demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "util/check.h"

typedef struct {
    const char *code, *name, *currency;
    int64_t phone_minor, case_minor, charger_minor;
} demo_market_t;

static const demo_market_t markets[] = {
    {"IN", "India", "INR", 8999900, 149900, 199900},
    {"DE", "Germany", "EUR", 99900, 2900, 3900},
    {"FR", "France", "EUR", 99900, 2900, 3900},
    {"ES", "Spain", "EUR", 99900, 2900, 3900},
    {"IT", "Italy", "EUR", 99900, 2900, 3900},
    {"GB", "United Kingdom", "GBP", 89900, 2500, 3500},
    {"ID", "Indonesia", "IDR", 1599900000, 39900000, 49900000},
    {"BR", "Brazil", "BRL", 799900, 19900, 24900},
    {"US", "United States", "USD", 0, 2900, 3900},
};
#define N_MARKETS (sizeof markets / sizeof markets[0])

/* gcc 12's analyzer drops what it knows of p.skus[] below each time an element at a computed
 * index is written, so the strings already stored there look leaked; fg_product_free or the
 * engine frees them. */
FG_ANALYZER_OFF("-Wanalyzer-malloc-leak")
static bool sku(fg_sku_t *s, const char *id, const char *name, const char *attrs) {
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->attributes_json = strdup(attrs);
    return s->attributes_json != NULL;
}

static fg_err_t put_product(fg_engine_t *e, const char *id, const char *name, const char *specs,
                            int n, const char *const *skus) {
    fg_product_t p = {0};
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.name, sizeof p.name, "%s", name);
    p.specs_json = strdup(specs);
    p.skus = calloc((size_t)n, sizeof *p.skus);
    if (p.specs_json == NULL || p.skus == NULL) {
        free(p.specs_json);
        free(p.skus);
        return FG_ERR_CAPACITY;
    }
    p.sku_count = n;
    bool copied = true;
    for (int i = 0; i < n; i++)
        copied &= sku(&p.skus[i], skus[3 * i], skus[3 * i + 1], skus[3 * i + 2]);
    bool created;
    fg_err_t err = copied ? fg_engine_product_put(e, &p, &created) : FG_ERR_CAPACITY;
    if (err != FG_OK) fg_product_free(&p);
    return err;
}
FG_ANALYZER_ON

static fg_err_t put_offer(fg_engine_t *e, const char *sku_id, const char *market, int64_t price,
                          const char *blocked) {
    fg_offer_t o = {0};
    snprintf(o.sku, sizeof o.sku, "%s", sku_id);
    memcpy(o.market, market, 3);
    o.blocked = blocked != NULL;
    o.price_minor = price;
    if (blocked) snprintf(o.reason, sizeof o.reason, "%s", blocked);
    bool created;
    return fg_engine_offer_put(e, &o, &created);
}

static fg_err_t build_catalog(fg_engine_t *e) {
    static const char *const phones[] = {"nova-x-256-black",
                                         "Nova X 256 GB Obsidian Black",
                                         "{\"colour\":\"black\",\"storage_gb\":256}",
                                         "nova-x-512-silver",
                                         "Nova X 512 GB Glacier Silver",
                                         "{\"colour\":\"silver\",\"storage_gb\":512}"};
    static const char *const cases[] = {"nova-x-case", "Nova X Clear Case",
                                        "{\"material\":\"TPU\"}"};
    static const char *const chargers[] = {"nova-charger-65w", "65 W USB-C Charger",
                                           "{\"watts\":65}"};
    fg_err_t err = FG_OK;
    for (size_t i = 0; i < N_MARKETS && err == FG_OK; i++) {
        fg_market_t m = {0};
        memcpy(m.code, markets[i].code, 3);
        snprintf(m.name, sizeof m.name, "%s", markets[i].name);
        memcpy(m.currency, markets[i].currency, 4);
        bool created;
        err = fg_engine_market_put(e, &m, &created);
    }
    if (err == FG_OK)
        err =
            put_product(e, "nova-x", "Nova X",
                        "{\"display\":\"6.7 in OLED 120 Hz\",\"chip\":\"N3\",\"battery_mah\":5000,"
                        "\"camera_mp\":50,\"5g\":true}",
                        2, phones);
    if (err == FG_OK) err = put_product(e, "nova-x-case", "Nova X Case", "{}", 1, cases);
    if (err == FG_OK) err = put_product(e, "nova-charger", "Nova Charger", "{}", 1, chargers);
    for (size_t i = 0; i < N_MARKETS && err == FG_OK; i++) {
        const demo_market_t *m = &markets[i];
        bool us = strcmp(m->code, "US") == 0;
        const char *why = us ? "not certified" : NULL;
        err = put_offer(e, "nova-x-256-black", m->code, m->phone_minor, why);
        if (err == FG_OK)
            err = put_offer(e, "nova-x-512-silver", m->code, m->phone_minor + m->phone_minor / 10,
                            why);
        if (err == FG_OK) err = put_offer(e, "nova-x-case", m->code, m->case_minor, NULL);
        if (err == FG_OK) err = put_offer(e, "nova-charger-65w", m->code, m->charger_minor, NULL);
    }
    return err;
}

static fg_err_t build_sale(fg_engine_t *e, int64_t now_ms) {
    fg_sale_row_t *d = calloc(1, sizeof *d);
    if (d == NULL) return FG_ERR_CAPACITY;
    snprintf(d->id, sizeof d->id, FG_DEMO_SALE_ID);
    snprintf(d->name, sizeof d->name, "Nova X launch");
    d->opens_at_ms = now_ms + FG_DEMO_OPENS_IN_MS;
    d->closes_at_ms = 0;
    d->limit_per_buyer = 1;
    d->hold_ttl_s = 120;
    const char *skus[] = {"nova-x-256-black", "nova-x-512-silver", "nova-x-case"};
    const int64_t stock[] = {6000, 4000, 2000};
    for (int i = 0; i < 3; i++) {
        fg_pool_def_t *p = &d->pools[i];
        snprintf(p->sku, sizeof p->sku, "%s", skus[i]);
        p->stock = stock[i];
        for (size_t k = 0; k < N_MARKETS; k++)
            if (i == 2 || strcmp(markets[k].code, "US") != 0)
                p->markets[p->market_count++] = fg_mcode(markets[k].code);
    }
    d->pool_count = 3;
    fg_err_t err = fg_engine_sale_create(e, d, now_ms);
    free(d);
    return err;
}

int fg_demo_seed(fg_ledger_t *l, int64_t now_ms, char *err, size_t errlen) {
    char seeded[8];
    int rc = fg_ledger_meta_get(l, "demo_seeded", seeded, sizeof seeded);
    if (rc != 0) {
        if (rc < 0) snprintf(err, errlen, "cannot read the ledger");
        return rc < 0 ? -1 : 0;
    }
    fg_engine_t *e = fg_engine_new();
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fg_err_t ferr = build_catalog(e);
    if (ferr == FG_OK) ferr = build_sale(e, now_ms);
    int status = -1;
    if (ferr != FG_OK) {
        snprintf(err, errlen, "%s", fg_engine_detail(e));
    } else {
        fg_change_t *ch = NULL;
        size_t n = fg_engine_take_changes(e, &ch);
        status = fg_ledger_commit(l, ch, n, err, errlen);
        for (size_t i = 0; i < n; i++)
            fg_change_release(&ch[i]);
        free(ch);
        if (status == 0) status = fg_ledger_meta_set(l, "demo_seeded", "1");
    }
    fg_engine_free(e);
    return status;
}
