/*
 * test_ledger.c — unit tests of the SQLite ledger (src/ledger/ledger.c): schema and migrations,
 * the batch commit and its atomicity, the checked read-back at start, meta, and the export.
 *
 * Each test runs in its own process (Criterion) in a fresh directory under /tmp that is removed
 * afterwards. Damaged databases are made by writing to the file with SQLite directly, the way a
 * bad disk, a bad restore or a bad hand edit would.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger/ledger.h"

/* ---------------------------------------------------------------- fixture */

static char g_dir[64];

static void dir_setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/fg_ledger_XXXXXX");
    cr_assert(ne(ptr, mkdtemp(g_dir), NULL), "mkdtemp: %s", strerror(errno));
}

static void dir_teardown(void) {
    DIR *d = opendir(g_dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(g_dir);
}

TestSuite(ledger, .init = dir_setup, .fini = dir_teardown);

static void db_file(char *out, size_t cap) { snprintf(out, cap, "%s/floodgate.db", g_dir); }

static fg_ledger_t *open_ok(void) {
    fg_ledger_t *l = NULL;
    char err[512] = "";
    int rc = fg_ledger_open(g_dir, &l, err, sizeof err);
    cr_assert(eq(int, rc, 0), "open: %s", err);
    cr_assert(ne(ptr, l, NULL));
    return l;
}

static void commit_ok(fg_ledger_t *l, const fg_change_t *c, size_t n) {
    char err[512] = "";
    int rc = fg_ledger_commit(l, c, n, err, sizeof err);
    cr_assert(eq(int, rc, 0), "commit: %s", err);
}

/* Runs SQL on the file with a connection of its own, as an outside tool would. */
static void raw_exec(const char *sql) {
    char path[128];
    db_file(path, sizeof path);
    sqlite3 *db = NULL;
    cr_assert(eq(int, sqlite3_open(path, &db), SQLITE_OK));
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert(eq(int, rc, SQLITE_OK), "%s: %s", sql, msg != NULL ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
}

/* The first column of the first row of a query, as text. */
static void raw_text(const char *sql, char *out, size_t cap) {
    char path[128];
    db_file(path, sizeof path);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert(eq(int, sqlite3_open(path, &db), SQLITE_OK));
    cr_assert(eq(int, sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK), "%s: %s", sql,
              sqlite3_errmsg(db));
    cr_assert(eq(int, sqlite3_step(st), SQLITE_ROW), "%s: no row", sql);
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- rows */

static void fill32(uint8_t out[32], uint8_t seed) {
    for (int i = 0; i < 32; i++) out[i] = (uint8_t)(seed + i * 7);
}

static fg_market_t market(const char *code, const char *name, const char *currency) {
    fg_market_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.code, sizeof m.code, "%s", code);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.currency, sizeof m.currency, "%s", currency);
    return m;
}

static fg_buyer_row_t buyer(uint64_t id, const char *email) {
    fg_buyer_row_t b;
    memset(&b, 0, sizeof b);
    b.id = id;
    snprintf(b.email, sizeof b.email, "%s", email);
    snprintf(b.market, sizeof b.market, "IN");
    fill32(b.token_hash, (uint8_t)id);
    b.created_at_ms = 1700000000000 + (int64_t)id;
    return b;
}

static fg_hold_row_t hold(uint64_t id, uint64_t buyer_id, uint8_t state) {
    fg_hold_row_t h;
    memset(&h, 0, sizeof h);
    h.id = id;
    h.buyer_id = buyer_id;
    snprintf(h.sale_id, sizeof h.sale_id, "s1");
    h.pool_index = 2;
    h.market = fg_mcode("DE");
    h.quantity = 1;
    h.state = state;
    h.created_at_ms = 1700000001000;
    h.expires_at_ms = 1700000601000;
    h.ended_at_ms = state == FG_HOLD_HELD ? 0 : 1700000002000;
    h.order_id = state == FG_HOLD_ORDERED ? 9 : 0;
    return h;
}

static fg_order_row_t order(uint64_t id, uint64_t buyer_id, const char *sale_id) {
    fg_order_row_t o;
    memset(&o, 0, sizeof o);
    o.id = id;
    o.hold_id = id + 1000;
    o.buyer_id = buyer_id;
    snprintf(o.sale_id, sizeof o.sale_id, "%s", sale_id);
    snprintf(o.sku, sizeof o.sku, "x1-black-128");
    o.market = fg_mcode("DE");
    o.quantity = 2;
    o.total_minor = 139998;
    snprintf(o.currency, sizeof o.currency, "EUR");
    o.state = FG_ORDER_PAID;
    o.method = FG_PAY_WEBHOOK;
    o.created_at_ms = 1700000003000;
    o.updated_at_ms = 1700000004000;
    o.shipping_json = "{\"name\":\"Ana\",\"country\":\"DE\",\"line1\":\"Hauptstr. 1\"}";
    return o;
}

static fg_change_t ch_hold(fg_hold_row_t h) {
    return (fg_change_t){.kind = FG_CH_HOLD, .u.hold = h};
}
static fg_change_t ch_order(fg_order_row_t o) {
    return (fg_change_t){.kind = FG_CH_ORDER, .u.order = o};
}
static fg_change_t ch_buyer(fg_buyer_row_t *b) {
    return (fg_change_t){.kind = FG_CH_BUYER, .u.buyer = b};
}
static fg_change_t ch_market(const fg_market_t *m) {
    return (fg_change_t){.kind = FG_CH_MARKET, .u.market = m};
}

/* One row of every kind, and the batch that stores them. */
typedef struct {
    fg_market_t in, de;
    fg_sku_t phone_skus[3], cover_skus[1];
    fg_product_t phone, cover;
    fg_offer_t priced, blocked;
    fg_sale_row_t sale;
    fg_buyer_row_t buyer;
    fg_hold_row_t hold;
    fg_order_row_t order;
    fg_idem_row_t idem_admin, idem_buyer;
    fg_webhook_row_t webhook;
    fg_change_t changes[16];
    size_t n;
} dataset_t;

static void dataset_catalog(dataset_t *d) {
    d->in = market("IN", "India", "INR");
    d->de = market("DE", "Germany", "EUR");
    const char *sku_ids[3] = {"x1-black-128", "x1-black-256", "x1-white-128"};
    for (int i = 0; i < 3; i++) {
        snprintf(d->phone_skus[i].id, sizeof d->phone_skus[i].id, "%s", sku_ids[i]);
        snprintf(d->phone_skus[i].name, sizeof d->phone_skus[i].name, "X1 variant %d", i);
        d->phone_skus[i].attributes_json = i == 1 ? NULL : (char *)"{\"colour\":\"black\"}";
    }
    snprintf(d->phone.id, sizeof d->phone.id, "phone-x1");
    snprintf(d->phone.name, sizeof d->phone.name, "Phone X1 \xe2\x80\x94 5G");
    d->phone.specs_json = (char *)"{\"ram_gb\":8,\"display\":\"6.1\\\"\"}";
    d->phone.skus = d->phone_skus;
    d->phone.sku_count = 3;
    snprintf(d->cover_skus[0].id, sizeof d->cover_skus[0].id, "cover-1");
    snprintf(d->cover.id, sizeof d->cover.id, "cover");
    d->cover.skus = d->cover_skus; /* specs_json NULL, a SKU with no name or attributes */
    d->cover.sku_count = 1;
    snprintf(d->priced.sku, sizeof d->priced.sku, "x1-black-128");
    snprintf(d->priced.market, sizeof d->priced.market, "DE");
    d->priced.price_minor = 69999;
    snprintf(d->blocked.sku, sizeof d->blocked.sku, "x1-black-128");
    snprintf(d->blocked.market, sizeof d->blocked.market, "IN");
    d->blocked.blocked = true;
    snprintf(d->blocked.reason, sizeof d->blocked.reason, "not certified");
}

static void dataset_sale(fg_sale_row_t *s) {
    snprintf(s->id, sizeof s->id, "s1");
    snprintf(s->name, sizeof s->name, "Launch");
    s->opens_at_ms = 1700000000000;
    s->closes_at_ms = 0;
    s->limit_per_buyer = 2;
    s->hold_ttl_s = 600;
    s->paused = true;
    s->created_at_ms = 1699999999000;
    s->pool_count = 3;
    const char *skus[3] = {"x1-black-128", "x1-black-256", "x1-white-128"};
    const char *markets[3][3] = {{"IN", "DE", "FR"}, {"IN", NULL, NULL}, {NULL, NULL, NULL}};
    for (int i = 0; i < 3; i++) {
        snprintf(s->pools[i].sku, sizeof s->pools[i].sku, "%s", skus[i]);
        s->pools[i].stock = 1000 * (i + 1);
        for (int k = 0; k < 3 && markets[i][k] != NULL; k++)
            s->pools[i].markets[s->pools[i].market_count++] = fg_mcode(markets[i][k]);
    }
}

static dataset_t *dataset_new(void) {
    dataset_t *d = calloc(1, sizeof *d);
    cr_assert(ne(ptr, d, NULL));
    dataset_catalog(d);
    dataset_sale(&d->sale);
    d->buyer = buyer(7, "ana@example.com");
    d->hold = hold(42, 7, FG_HOLD_ORDERED);
    d->order = order(9, 7, "s1");
    d->idem_admin = (fg_idem_row_t){.scope = FG_IDEM_SCOPE_ADMIN, .key = (char *)"admin-key-1",
                                    .status = 201, .body = (char *)"{\"id\":\"s1\"}",
                                    .created_at_ms = 1700000005000};
    fill32(d->idem_admin.fingerprint, 3);
    d->idem_buyer = (fg_idem_row_t){.scope = 7, .key = (char *)"k-7", .status = 409,
                                    .body = (char *)"{\"type\":\"sold_out\"}",
                                    .created_at_ms = 1700000006000};
    fill32(d->idem_buyer.fingerprint, 5);
    fill32(d->webhook.digest, 11);
    d->webhook.t_s = 1700000007;
    fg_change_t *c = d->changes;
    c[d->n++] = ch_market(&d->in);
    c[d->n++] = ch_market(&d->de);
    c[d->n++] = (fg_change_t){.kind = FG_CH_PRODUCT, .u.product = &d->phone};
    c[d->n++] = (fg_change_t){.kind = FG_CH_PRODUCT, .u.product = &d->cover};
    c[d->n++] = (fg_change_t){.kind = FG_CH_OFFER, .u.offer = &d->priced};
    c[d->n++] = (fg_change_t){.kind = FG_CH_OFFER, .u.offer = &d->blocked};
    c[d->n++] = (fg_change_t){.kind = FG_CH_SALE, .u.sale = &d->sale};
    c[d->n++] = ch_buyer(&d->buyer);
    c[d->n++] = ch_hold(d->hold);
    c[d->n++] = ch_order(d->order);
    c[d->n++] = (fg_change_t){.kind = FG_CH_IDEM, .u.idem = &d->idem_admin};
    c[d->n++] = (fg_change_t){.kind = FG_CH_IDEM, .u.idem = &d->idem_buyer};
    c[d->n++] = (fg_change_t){.kind = FG_CH_WEBHOOK, .u.webhook = d->webhook};
    return d;
}

/* ---------------------------------------------------------------- a visitor that keeps rows */

#define KEEP 16

typedef struct {
    fg_market_t markets[KEEP];
    fg_product_t products[KEEP]; /* owned */
    fg_offer_t offers[KEEP];
    fg_sale_row_t sales[4];
    fg_buyer_row_t buyers[KEEP];
    fg_hold_row_t holds[KEEP];
    fg_order_row_t orders[KEEP]; /* shipping_json owned */
    fg_idem_row_t idem[KEEP];    /* key and body owned */
    fg_webhook_row_t webhooks[KEEP];
    int n_markets, n_products, n_offers, n_sales, n_buyers, n_holds, n_orders, n_idem,
        n_webhooks;
} seen_t;

static void free_product(fg_product_t *p) {
    for (int i = 0; i < p->sku_count; i++) free(p->skus[i].attributes_json);
    free(p->skus);
    free(p->specs_json);
}

static int on_market(void *ctx, const fg_market_t *m) {
    seen_t *s = ctx;
    if (s->n_markets < KEEP) s->markets[s->n_markets] = *m;
    s->n_markets++;
    return 0;
}

static int on_product(void *ctx, fg_product_t *p) {
    seen_t *s = ctx;
    if (s->n_products < KEEP) s->products[s->n_products] = *p;
    else free_product(p);
    s->n_products++;
    return 0;
}

static int on_offer(void *ctx, const fg_offer_t *o) {
    seen_t *s = ctx;
    if (s->n_offers < KEEP) s->offers[s->n_offers] = *o;
    s->n_offers++;
    return 0;
}

static int on_sale(void *ctx, const fg_sale_row_t *r) {
    seen_t *s = ctx;
    if (s->n_sales < 4) s->sales[s->n_sales] = *r;
    s->n_sales++;
    return 0;
}

static int on_buyer(void *ctx, const fg_buyer_row_t *b) {
    seen_t *s = ctx;
    if (s->n_buyers < KEEP) s->buyers[s->n_buyers] = *b;
    s->n_buyers++;
    return 0;
}

static int on_hold(void *ctx, const fg_hold_row_t *h) {
    seen_t *s = ctx;
    if (s->n_holds < KEEP) s->holds[s->n_holds] = *h;
    s->n_holds++;
    return 0;
}

static int on_order(void *ctx, const fg_order_row_t *o) {
    seen_t *s = ctx;
    if (s->n_orders < KEEP) s->orders[s->n_orders] = *o;
    else free((char *)o->shipping_json);
    s->n_orders++;
    return 0;
}

static int on_idem(void *ctx, const fg_idem_row_t *r) {
    seen_t *s = ctx;
    if (s->n_idem < KEEP) {
        s->idem[s->n_idem] = *r;
        s->idem[s->n_idem].key = strdup(r->key);
        s->idem[s->n_idem].body = strdup(r->body);
    }
    s->n_idem++;
    return 0;
}

static int on_webhook(void *ctx, const fg_webhook_row_t *w) {
    seen_t *s = ctx;
    if (s->n_webhooks < KEEP) s->webhooks[s->n_webhooks] = *w;
    s->n_webhooks++;
    return 0;
}

static const fg_ledger_visitor_t k_keep_all = {
    .market = on_market, .product = on_product, .offer = on_offer, .sale = on_sale,
    .buyer = on_buyer, .hold = on_hold, .order = on_order, .idem = on_idem,
    .webhook = on_webhook,
};

static void seen_free(seen_t *s) {
    for (int i = 0; i < s->n_products && i < KEEP; i++) free_product(&s->products[i]);
    for (int i = 0; i < s->n_orders && i < KEEP; i++) free((char *)s->orders[i].shipping_json);
    for (int i = 0; i < s->n_idem && i < KEEP; i++) {
        free(s->idem[i].key);
        free(s->idem[i].body);
    }
    free(s);
}

static seen_t *load_since(fg_ledger_t *l, int64_t idem_since_ms, int64_t webhook_since_s) {
    seen_t *s = calloc(1, sizeof *s);
    cr_assert(ne(ptr, s, NULL));
    char err[512] = "";
    int rc = fg_ledger_load(l, &k_keep_all, s, idem_since_ms, webhook_since_s, err, sizeof err);
    cr_assert(eq(int, rc, 0), "load: %s", err);
    return s;
}

static seen_t *load_all(fg_ledger_t *l) { return load_since(l, INT64_MIN, INT64_MIN); }

/* ---------------------------------------------------------------- comparisons */

static void expect_str_or_null(const char *got, const char *want, const char *what) {
    if (want == NULL) {
        cr_expect(eq(ptr, (void *)got, NULL), "%s should be NULL", what);
        return;
    }
    cr_expect(ne(ptr, (void *)got, NULL), "%s should be \"%s\"", what, want);
    if (got != NULL) cr_expect(eq(str, (char *)got, (char *)want), "%s", what);
}

static void expect_bytes32(const uint8_t *got, const uint8_t *want, const char *what) {
    struct cr_mem g = {.data = got, .size = 32}, w = {.data = want, .size = 32};
    cr_expect(eq(mem, g, w), "%s", what);
}

static void expect_product(const fg_product_t *got, const fg_product_t *want) {
    cr_expect(eq(str, (char *)got->id, (char *)want->id));
    cr_expect(eq(str, (char *)got->name, (char *)want->name));
    expect_str_or_null(got->specs_json, want->specs_json, "specs_json");
    cr_assert(eq(int, got->sku_count, want->sku_count), "skus of %s", want->id);
    for (int i = 0; i < want->sku_count; i++) {
        cr_expect(eq(str, (char *)got->skus[i].id, (char *)want->skus[i].id));
        cr_expect(eq(str, (char *)got->skus[i].name, (char *)want->skus[i].name));
        expect_str_or_null(got->skus[i].attributes_json, want->skus[i].attributes_json,
                           "attributes_json");
    }
}

static void expect_sale(const fg_sale_row_t *got, const fg_sale_row_t *want) {
    cr_expect(eq(str, (char *)got->id, (char *)want->id));
    cr_expect(eq(str, (char *)got->name, (char *)want->name));
    cr_expect(eq(i64, got->opens_at_ms, want->opens_at_ms));
    cr_expect(eq(i64, got->closes_at_ms, want->closes_at_ms));
    cr_expect(eq(i32, got->limit_per_buyer, want->limit_per_buyer));
    cr_expect(eq(i32, got->hold_ttl_s, want->hold_ttl_s));
    cr_expect(eq(int, got->paused, want->paused));
    cr_expect(eq(int, got->closed, want->closed));
    cr_expect(eq(i64, got->created_at_ms, want->created_at_ms));
    cr_assert(eq(int, got->pool_count, want->pool_count));
    for (int i = 0; i < want->pool_count; i++) {
        const fg_pool_def_t *g = &got->pools[i], *w = &want->pools[i];
        cr_expect(eq(str, (char *)g->sku, (char *)w->sku), "pool %d", i);
        cr_expect(eq(i64, g->stock, w->stock), "pool %d", i);
        cr_assert(eq(int, g->market_count, w->market_count), "pool %d", i);
        for (int k = 0; k < w->market_count; k++)
            cr_expect(eq(u16, g->markets[k], w->markets[k]), "pool %d market %d", i, k);
    }
}

static void expect_hold(const fg_hold_row_t *got, const fg_hold_row_t *want) {
    cr_expect(eq(u64, got->id, want->id));
    cr_expect(eq(u64, got->buyer_id, want->buyer_id));
    cr_expect(eq(str, (char *)got->sale_id, (char *)want->sale_id));
    cr_expect(eq(u16, got->pool_index, want->pool_index));
    cr_expect(eq(u16, got->market, want->market));
    cr_expect(eq(i32, got->quantity, want->quantity));
    cr_expect(eq(u8, got->state, want->state));
    cr_expect(eq(i64, got->created_at_ms, want->created_at_ms));
    cr_expect(eq(i64, got->expires_at_ms, want->expires_at_ms));
    cr_expect(eq(i64, got->ended_at_ms, want->ended_at_ms));
    cr_expect(eq(u64, got->order_id, want->order_id));
}

static void expect_order(const fg_order_row_t *got, const fg_order_row_t *want) {
    cr_expect(eq(u64, got->id, want->id));
    cr_expect(eq(u64, got->hold_id, want->hold_id));
    cr_expect(eq(u64, got->buyer_id, want->buyer_id));
    cr_expect(eq(str, (char *)got->sale_id, (char *)want->sale_id));
    cr_expect(eq(str, (char *)got->sku, (char *)want->sku));
    cr_expect(eq(u16, got->market, want->market));
    cr_expect(eq(i32, got->quantity, want->quantity));
    cr_expect(eq(i64, got->total_minor, want->total_minor));
    cr_expect(eq(str, (char *)got->currency, (char *)want->currency));
    cr_expect(eq(u8, got->state, want->state));
    cr_expect(eq(u8, got->method, want->method));
    cr_expect(eq(i64, got->created_at_ms, want->created_at_ms));
    cr_expect(eq(i64, got->updated_at_ms, want->updated_at_ms));
    expect_str_or_null(got->shipping_json, want->shipping_json, "shipping_json");
}

static void expect_idem(const fg_idem_row_t *got, const fg_idem_row_t *want) {
    cr_expect(eq(u64, got->scope, want->scope));
    cr_expect(eq(str, got->key, want->key));
    expect_bytes32(got->fingerprint, want->fingerprint, "fingerprint");
    cr_expect(eq(int, got->status, want->status));
    cr_expect(eq(str, got->body, want->body));
    cr_expect(eq(i64, got->created_at_ms, want->created_at_ms));
}

/* ---------------------------------------------------------------- schema */

Test(ledger, open_creates_schema_at_current_version_in_wal_mode) {
    fg_ledger_t *l = open_ok();
    char text[64];
    raw_text("SELECT value FROM meta WHERE key = 'schema_version'", text, sizeof text);
    char want[16];
    snprintf(want, sizeof want, "%d", FG_LEDGER_SCHEMA_VERSION);
    cr_expect(eq(str, text, want));
    raw_text("PRAGMA journal_mode", text, sizeof text);
    cr_expect(eq(str, text, "wal"));
    raw_text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('meta',"
             " 'markets', 'products', 'skus', 'offers', 'sales', 'sale_pools', 'buyers', 'holds',"
             " 'orders', 'idempotency', 'webhook_signatures')", text, sizeof text);
    cr_expect(eq(str, text, "12"));
    fg_ledger_close(l);
}

Test(ledger, reopen_keeps_schema_and_committed_data) {
    fg_ledger_t *l = open_ok();
    fg_market_t in = market("IN", "India", "INR");
    fg_buyer_row_t b = buyer(1, "a@example.com");
    fg_change_t c[] = {ch_market(&in), ch_buyer(&b), ch_hold(hold(5, 1, FG_HOLD_HELD))};
    commit_ok(l, c, 3);
    fg_ledger_close(l);

    l = open_ok();
    seen_t *s = load_all(l);
    cr_expect(eq(int, s->n_markets, 1));
    cr_expect(eq(int, s->n_buyers, 1));
    cr_assert(eq(int, s->n_holds, 1));
    cr_expect(eq(u64, s->holds[0].id, 5));
    char text[16];
    raw_text("SELECT count(*) FROM meta WHERE key = 'schema_version'", text, sizeof text);
    cr_expect(eq(str, text, "1"), "a reopen must not add a second version row");
    seen_free(s);
    fg_ledger_close(l);
}

Test(ledger, open_refuses_a_newer_schema_version) {
    fg_ledger_close(open_ok());
    raw_exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'");
    fg_ledger_t *l = (fg_ledger_t *)0x1;
    char err[512] = "";
    int rc = fg_ledger_open(g_dir, &l, err, sizeof err);
    cr_assert(eq(int, rc, -1));
    cr_expect(eq(ptr, l, NULL));
    cr_expect(ne(ptr, strstr(err, "schema version 99"), NULL), "err: %s", err);
    cr_expect(ne(ptr, strstr(err, "newer"), NULL), "err: %s", err);
}

Test(ledger, open_refuses_a_file_that_is_not_a_database) {
    char path[128];
    db_file(path, sizeof path);
    FILE *f = fopen(path, "w");
    cr_assert(ne(ptr, f, NULL));
    for (int i = 0; i < 300; i++) fputs("this is not an sqlite file. ", f);
    fclose(f);
    fg_ledger_t *l = NULL;
    char err[512] = "";
    cr_assert(eq(int, fg_ledger_open(g_dir, &l, err, sizeof err), -1));
    cr_expect(ne(ptr, strstr(err, "not a database"), NULL), "err: %s", err);
}

Test(ledger, open_refuses_a_database_of_another_program) {
    raw_exec("CREATE TABLE accounts(id INTEGER PRIMARY KEY)");
    fg_ledger_t *l = NULL;
    char err[512] = "";
    cr_assert(eq(int, fg_ledger_open(g_dir, &l, err, sizeof err), -1));
    cr_expect(ne(ptr, strstr(err, "not a floodgate database"), NULL), "err: %s", err);
}

Test(ledger, open_fails_with_a_message_when_the_directory_is_missing) {
    fg_ledger_t *l = NULL;
    char err[512] = "";
    char dir[128];
    snprintf(dir, sizeof dir, "%s/missing/deeper", g_dir);
    cr_assert(eq(int, fg_ledger_open(dir, &l, err, sizeof err), -1));
    cr_expect(ne(ptr, strstr(err, "cannot open"), NULL), "err: %s", err);
}

/* ---------------------------------------------------------------- commit and load */

Test(ledger, every_change_kind_round_trips_through_load) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    fg_ledger_close(l);
    l = open_ok();
    seen_t *s = load_all(l);

    cr_assert(eq(int, s->n_markets, 2));
    cr_expect(eq(str, s->markets[0].code, "IN"), "markets come in creation order");
    cr_expect(eq(str, s->markets[0].name, "India"));
    cr_expect(eq(str, s->markets[0].currency, "INR"));
    cr_expect(eq(str, s->markets[1].code, "DE"));
    cr_assert(eq(int, s->n_products, 2));
    expect_product(&s->products[0], &d->phone);
    expect_product(&s->products[1], &d->cover);
    cr_assert(eq(int, s->n_offers, 2));
    /* offers come by (sku, market): DE before IN */
    cr_expect(eq(str, s->offers[0].market, "DE"));
    cr_expect(eq(int, s->offers[0].blocked, false));
    cr_expect(eq(i64, s->offers[0].price_minor, 69999));
    cr_expect(eq(str, s->offers[1].market, "IN"));
    cr_expect(eq(int, s->offers[1].blocked, true));
    cr_expect(eq(str, s->offers[1].reason, "not certified"));
    cr_assert(eq(int, s->n_sales, 1));
    expect_sale(&s->sales[0], &d->sale);
    cr_assert(eq(int, s->n_buyers, 1));
    cr_expect(eq(u64, s->buyers[0].id, 7));
    cr_expect(eq(str, s->buyers[0].email, "ana@example.com"));
    cr_expect(eq(str, s->buyers[0].market, "IN"));
    expect_bytes32(s->buyers[0].token_hash, d->buyer.token_hash, "token_hash");
    cr_expect(eq(i64, s->buyers[0].created_at_ms, d->buyer.created_at_ms));
    cr_assert(eq(int, s->n_holds, 1));
    expect_hold(&s->holds[0], &d->hold);
    cr_assert(eq(int, s->n_orders, 1));
    expect_order(&s->orders[0], &d->order);
    cr_assert(eq(int, s->n_idem, 2));
    expect_idem(&s->idem[0], &d->idem_admin);
    expect_idem(&s->idem[1], &d->idem_buyer);
    cr_assert(eq(int, s->n_webhooks, 1));
    expect_bytes32(s->webhooks[0].digest, d->webhook.digest, "digest");
    cr_expect(eq(i64, s->webhooks[0].t_s, d->webhook.t_s));
    seen_free(s);
    fg_ledger_close(l);
    free(d);
}

Test(ledger, idempotency_scope_admin_is_stored_as_its_bit_pattern) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    char text[64];
    raw_text("SELECT scope FROM idempotency WHERE key = 'admin-key-1'", text, sizeof text);
    cr_expect(eq(str, text, "-1"), "UINT64_MAX has the bits of int64 -1");
    fg_ledger_close(l);
    free(d);
}

Test(ledger, empty_commit_is_a_successful_no_op) {
    fg_ledger_t *l = open_ok();
    char err[64] = "";
    cr_expect(eq(int, fg_ledger_commit(l, NULL, 0, err, sizeof err), 0));
    seen_t *s = load_all(l);
    cr_expect(eq(int, s->n_markets + s->n_holds + s->n_buyers, 0));
    seen_free(s);
    fg_ledger_close(l);
}

Test(ledger, hold_upserted_twice_keeps_the_last_snapshot) {
    fg_ledger_t *l = open_ok();
    fg_hold_row_t held = hold(42, 7, FG_HOLD_HELD);
    fg_hold_row_t ordered = hold(42, 7, FG_HOLD_ORDERED);
    fg_hold_row_t released = hold(43, 7, FG_HOLD_HELD);
    fg_change_t first[] = {ch_hold(held), ch_hold(released)};
    commit_ok(l, first, 2);
    released.state = FG_HOLD_RELEASED;
    released.ended_at_ms = 1700000009000;
    /* The same hold twice in one batch: the later snapshot wins too. */
    fg_change_t second[] = {ch_hold(ordered), ch_hold(held), ch_hold(released)};
    second[1].u.hold.state = FG_HOLD_EXPIRED;
    commit_ok(l, second, 3);
    fg_change_t third[] = {ch_hold(ordered)};
    commit_ok(l, third, 1);
    seen_t *s = load_all(l);
    cr_assert(eq(int, s->n_holds, 2));
    expect_hold(&s->holds[0], &ordered);
    expect_hold(&s->holds[1], &released);
    seen_free(s);
    fg_ledger_close(l);
}

Test(ledger, holds_and_orders_load_in_id_order_and_sales_in_creation_order) {
    fg_ledger_t *l = open_ok();
    fg_sale_row_t *b = calloc(1, sizeof *b), *a = calloc(1, sizeof *a);
    dataset_sale(b);
    dataset_sale(a);
    snprintf(b->id, sizeof b->id, "zzz-first");
    snprintf(a->id, sizeof a->id, "aaa-second");
    fg_change_t c[] = {
        ch_hold(hold(30, 1, FG_HOLD_HELD)), ch_hold(hold(10, 1, FG_HOLD_HELD)),
        ch_hold(hold(20, 1, FG_HOLD_HELD)), ch_order(order(8, 1, "s1")),
        ch_order(order(3, 1, "s1")),
        {.kind = FG_CH_SALE, .u.sale = b}, {.kind = FG_CH_SALE, .u.sale = a},
    };
    commit_ok(l, c, sizeof c / sizeof c[0]);
    seen_t *s = load_all(l);
    cr_assert(eq(int, s->n_holds, 3));
    cr_expect(eq(u64, s->holds[0].id, 10));
    cr_expect(eq(u64, s->holds[1].id, 20));
    cr_expect(eq(u64, s->holds[2].id, 30));
    cr_assert(eq(int, s->n_orders, 2));
    cr_expect(eq(u64, s->orders[0].id, 3));
    cr_expect(eq(u64, s->orders[1].id, 8));
    cr_assert(eq(int, s->n_sales, 2));
    cr_expect(eq(str, s->sales[0].id, "zzz-first"));
    cr_expect(eq(str, s->sales[1].id, "aaa-second"));
    seen_free(s);
    fg_ledger_close(l);
    free(a);
    free(b);
}

Test(ledger, product_change_replaces_all_its_skus) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    fg_product_t smaller = d->phone;
    smaller.skus = &d->phone_skus[2];
    smaller.sku_count = 1;
    smaller.specs_json = NULL;
    fg_change_t c = {.kind = FG_CH_PRODUCT, .u.product = &smaller};
    commit_ok(l, &c, 1);
    seen_t *s = load_all(l);
    cr_assert(eq(int, s->n_products, 2));
    expect_product(&s->products[0], &smaller);
    char text[16];
    raw_text("SELECT count(*) FROM skus WHERE product_id = 'phone-x1'", text, sizeof text);
    cr_expect(eq(str, text, "1"));
    seen_free(s);
    fg_ledger_close(l);
    free(d);
}

Test(ledger, sale_change_replaces_all_its_pools) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    fg_sale_row_t *fewer = malloc(sizeof *fewer);
    *fewer = d->sale;
    fewer->pool_count = 1;
    fewer->pools[0].stock = 5;
    fewer->paused = false;
    fewer->closed = true;
    fg_change_t c = {.kind = FG_CH_SALE, .u.sale = fewer};
    commit_ok(l, &c, 1);
    seen_t *s = load_all(l);
    cr_assert(eq(int, s->n_sales, 1));
    expect_sale(&s->sales[0], fewer);
    seen_free(s);
    fg_ledger_close(l);
    free(fewer);
    free(d);
}

Test(ledger, load_filters_idempotency_and_webhooks_by_since) {
    fg_ledger_t *l = open_ok();
    fg_idem_row_t idem[3];
    fg_change_t c[6];
    const char *keys[3] = {"old", "edge", "new"};
    for (int i = 0; i < 3; i++) {
        idem[i] = (fg_idem_row_t){.scope = 1, .key = (char *)keys[i], .status = 200,
                                  .body = (char *)"{}", .created_at_ms = 1000 * (i + 1)};
        c[i] = (fg_change_t){.kind = FG_CH_IDEM, .u.idem = &idem[i]};
        c[3 + i] = (fg_change_t){.kind = FG_CH_WEBHOOK, .u.webhook = {.t_s = 100 * (i + 1)}};
        fill32(c[3 + i].u.webhook.digest, (uint8_t)i);
    }
    commit_ok(l, c, 6);
    seen_t *s = load_since(l, 2000, 250);
    cr_assert(eq(int, s->n_idem, 2), "created_at_ms >= 2000");
    cr_expect(eq(str, s->idem[0].key, "edge"));
    cr_expect(eq(str, s->idem[1].key, "new"));
    cr_assert(eq(int, s->n_webhooks, 1), "t_s >= 250");
    cr_expect(eq(i64, s->webhooks[0].t_s, 300));
    seen_free(s);
    fg_ledger_close(l);
}

Test(ledger, committed_answer_gets_its_row_id_and_reads_back_by_it) {
    fg_ledger_t *l = open_ok();
    fg_idem_row_t idem[2];
    fg_change_t c[2];
    const char *keys[2] = {"first", "second"};
    for (int i = 0; i < 2; i++) {
        idem[i] = (fg_idem_row_t){.scope = 7, .key = (char *)keys[i], .status = 201 + i,
                                  .body = (char *)(i ? "{\"b\":2}" : "{\"a\":1}"),
                                  .created_at_ms = 5000 + i};
        fill32(idem[i].fingerprint, (uint8_t)(i + 1));
        c[i] = (fg_change_t){.kind = FG_CH_IDEM, .u.idem = &idem[i]};
    }
    commit_ok(l, c, 2);
    cr_assert(idem[0].ledger_rowid > 0 && idem[1].ledger_rowid > idem[0].ledger_rowid,
              "row ids %lld, %lld", (long long)idem[0].ledger_rowid,
              (long long)idem[1].ledger_rowid);
    for (int i = 0; i < 2; i++) {
        fg_idem_row_t got;
        char key[FG_IDEM_KEY_BYTES_MAX + 1];
        char *body = NULL;
        cr_assert(eq(int, fg_ledger_answer_get(l, idem[i].ledger_rowid, &got, key, &body), 1));
        cr_expect(eq(u64, got.scope, 7));
        cr_expect(eq(str, got.key, (char *)keys[i]));
        cr_expect(eq(str, got.body, idem[i].body));
        cr_expect(eq(int, got.status, 201 + i));
        cr_expect(eq(i64, got.created_at_ms, 5000 + i));
        cr_expect(eq(i64, got.ledger_rowid, idem[i].ledger_rowid));
        cr_expect(memcmp(got.fingerprint, idem[i].fingerprint, 32) == 0);
        free(body);
    }
    fg_idem_row_t got;
    char key[FG_IDEM_KEY_BYTES_MAX + 1];
    char *body = NULL;
    cr_expect(eq(int, fg_ledger_answer_get(l, idem[1].ledger_rowid + 1, &got, key, &body), 0));
    cr_expect_null(body);
    fg_ledger_close(l);
}

/* Holds and answers are written many rows per statement: a batch longer than one statement,
 * a hold changed twice in it, and a prune between its answers must land as if written one by
 * one. */
#define BIG_HOLDS 150

Test(ledger, big_batch_of_holds_and_answers_lands_row_by_row) {
    fg_ledger_t *l = open_ok();
    static fg_idem_row_t idem[BIG_HOLDS + 1];
    static char keys[BIG_HOLDS + 1][16];
    static fg_change_t c[2 * BIG_HOLDS + 3];
    size_t n = 0;
    for (int i = 0; i <= BIG_HOLDS; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i);
        idem[i] = (fg_idem_row_t){.scope = 7, .key = keys[i], .status = 201,
                                  .body = (char *)"{}", .created_at_ms = i < 10 ? 1000 : 5000};
    }
    for (int i = 0; i < BIG_HOLDS; i++) {
        c[n++] = ch_hold(hold((uint64_t)i + 1, 7, FG_HOLD_HELD));
        c[n++] = (fg_change_t){.kind = FG_CH_IDEM, .u.idem = &idem[i]};
        /* Answers 0-9 are older than the cut-off and were queued before the prune. */
        if (i == 9)
            c[n++] = (fg_change_t){.kind = FG_CH_PRUNE,
                                   .u.prune = {.idem_before_ms = 2000, .webhook_before_s = 0}};
    }
    c[n++] = ch_hold(hold(1, 7, FG_HOLD_EXPIRED)); /* hold 1 again, in a later statement */
    commit_ok(l, c, n);

    seen_t *s = load_all(l);
    cr_assert(eq(int, s->n_holds, BIG_HOLDS));
    for (int i = 0; i < BIG_HOLDS && i < KEEP; i++)
        cr_expect(eq(u64, s->holds[i].id, (uint64_t)i + 1));
    cr_expect(eq(int, s->holds[0].state, FG_HOLD_EXPIRED), "the last snapshot of hold 1 wins");
    cr_expect(eq(int, s->n_idem, BIG_HOLDS - 9), "answers 0-8 pruned, 9 the newest then");
    seen_free(s);
    /* Row ids count up by one in change order, as SQLite hands them out (max + 1). */
    for (int i = 1; i < BIG_HOLDS; i++)
        cr_expect(eq(i64, idem[i].ledger_rowid, idem[i - 1].ledger_rowid + 1), "answer %d", i);
    for (int i = 9; i < BIG_HOLDS; i += 20) {
        fg_idem_row_t got;
        char key[FG_IDEM_KEY_BYTES_MAX + 1];
        char *body = NULL;
        cr_assert(eq(int, fg_ledger_answer_get(l, idem[i].ledger_rowid, &got, key, &body), 1));
        cr_expect(eq(str, got.key, keys[i]));
        free(body);
    }
    /* A later batch goes on after the last row id. */
    fg_change_t more = {.kind = FG_CH_IDEM, .u.idem = &idem[BIG_HOLDS]};
    commit_ok(l, &more, 1);
    cr_expect(eq(i64, idem[BIG_HOLDS].ledger_rowid, idem[BIG_HOLDS - 1].ledger_rowid + 1));
    fg_ledger_close(l);
}

Test(ledger, failed_multi_row_write_names_its_first_change_and_rolls_back) {
    fg_ledger_t *l = open_ok();
    /* A trigger stands in for a failure that no check foresees (the disk's, say). */
    raw_exec("CREATE TRIGGER refuse_hold_3 BEFORE INSERT ON holds WHEN NEW.id = 3"
             " BEGIN SELECT RAISE(ABORT, 'hold 3 refused'); END");
    fg_market_t de = market("DE", "Germany", "EUR");
    fg_change_t c[7];
    for (int i = 0; i < 6; i++)
        c[i] = ch_hold(hold((uint64_t)i + 1, 7, FG_HOLD_HELD));
    c[6] = ch_market(&de);
    char err[512] = "";
    /* Six queued holds are written 4 + 1 + 1; the first statement holds 1 to 4. */
    cr_assert(eq(int, fg_ledger_commit(l, c, 7, err, sizeof err), FG_LEDGER_EFAIL));
    cr_expect(ne(ptr, strstr(err, "change 1 of 7 (hold 1) or one of the 3 rows written with it"),
                 NULL),
              "err: %s", err);
    cr_expect(ne(ptr, strstr(err, "hold 3 refused"), NULL), "err: %s", err);
    seen_t *s = load_all(l);
    cr_expect(eq(int, s->n_holds, 0));
    cr_expect(eq(int, s->n_markets, 0));
    seen_free(s);
    fg_ledger_close(l);
}

Test(ledger, commit_is_atomic_on_constraint_failure) {
    fg_ledger_t *l = open_ok();
    fg_market_t in = market("IN", "India", "INR"), de = market("DE", "Germany", "EUR");
    fg_change_t before = ch_market(&in);
    commit_ok(l, &before, 1);

    fg_buyer_row_t b1 = buyer(1, "same@example.com"), b2 = buyer(2, "same@example.com");
    fg_change_t batch[] = {ch_market(&de), ch_hold(hold(5, 1, FG_HOLD_HELD)), ch_buyer(&b1),
                           ch_buyer(&b2)};
    char err[512] = "";
    cr_assert(eq(int, fg_ledger_commit(l, batch, 4, err, sizeof err), -1));
    cr_expect(ne(ptr, strstr(err, "change 4 of 4 (buyer 2)"), NULL), "err: %s", err);
    cr_expect(ne(ptr, strstr(err, "UNIQUE constraint failed: buyers.email"), NULL), "err: %s",
              err);

    seen_t *s = load_all(l);
    cr_expect(eq(int, s->n_markets, 1), "only the market committed before the batch");
    cr_expect(eq(str, s->markets[0].code, "IN"));
    cr_expect(eq(int, s->n_holds, 0));
    cr_expect(eq(int, s->n_buyers, 0));
    seen_free(s);

    /* The failed batch left no transaction open behind it. */
    commit_ok(l, batch, 3);
    s = load_all(l);
    cr_expect(eq(int, s->n_markets, 2));
    cr_expect(eq(int, s->n_holds, 1));
    cr_expect(eq(int, s->n_buyers, 1));
    seen_free(s);
    fg_ledger_close(l);
}

Test(ledger, commit_refuses_a_row_that_load_would_refuse) {
    fg_ledger_t *l = open_ok();
    struct {
        fg_hold_row_t h;
        const char *want;
    } cases[] = {
        {hold(1, 7, FG_HOLD_HELD), "market 0x7a39"},
        {hold(2, 7, 9), "state 9"},
        {hold(UINT64_MAX, 7, FG_HOLD_HELD), "above INT64_MAX"},
        {hold(4, 7, FG_HOLD_HELD), "sale_id has byte 0x20"},
    };
    cases[0].h.market = fg_mcode("z9");
    snprintf(cases[3].h.sale_id, sizeof cases[3].h.sale_id, "bad id");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fg_change_t c[] = {ch_hold(hold(100, 7, FG_HOLD_HELD)), ch_hold(cases[i].h)};
        char err[512] = "";
        cr_assert(eq(int, fg_ledger_commit(l, c, 2, err, sizeof err), -1), "case %zu", i);
        cr_expect(ne(ptr, strstr(err, "change 2 of 2 (hold "), NULL), "err: %s", err);
        cr_expect(ne(ptr, strstr(err, cases[i].want), NULL), "want '%s' in: %s", cases[i].want,
                  err);
    }
    seen_t *s = load_all(l);
    cr_expect(eq(int, s->n_holds, 0), "hold 100 went with its batch");
    seen_free(s);
    fg_ledger_close(l);
}

/* ---------------------------------------------------------------- damaged files */

/* Inline strings: Criterion copies parameters into a worker process, where pointers into this
 * one's memory would not be valid. */
typedef struct {
    char sql[128];  /* what damages the file */
    char where[40]; /* the table and row the message must name */
    char what[40];  /* and the problem */
} damage_t;

ParameterizedTestParameters(ledger, load_refuses_a_damaged_row_naming_table_and_row) {
    static damage_t cases[] = {
        {"UPDATE holds SET market = 'zz9'", "holds row 42", "market has 3 bytes"},
        {"UPDATE holds SET market = 'de'", "holds row 42", "market 0x6465"},
        {"UPDATE buyers SET token_hash = x'0102030405'", "buyers row 7",
         "token_hash has 5 bytes, not 32"},
        {"UPDATE holds SET quantity = -1", "holds row 42", "quantity -1"},
        {"UPDATE holds SET state = 9", "holds row 42", "state 9"},
        {"UPDATE holds SET pool_index = 64", "holds row 42", "pool_index 64"},
        {"UPDATE holds SET sale_id = 'a b'", "holds row 42", "sale_id has byte 0x20"},
        {"UPDATE holds SET id = -5", "holds row #1", "id -5"},
        {"UPDATE orders SET currency = 'eur'", "orders row 9", "currency 'eur'"},
        {"UPDATE orders SET method = 5", "orders row 9", "method 5"},
        {"UPDATE orders SET total_minor = -1", "orders row 9", "total_minor -1"},
        {"UPDATE orders SET shipping_json = 'a' || char(0) || 'b'", "orders row 9", "NUL"},
        {"UPDATE buyers SET email = ''", "buyers row 7", "email"},
        {"UPDATE markets SET code = 'in' WHERE code = 'IN'", "markets row in", "code 'in'"},
        {"UPDATE markets SET name = hex(zeroblob(101))", "markets row", "name has 202 bytes"},
        {"UPDATE products SET specs_json = hex(zeroblob(4500))", "products row phone-x1",
         "specs_json has 9000 bytes"},
        {"UPDATE skus SET position = 5 WHERE position = 1", "skus row phone-x1/#2",
         "position 2 follows 1 SKUs"},
        {"UPDATE offers SET price_minor = -3 WHERE blocked = 0", "offers row x1-black-128/DE",
         "price_minor -3"},
        {"UPDATE sale_pools SET markets = 'IN,de' WHERE idx = 0", "sales row s1",
         "pools[0]: market"},
        {"UPDATE sale_pools SET markets = 'IN;DE' WHERE idx = 0", "sale_pools row s1/0",
         "not a comma-separated list"},
        {"UPDATE sale_pools SET markets = 'IN' || replace(hex(zeroblob(64)), '00', ',IN')",
         "sale_pools row s1/0", "markets has 194 bytes"},
        {"UPDATE sale_pools SET idx = 7 WHERE idx = 2", "sale_pools row s1/7",
         "idx 7 follows 2 pools"},
        {"INSERT INTO sale_pools VALUES('s1', 64, 'x1', 1, 'IN')", "sale_pools row", "idx 64"},
        {"UPDATE sale_pools SET stock = -2 WHERE idx = 1", "sales row s1", "stock -2"},
        {"UPDATE sales SET paused = 2", "sales row s1", "paused 2"},
        {"UPDATE idempotency SET fingerprint = x'00'", "idempotency row",
         "fingerprint has 1 bytes"},
        {"UPDATE idempotency SET status = 42", "idempotency row", "status 42"},
        {"UPDATE webhook_signatures SET digest = x'010203'", "webhook_signatures row",
         "digest has 3 bytes"},
    };
    return cr_make_param_array(damage_t, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(damage_t *c, ledger, load_refuses_a_damaged_row_naming_table_and_row) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    fg_ledger_close(l);
    raw_exec(c->sql);

    l = open_ok();
    seen_t *s = calloc(1, sizeof *s);
    char err[512] = "";
    int rc = fg_ledger_load(l, &k_keep_all, s, INT64_MIN, INT64_MIN, err, sizeof err);
    cr_assert(eq(int, rc, -1), "%s: load should fail", c->sql);
    cr_expect(ne(ptr, strstr(err, c->where), NULL), "%s: want '%s' in: %s", c->sql, c->where,
              err);
    cr_expect(ne(ptr, strstr(err, c->what), NULL), "%s: want '%s' in: %s", c->sql, c->what,
              err);
    seen_free(s);
    /* The failed load left the connection usable. */
    fg_change_t more = ch_hold(hold(77, 7, FG_HOLD_HELD));
    commit_ok(l, &more, 1);
    fg_ledger_close(l);
    free(d);
}

Test(ledger, load_skips_kinds_whose_callback_is_null) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    fg_ledger_close(l);
    raw_exec("UPDATE buyers SET token_hash = x'01'"); /* not read when buyers are skipped */
    l = open_ok();
    seen_t *s = calloc(1, sizeof *s);
    fg_ledger_visitor_t holds_only = {.hold = on_hold};
    char err[512] = "";
    cr_assert(eq(int, fg_ledger_load(l, &holds_only, s, 0, 0, err, sizeof err), 0), "%s", err);
    cr_expect(eq(int, s->n_holds, 1));
    cr_expect(eq(int, s->n_buyers + s->n_markets + s->n_orders, 0));
    seen_free(s);
    fg_ledger_close(l);
    free(d);
}

/* ---------------------------------------------------------------- visitors that refuse */

typedef struct {
    char *err; /* the load's err buffer, as the engine's restore writes into it */
    size_t errlen;
    int calls;
} refuse_t;

static int refuse_silently(void *ctx, const fg_hold_row_t *h) {
    ((refuse_t *)ctx)->calls++;
    return 1;
}

static int refuse_with_reason(void *ctx, const fg_hold_row_t *h) {
    refuse_t *r = ctx;
    r->calls++;
    snprintf(r->err, r->errlen, "restoring hold: no sale s1");
    return 1;
}

static int refuse_product_after_freeing_it(void *ctx, fg_product_t *p) {
    ((refuse_t *)ctx)->calls++;
    free_product(p); /* the visitor owns it even when it refuses */
    return 1;
}

Test(ledger, visitor_refusal_stops_load_and_names_the_row) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    char err[512] = "";
    refuse_t r = {.err = err, .errlen = sizeof err};
    fg_ledger_visitor_t v = {.hold = refuse_silently};
    cr_assert(eq(int, fg_ledger_load(l, &v, &r, 0, 0, err, sizeof err), -1));
    cr_expect(eq(int, r.calls, 1));
    cr_expect(eq(str, err, "ledger: load: holds row 42: stopped by the visitor"));
    fg_ledger_close(l);
    free(d);
}

Test(ledger, visitor_reason_is_kept_and_the_row_added) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    char err[512] = "stale text from an earlier call";
    refuse_t r = {.err = err, .errlen = sizeof err};
    fg_ledger_visitor_t v = {.hold = refuse_with_reason};
    cr_assert(eq(int, fg_ledger_load(l, &v, &r, 0, 0, err, sizeof err), -1));
    cr_expect(eq(str, err, "restoring hold: no sale s1 (ledger: holds row 42)"));
    fg_ledger_close(l);
    free(d);
}

Test(ledger, product_belongs_to_the_visitor_even_when_it_refuses) {
    dataset_t *d = dataset_new();
    fg_ledger_t *l = open_ok();
    commit_ok(l, d->changes, d->n);
    char err[512] = "";
    refuse_t r = {.err = err, .errlen = sizeof err};
    fg_ledger_visitor_t v = {.product = refuse_product_after_freeing_it};
    /* Under AddressSanitizer a second free by the ledger would fail this test. */
    cr_assert(eq(int, fg_ledger_load(l, &v, &r, 0, 0, err, sizeof err), -1));
    cr_expect(eq(int, r.calls, 1));
    cr_expect(ne(ptr, strstr(err, "products row phone-x1"), NULL), "err: %s", err);
    fg_ledger_close(l);
    free(d);
}

/* ---------------------------------------------------------------- meta */

Test(ledger, meta_set_is_durable_and_get_reads_it_back) {
    fg_ledger_t *l = open_ok();
    cr_assert(eq(int, fg_ledger_meta_set(l, "admin_token_hash", "abc123"), 0));
    cr_assert(eq(int, fg_ledger_meta_set(l, "admin_token_hash", "def456"), 0));
    fg_ledger_close(l);
    l = open_ok();
    char out[64] = "";
    cr_expect(eq(int, fg_ledger_meta_get(l, "admin_token_hash", out, sizeof out), 1));
    cr_expect(eq(str, out, "def456"));
    fg_ledger_close(l);
}

Test(ledger, meta_get_of_an_absent_key_returns_zero) {
    fg_ledger_t *l = open_ok();
    char out[16] = "untouched";
    cr_expect(eq(int, fg_ledger_meta_get(l, "webhook_secret", out, sizeof out), 0));
    fg_ledger_close(l);
}

Test(ledger, meta_get_truncates_to_cap) {
    fg_ledger_t *l = open_ok();
    cr_assert(eq(int, fg_ledger_meta_set(l, "k", "abcdefgh"), 0));
    char out[4];
    cr_expect(eq(int, fg_ledger_meta_get(l, "k", out, sizeof out), 1));
    cr_expect(eq(str, out, "abc"));
    fg_ledger_close(l);
}

Test(ledger, meta_set_refuses_the_schema_version) {
    fg_ledger_t *l = open_ok();
    cr_expect(eq(int, fg_ledger_meta_set(l, "schema_version", "2"), -1));
    char out[16];
    cr_expect(eq(int, fg_ledger_meta_get(l, "schema_version", out, sizeof out), 1));
    cr_expect(eq(str, out, "1"));
    fg_ledger_close(l);
}

/* ---------------------------------------------------------------- export */

/* Exports need the sales they read to exist. */
static void commit_sales(fg_ledger_t *l) {
    static fg_sale_row_t s1, s2;
    dataset_sale(&s1);
    dataset_sale(&s2);
    snprintf(s2.id, sizeof s2.id, "s2");
    fg_sale_row_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    cr_assert(a != NULL && b != NULL);
    *a = s1;
    *b = s2;
    fg_change_t c[] = {{.kind = FG_CH_SALE, .u.sale = a}, {.kind = FG_CH_SALE, .u.sale = b}};
    commit_ok(l, c, 2);
    free(a);
    free(b);
}

Test(ledger, export_returns_a_sales_orders_in_id_order_with_buyer_email) {
    fg_ledger_t *l = open_ok();
    commit_sales(l);
    fg_buyer_row_t b1 = buyer(1, "ana@example.com"), b2 = buyer(2, "ben@example.com");
    fg_change_t c[] = {ch_buyer(&b1), ch_buyer(&b2), ch_order(order(5, 1, "s1")),
                       ch_order(order(3, 2, "s2")), ch_order(order(2, 2, "s1")),
                       ch_order(order(9, 1, "s1"))};
    commit_ok(l, c, sizeof c / sizeof c[0]);

    /* The ledger keeps its connection open and commits while the export reads. */
    fg_ledger_export_t *x = NULL;
    cr_assert(eq(int, fg_ledger_export_open(g_dir, "s1", &x), 0));
    const uint64_t want_ids[] = {2, 5, 9};
    const char *want_emails[] = {"ben@example.com", "ana@example.com", "ana@example.com"};
    fg_export_row_t row;
    for (int i = 0; i < 3; i++) {
        cr_assert(eq(int, fg_ledger_export_next(x, &row), 1), "row %d", i);
        cr_expect(eq(u64, row.order.id, want_ids[i]));
        cr_expect(eq(str, row.email, (char *)want_emails[i]));
        cr_expect(eq(str, row.order.sale_id, "s1"));
        fg_order_row_t want = order(want_ids[i], row.order.buyer_id, "s1");
        expect_order(&row.order, &want);
        if (i == 0) {
            fg_change_t during = ch_order(order(4, 1, "s2"));
            commit_ok(l, &during, 1);
        }
    }
    cr_expect(eq(int, fg_ledger_export_next(x, &row), 0));
    cr_expect(eq(int, fg_ledger_export_next(x, &row), 0), "the end stays the end");
    fg_ledger_export_close(x);
    fg_ledger_close(l);
}

Test(ledger, export_pages_through_many_orders_and_ignores_later_ones) {
    fg_ledger_t *l = open_ok();
    commit_sales(l);
    fg_buyer_row_t b = buyer(1, "ana@example.com");
    fg_change_t first = ch_buyer(&b);
    commit_ok(l, &first, 1);
    enum { N = 2 * FG_EXPORT_PAGE_ROWS + 5 };
    fg_change_t *c = calloc(N, sizeof *c);
    cr_assert(ne(ptr, c, NULL));
    for (int i = 0; i < N; i++) c[i] = ch_order(order((uint64_t)(i + 1) * 2, 1, "s1"));
    commit_ok(l, c, N);

    fg_ledger_export_t *x = NULL;
    cr_assert(eq(int, fg_ledger_export_open(g_dir, "s1", &x), 0));
    for (int i = 0; i < 10; i++) c[i] = ch_order(order((uint64_t)(N + 10 + i) * 2, 1, "s1"));
    commit_ok(l, c, 10);
    fg_export_row_t row;
    uint64_t last = 0;
    int count = 0, rc;
    while ((rc = fg_ledger_export_next(x, &row)) == 1) {
        cr_assert(gt(u64, row.order.id, last), "ids rise");
        last = row.order.id;
        count++;
    }
    cr_expect(eq(int, rc, 0));
    cr_expect(eq(int, count, N), "orders present when the export opened");
    cr_expect(eq(u64, last, (uint64_t)N * 2));
    fg_ledger_export_close(x);
    fg_ledger_close(l);
    free(c);
}

Test(ledger, export_reads_a_closed_ledger_and_refuses_an_unknown_sale) {
    fg_ledger_t *l = open_ok();
    commit_sales(l);
    fg_buyer_row_t b = buyer(1, "ana@example.com");
    fg_change_t c[] = {ch_buyer(&b), ch_order(order(1, 1, "s1"))};
    commit_ok(l, c, 2);
    fg_ledger_close(l);

    fg_ledger_export_t *x = NULL;
    fg_export_row_t row;
    cr_assert(eq(int, fg_ledger_export_open(g_dir, "s1", &x), 0));
    cr_expect(eq(int, fg_ledger_export_next(x, &row), 1));
    cr_expect(eq(int, fg_ledger_export_next(x, &row), 0));
    fg_ledger_export_close(x);
    cr_expect(eq(int, fg_ledger_export_open(g_dir, "no-such-sale", &x), -2));
    cr_expect(eq(ptr, x, NULL));
}

Test(ledger, export_of_an_order_without_its_buyer_fails) {
    fg_ledger_t *l = open_ok();
    commit_sales(l);
    fg_change_t c = ch_order(order(1, 99, "s1"));
    commit_ok(l, &c, 1);
    fg_ledger_export_t *x = NULL;
    fg_export_row_t row;
    cr_assert(eq(int, fg_ledger_export_open(g_dir, "s1", &x), 0));
    cr_expect(eq(int, fg_ledger_export_next(x, &row), -1));
    fg_ledger_export_close(x);
    fg_ledger_close(l);
}

Test(ledger, export_open_fails_without_a_database) {
    fg_ledger_export_t *x = (fg_ledger_export_t *)0x1;
    cr_expect(eq(int, fg_ledger_export_open(g_dir, "s1", &x), -1));
    cr_expect(eq(ptr, x, NULL));
}
