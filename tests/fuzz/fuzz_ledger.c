/*
 * fuzz_ledger.c — libFuzzer target for the ledger read at start: fg_ledger_open and
 * fg_engine_load over a floodgate.db whose rows come from the input, and the order export
 * (fg_export_open) over the same rows.
 *
 * A ledger file is outside input once it has been on a disk: damaged, restored from an old
 * backup, or edited by hand. The load must refuse a bad row with a reason, never crash; and
 * what it accepts must be a state the engine can run: after a load every pending order is paid
 * and every hold is run to its expiry, and fg_engine_check asserts the invariants after that.
 *
 * The input is text, one row per line, so seeds can be read and written by hand:
 *
 *     loose                                  (optional first line, see below)
 *     markets|t:DE|t:Germany|t:EUR
 *     holds|i:1|i:1|t:launch|i:0|t:DE|i:1|i:0|i:100|i:200|i:0|i:0
 *
 * A line is a table name and its values in column order, separated by '|': n (NULL),
 * i:<integer> (strtoll, base 0), f:<real>, t:<text to the end of the field>, x:<hex> (text of
 * any bytes, NUL and '|' included), b:<hex> (a blob); anything else is text as it stands.
 * Missing values are NULL, extra ones are dropped; rows are INSERT OR REPLACE'd, and a row
 * SQLite refuses is skipped, as it could not be in a file either. The rows go into one of two
 * databases with floodgate's schema: the real one (STRICT tables, NOT NULL columns) or, after a
 * first line "loose", the same schema without STRICT and NOT NULL, as a file made by another
 * tool could be, so values of any type reach the ledger's own checks. A meta row (the schema
 * version) makes the run open the ledger anew, and the database is rebuilt after it.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "engine/writer.h"
#include "fuzz_support.h"
#include "ledger/ledger.h"
#include "util/log.h"

#define FZ_NOW_MS             1800000000000LL           /* 2027-01-15: the load's "now", fixed */
#define FZ_LATER_MS           (30LL * 24 * 3600 * 1000) /* past every hold's expiry */
#define FZ_ORDER_IDS_PROBED   64 /* orders o_1.. paid after a load, when pending */
#define FZ_TABLES_MAX         24 /* tables of the schema, meta included */
#define FZ_TABLE_NAME_MAX     64
#define FZ_INT_TEXT_MAX       40   /* digits of an i: or f: value read */
#define FZ_EXPORT_SALES_MAX   2    /* sales exported per run */
#define FZ_EXPORT_READS_MAX   4096 /* reads of one export before the run gives up on it */
#define FZ_WIPE_SQL_BYTES_MAX 2048 /* a DELETE per table but meta */

typedef struct {
    char name[FZ_TABLE_NAME_MAX + 1];
    sqlite3_stmt *insert;
} table_t;

typedef struct {
    bool loose;
    const char *dir;
    char path[512];
    sqlite3 *side;       /* writes the input's rows */
    fg_ledger_t *ledger; /* reads them, as floodgate does */
    table_t tables[FZ_TABLES_MAX];
    int table_count;
    char wipe_sql[FZ_WIPE_SQL_BYTES_MAX];
} db_t;

static db_t dbs[2];  /* [0] the real schema, [1] loose */
static bool verbose; /* FG_FUZZ_VERBOSE set: say why each load was refused */

/* ---------------------------------------------------------------- the two databases */

static void exec_sql(sqlite3 *db, const char *sql) {
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        fz_fail("SQL \"%.80s\" failed: %s", sql, sqlite3_errmsg(db));
}

/* Creates the loose schema: floodgate's own, as the real database holds it, with STRICT and
 * NOT NULL taken out, so it follows every migration. */
static void create_loose_schema(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(dbs[0].side,
                           "SELECT replace(replace(replace(sql, 'STRICT, WITHOUT ROWID',"
                           " 'WITHOUT ROWID'), ') STRICT', ')'), ' NOT NULL', '')"
                           " FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type = 'index'",
                           -1, &st, NULL) != SQLITE_OK)
        fz_fail("cannot read the schema: %s", sqlite3_errmsg(dbs[0].side));
    exec_sql(db, "BEGIN");
    while (sqlite3_step(st) == SQLITE_ROW)
        exec_sql(db, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    char version[64];
    snprintf(version, sizeof version, "INSERT INTO meta(key, value) VALUES('schema_version', '%d')",
             FG_LEDGER_SCHEMA_VERSION);
    exec_sql(db, version);
    exec_sql(db, "COMMIT");
}

/* Prepares an INSERT OR REPLACE with one parameter per column of each table. */
static void prepare_inserts(db_t *d) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->side,
                           "SELECT m.name, (SELECT count(*) FROM pragma_table_info(m.name))"
                           " FROM sqlite_master AS m"
                           " WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
                           -1, &st, NULL) != SQLITE_OK)
        fz_fail("cannot list tables: %s", sqlite3_errmsg(d->side));
    size_t w = (size_t)snprintf(d->wipe_sql, sizeof d->wipe_sql, "BEGIN;");
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (d->table_count == FZ_TABLES_MAX) fz_fail("more than %d tables", FZ_TABLES_MAX);
        table_t *t = &d->tables[d->table_count++];
        snprintf(t->name, sizeof t->name, "%s", (const char *)sqlite3_column_text(st, 0));
        int columns = sqlite3_column_int(st, 1);
        char sql[512];
        size_t n =
            (size_t)snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO \"%s\" VALUES(?", t->name);
        for (int i = 1; i < columns && n < sizeof sql; i++)
            n += (size_t)snprintf(sql + n, sizeof sql - n, ",?");
        if (n < sizeof sql) n += (size_t)snprintf(sql + n, sizeof sql - n, ")");
        if (n >= sizeof sql) fz_fail("the insert into %s does not fit", t->name);
        if (sqlite3_prepare_v2(d->side, sql, -1, &t->insert, NULL) != SQLITE_OK)
            fz_fail("cannot prepare %s: %s", sql, sqlite3_errmsg(d->side));
        if (strcmp(t->name, "meta") != 0 && w < sizeof d->wipe_sql)
            w += (size_t)snprintf(d->wipe_sql + w, sizeof d->wipe_sql - w, "DELETE FROM \"%s\";",
                                  t->name);
    }
    sqlite3_finalize(st);
    if (w < sizeof d->wipe_sql)
        w += (size_t)snprintf(d->wipe_sql + w, sizeof d->wipe_sql - w, "COMMIT;");
    if (w >= sizeof d->wipe_sql) fz_fail("the wipe SQL does not fit");
}

static void db_open(db_t *d) {
    char err[512];
    snprintf(d->path, sizeof d->path, "%s/floodgate.db", d->dir);
    if (!d->loose && fg_ledger_open(d->dir, &d->ledger, err, sizeof err) != 0) fz_fail("%s", err);
    if (sqlite3_open(d->path, &d->side) != SQLITE_OK)
        fz_fail("cannot open %s: %s", d->path, sqlite3_errmsg(d->side));
    sqlite3_busy_timeout(d->side, FZ_BUSY_TIMEOUT_MS);
    if (d->loose) {
        exec_sql(d->side, "PRAGMA journal_mode=WAL");
        create_loose_schema(d->side);
        if (fg_ledger_open(d->dir, &d->ledger, err, sizeof err) != 0) fz_fail("%s", err);
    }
    prepare_inserts(d);
}

static void db_close(db_t *d) {
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < d->table_count; i++)
        sqlite3_finalize(d->tables[i].insert);
    d->table_count = 0;
    sqlite3_close(d->side);
    fg_ledger_close(d->ledger);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s%s", d->path, suffixes[i]);
        unlink(path);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fg_log_set_quiet(true);
    verbose = getenv("FG_FUZZ_VERBOSE") != NULL;
    dbs[0] = (db_t){.loose = false, .dir = fz_scratch_dir("ledger")};
    dbs[1] = (db_t){.loose = true, .dir = fz_scratch_dir("loose")};
    db_open(&dbs[0]);
    db_open(&dbs[1]);
    return 0;
}

/* ---------------------------------------------------------------- rows from the input */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes hex digit pairs into a malloc'd buffer; stops at the first non-pair. */
static unsigned char *unhex(const char *p, size_t n, size_t *out_len) {
    unsigned char *out = malloc(n / 2 + 1);
    if (out == NULL) fz_fail("out of memory");
    size_t o = 0;
    for (size_t i = 0; i + 1 < n && hexval(p[i]) >= 0 && hexval(p[i + 1]) >= 0; i += 2)
        out[o++] = (unsigned char)(hexval(p[i]) * 16 + hexval(p[i + 1]));
    *out_len = o;
    return out;
}

static void bind_value(sqlite3_stmt *st, int col, const char *f, size_t n) {
    char num[FZ_INT_TEXT_MAX + 1];
    if (n == 1 && f[0] == 'n') {
        sqlite3_bind_null(st, col);
    } else if (n >= 2 && f[1] == ':' && (f[0] == 'i' || f[0] == 'f')) {
        size_t k = n - 2 < FZ_INT_TEXT_MAX ? n - 2 : FZ_INT_TEXT_MAX;
        memcpy(num, f + 2, k);
        num[k] = '\0';
        if (f[0] == 'i')
            sqlite3_bind_int64(st, col, strtoll(num, NULL, 0));
        else
            sqlite3_bind_double(st, col, strtod(num, NULL));
    } else if (n >= 2 && f[1] == ':' && (f[0] == 'x' || f[0] == 'b')) {
        size_t len;
        unsigned char *bytes = unhex(f + 2, n - 2, &len);
        if (f[0] == 'x')
            sqlite3_bind_text(st, col, (const char *)bytes, (int)len, SQLITE_TRANSIENT);
        else
            sqlite3_bind_blob(st, col, bytes, (int)len, SQLITE_TRANSIENT);
        free(bytes);
    } else if (n >= 2 && f[1] == ':' && f[0] == 't') {
        sqlite3_bind_text(st, col, f + 2, (int)(n - 2), SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_text(st, col, f, (int)n, SQLITE_TRANSIENT);
    }
}

static table_t *find_table(db_t *d, const char *name, size_t n) {
    for (int i = 0; i < d->table_count; i++)
        if (strlen(d->tables[i].name) == n && memcmp(d->tables[i].name, name, n) == 0)
            return &d->tables[i];
    return NULL;
}

/* Inserts one line's row; returns true when it names the meta table. */
static bool insert_row(db_t *d, const char *line, size_t n) {
    const char *end = line + n, *bar = memchr(line, '|', n);
    const char *name_end = bar ? bar : end;
    table_t *t = find_table(d, line, (size_t)(name_end - line));
    if (t == NULL) return false;
    int columns = sqlite3_bind_parameter_count(t->insert);
    const char *f = bar ? bar + 1 : end;
    for (int col = 1; col <= columns && bar != NULL; col++) {
        const char *fe = memchr(f, '|', (size_t)(end - f));
        bind_value(t->insert, col, f, (size_t)((fe ? fe : end) - f));
        if (fe == NULL) break;
        f = fe + 1;
    }
    sqlite3_step(t->insert); /* a row SQLite refuses could not be in a file either */
    sqlite3_reset(t->insert);
    sqlite3_clear_bindings(t->insert);
    return strcmp(t->name, "meta") == 0;
}

/* ---------------------------------------------------------------- what is checked */

/* What a load accepts, the engine must be able to run: pay what is pending, expire the rest. */
static void run_loaded(fg_engine_t *e) {
    for (uint64_t id = 1; id <= FZ_ORDER_IDS_PROBED; id++) {
        const fg_order_t *o = fg_engine_order_get(e, 0, id);
        if (o != NULL && o->row.state == FG_ORDER_PENDING_PAYMENT &&
            fg_engine_payment(e, id, true, FZ_NOW_MS, &o) == FG_OK)
            fg_engine_check(e);
    }
    fg_engine_tick(e, FZ_NOW_MS + FZ_LATER_MS);
    fg_engine_check(e);
}

static void load(fg_ledger_t *l) {
    char err[512] = "";
    fg_engine_t *e = NULL;
    if (fg_engine_load(l, FZ_NOW_MS, &e, err, sizeof err) != 0) {
        if (err[0] == '\0') fz_fail("the ledger was refused without a reason");
        if (verbose) fprintf(stderr, "refused: %s\n", err);
        return;
    }
    if (verbose) fprintf(stderr, "loaded: %d sales\n", fg_engine_sale_count(e));
    run_loaded(e);
    fg_engine_free(e);
}

static void no_park(void *ctx) {
    (void)ctx;
}

/* Exports the orders of the first sales the orders name, as NDJSON and as CSV. */
static void export_orders(db_t *d) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->side, "SELECT DISTINCT CAST(sale_id AS TEXT) FROM orders LIMIT ?1",
                           -1, &st, NULL) != SQLITE_OK)
        fz_fail("cannot list sales: %s", sqlite3_errmsg(d->side));
    sqlite3_bind_int(st, 1, FZ_EXPORT_SALES_MAX);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        for (int csv = 0; id != NULL && csv < 2; csv++) {
            bool no_sale = false;
            fg_api_stream_t *s = fg_export_open(d->dir, id, csv == 1, &no_sale);
            char buf[4096];
            for (int i = 0; s != NULL && i < FZ_EXPORT_READS_MAX; i++)
                if (fg_api_stream_read(s, buf, sizeof buf, no_park, no_park, NULL) < 0) break;
            fg_api_stream_free(s);
        }
    }
    sqlite3_finalize(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    bool loose = size >= 5 && memcmp(p, "loose", 5) == 0;
    db_t *d = &dbs[loose ? 1 : 0];
    exec_sql(d->side, d->wipe_sql);
    exec_sql(d->side, "BEGIN");
    bool meta = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        meta |= insert_row(d, p, (size_t)(le - p));
        p = nl ? nl + 1 : end;
    }
    exec_sql(d->side, "COMMIT");
    if (!meta) {
        load(d->ledger);
        export_orders(d);
        return 0;
    }
    /* The schema version changed: open the ledger as a start would, then rebuild the file. */
    char err[512] = "";
    fg_ledger_t *fresh = NULL;
    if (fg_ledger_open(d->dir, &fresh, err, sizeof err) == 0) {
        load(fresh);
        fg_ledger_close(fresh);
    } else if (err[0] == '\0') {
        fz_fail("the ledger was refused at open without a reason");
    } else if (verbose) {
        fprintf(stderr, "open refused: %s\n", err);
    }
    db_close(d);
    db_open(d);
    return 0;
}
