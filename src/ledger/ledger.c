/*
 * ledger.c — floodgate's durable record on SQLite: the schema and its migrations, the batch
 * commit on the hot path, the checked read-back at start, and the read-only order export.
 *
 * A fg_ledger_t owns one SQLite connection and every statement on it. The statements are
 * prepared once at open, so a commit parses no SQL and allocates nothing per change: it binds,
 * steps and resets. A change record is the full current snapshot of its row, so every write is
 * an upsert, and a product's SKUs and a sale's pools are replaced as a whole.
 *
 * Rows are checked by the same rules on the way in (commit) and on the way out (load). A commit
 * therefore never stores a row that the next start would refuse, and a damaged file is refused
 * with its table and row named instead of being handed to the engine.
 *
 * How values are stored: ids of buyers, holds and orders are SQLite INTEGERs, which are signed,
 * so they must stay at or below INT64_MAX (the engine counts them up from 1); an idempotency
 * scope is stored as the int64 with the same bits, because FG_IDEM_SCOPE_ADMIN is UINT64_MAX;
 * market codes are their two letters; a pool's markets are one TEXT, "IN,DE,FR".
 */
#include "ledger/ledger.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "util/log.h"

#define LEDGER_FILE           "floodgate.db"
#define LEDGER_PATH_BYTES_MAX 4096
/* Long enough to ride out a checkpoint or another process's migration, short enough that a
 * stuck lock shows up as an error instead of a hang. */
#define LEDGER_BUSY_TIMEOUT_MS 5000
/* Shipping addresses and stored answers have no tighter limit in limits.h; load refuses larger
 * ones rather than allocate whatever a damaged file claims, and commit refuses them first. */
#define LEDGER_DOC_BYTES_MAX (1024 * 1024)
/* "IN,DE,FR": two letters per market and a comma between. */
#define LEDGER_POOL_MARKETS_BYTES_MAX (FG_MARKETS_PER_POOL_MAX * 3 - 1)

/* ---------------------------------------------------------------- schema */

/* Migration i takes the schema from version i to i + 1, in one transaction. Append only: a
 * released migration never changes, because databases out there already ran it. */
static const char *const k_migrations[] = {
    /* 1: the first schema. STRICT tables refuse a value of the wrong type at write time. The
     * catalog and sales keep their rowid so that load can replay them in creation order. */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
    "CREATE TABLE markets(code TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " currency TEXT NOT NULL) STRICT;"
    "CREATE TABLE products(id TEXT PRIMARY KEY, name TEXT NOT NULL, specs_json TEXT) STRICT;"
    "CREATE TABLE skus(id TEXT PRIMARY KEY, product_id TEXT NOT NULL,"
    " position INTEGER NOT NULL, name TEXT NOT NULL, attributes_json TEXT,"
    " UNIQUE(product_id, position)) STRICT;"
    "CREATE TABLE offers(sku TEXT NOT NULL, market TEXT NOT NULL, blocked INTEGER NOT NULL,"
    " price_minor INTEGER NOT NULL, reason TEXT NOT NULL,"
    " PRIMARY KEY(sku, market)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE sales(id TEXT PRIMARY KEY, name TEXT NOT NULL, opens_at_ms INTEGER NOT NULL,"
    " closes_at_ms INTEGER NOT NULL, limit_per_buyer INTEGER NOT NULL,"
    " hold_ttl_s INTEGER NOT NULL, paused INTEGER NOT NULL, closed INTEGER NOT NULL,"
    " created_at_ms INTEGER NOT NULL) STRICT;"
    "CREATE TABLE sale_pools(sale_id TEXT NOT NULL, idx INTEGER NOT NULL, sku TEXT NOT NULL,"
    " stock INTEGER NOT NULL, markets TEXT NOT NULL,"
    " PRIMARY KEY(sale_id, idx)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE buyers(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,"
    " market TEXT NOT NULL, token_hash BLOB NOT NULL, created_at_ms INTEGER NOT NULL) STRICT;"
    /* Holds are the hot table: no secondary index, so an upsert touches one b-tree. */
    "CREATE TABLE holds(id INTEGER PRIMARY KEY, buyer_id INTEGER NOT NULL,"
    " sale_id TEXT NOT NULL, pool_index INTEGER NOT NULL, market TEXT NOT NULL,"
    " quantity INTEGER NOT NULL, state INTEGER NOT NULL, created_at_ms INTEGER NOT NULL,"
    " expires_at_ms INTEGER NOT NULL, ended_at_ms INTEGER NOT NULL,"
    " order_id INTEGER NOT NULL) STRICT;"
    "CREATE TABLE orders(id INTEGER PRIMARY KEY, hold_id INTEGER NOT NULL,"
    " buyer_id INTEGER NOT NULL, sale_id TEXT NOT NULL, sku TEXT NOT NULL,"
    " market TEXT NOT NULL, quantity INTEGER NOT NULL, total_minor INTEGER NOT NULL,"
    " currency TEXT NOT NULL, state INTEGER NOT NULL, method INTEGER NOT NULL,"
    " created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,"
    " shipping_json TEXT NOT NULL) STRICT;"
    "CREATE INDEX orders_by_sale ON orders(sale_id, id);"
    /* Stored answers are appended, with no unique index on (scope, key): the engine already
     * refuses a key twice, and a random-key index would touch a page per insert. A key reused
     * after its answer expired adds a newer row; load keeps the newest. */
    "CREATE TABLE idempotency(scope INTEGER NOT NULL, key TEXT NOT NULL,"
    " fingerprint BLOB NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL,"
    " created_at_ms INTEGER NOT NULL) STRICT;"
    /* Load reads only the last day of answers; without this index a start scans them all. */
    "CREATE INDEX idempotency_by_time ON idempotency(created_at_ms);"
    "CREATE TABLE webhook_signatures(digest BLOB PRIMARY KEY, t_s INTEGER NOT NULL)"
    " STRICT, WITHOUT ROWID;"
    "CREATE INDEX webhook_signatures_by_time ON webhook_signatures(t_s);",
};

_Static_assert(sizeof k_migrations / sizeof k_migrations[0] == FG_LEDGER_SCHEMA_VERSION,
               "one migration per schema version");

/* ---------------------------------------------------------------- statements */

enum {
    ST_BEGIN_WRITE,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PUT_MARKET,
    ST_PUT_PRODUCT,
    ST_DEL_SKUS,
    ST_PUT_SKU,
    ST_PUT_OFFER,
    ST_PUT_SALE,
    ST_DEL_POOLS,
    ST_PUT_POOL,
    ST_PUT_BUYER,
    ST_PUT_ORDER,
    ST_IDEM_LAST,
    ST_PUT_WEBHOOK,
    ST_PRUNE_IDEM,
    ST_PRUNE_WEBHOOKS,
    ST_GET_MARKETS,
    ST_GET_PRODUCTS,
    ST_GET_SKUS,
    ST_GET_OFFERS,
    ST_GET_SALES,
    ST_GET_POOLS,
    ST_GET_BUYERS,
    ST_GET_HOLDS,
    ST_GET_ORDERS,
    ST_GET_IDEM,
    ST_GET_WEBHOOKS,
    ST_META_GET,
    ST_META_SET,
    ST_COUNT
};

/* The columns of an order, in the order rd_order reads them (load and export). */
#define ORDER_COLUMNS(t)                                                                           \
    t "id, " t "hold_id, " t "buyer_id, " t "sale_id, " t "sku, " t "market, " t "quantity, " t    \
      "total_minor, " t "currency, " t "state, " t "method, " t "created_at_ms, " t                \
      "updated_at_ms, " t "shipping_json"

static const char *const k_sql[ST_COUNT] = {
    /* IMMEDIATE takes the write lock at BEGIN, so a busy database fails before any work. */
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PUT_MARKET] = "INSERT INTO markets(code, name, currency) VALUES(?1, ?2, ?3)"
                      " ON CONFLICT(code) DO UPDATE SET name = excluded.name,"
                      " currency = excluded.currency",
    [ST_PUT_PRODUCT] = "INSERT INTO products(id, name, specs_json) VALUES(?1, ?2, ?3)"
                       " ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
                       " specs_json = excluded.specs_json",
    [ST_DEL_SKUS] = "DELETE FROM skus WHERE product_id = ?1",
    /* A plain INSERT: a SKU id that another product still owns is an error, not a move. */
    [ST_PUT_SKU] = "INSERT INTO skus(id, product_id, position, name, attributes_json)"
                   " VALUES(?1, ?2, ?3, ?4, ?5)",
    [ST_PUT_OFFER] = "INSERT INTO offers(sku, market, blocked, price_minor, reason)"
                     " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(sku, market) DO UPDATE SET"
                     " blocked = excluded.blocked, price_minor = excluded.price_minor,"
                     " reason = excluded.reason",
    [ST_PUT_SALE] = "INSERT INTO sales(id, name, opens_at_ms, closes_at_ms, limit_per_buyer,"
                    " hold_ttl_s, paused, closed, created_at_ms)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO UPDATE SET"
                    " name = excluded.name, opens_at_ms = excluded.opens_at_ms,"
                    " closes_at_ms = excluded.closes_at_ms,"
                    " limit_per_buyer = excluded.limit_per_buyer,"
                    " hold_ttl_s = excluded.hold_ttl_s, paused = excluded.paused,"
                    " closed = excluded.closed, created_at_ms = excluded.created_at_ms",
    [ST_DEL_POOLS] = "DELETE FROM sale_pools WHERE sale_id = ?1",
    [ST_PUT_POOL] = "INSERT INTO sale_pools(sale_id, idx, sku, stock, markets)"
                    " VALUES(?1, ?2, ?3, ?4, ?5)",
    /* ON CONFLICT(id) only: a second buyer with the same email still fails on UNIQUE. */
    [ST_PUT_BUYER] = "INSERT INTO buyers(id, email, market, token_hash, created_at_ms)"
                     " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET"
                     " email = excluded.email, market = excluded.market,"
                     " token_hash = excluded.token_hash, created_at_ms = excluded.created_at_ms",
    [ST_PUT_ORDER] = "INSERT INTO orders(" ORDER_COLUMNS(
        "") ")"
            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            " ON CONFLICT(id) DO UPDATE SET hold_id = excluded.hold_id,"
            " buyer_id = excluded.buyer_id, sale_id = excluded.sale_id,"
            " sku = excluded.sku, market = excluded.market,"
            " quantity = excluded.quantity, total_minor = excluded.total_minor,"
            " currency = excluded.currency, state = excluded.state,"
            " method = excluded.method, created_at_ms = excluded.created_at_ms,"
            " updated_at_ms = excluded.updated_at_ms,"
            " shipping_json = excluded.shipping_json",
    /* The newest row always stays, so that SQLite never hands out a row id again (it picks
     * max + 1): the engine finds answers by row id and dates them by row id order. */
    [ST_PRUNE_IDEM] = "DELETE FROM idempotency WHERE created_at_ms < ?1"
                      " AND rowid < (SELECT max(rowid) FROM idempotency)",
    [ST_IDEM_LAST] = "SELECT max(rowid) FROM idempotency",
    [ST_PRUNE_WEBHOOKS] = "DELETE FROM webhook_signatures WHERE t_s < ?1",
    [ST_PUT_WEBHOOK] = "INSERT INTO webhook_signatures(digest, t_s) VALUES(?1, ?2)"
                       " ON CONFLICT(digest) DO UPDATE SET t_s = excluded.t_s",
    [ST_GET_MARKETS] = "SELECT code, name, currency FROM markets ORDER BY rowid",
    [ST_GET_PRODUCTS] = "SELECT id, name, specs_json FROM products ORDER BY rowid",
    [ST_GET_SKUS] = "SELECT position, id, name, attributes_json FROM skus"
                    " WHERE product_id = ?1 ORDER BY position",
    [ST_GET_OFFERS] = "SELECT sku, market, blocked, price_minor, reason FROM offers"
                      " ORDER BY sku, market",
    [ST_GET_SALES] = "SELECT id, name, opens_at_ms, closes_at_ms, limit_per_buyer, hold_ttl_s,"
                     " paused, closed, created_at_ms FROM sales ORDER BY rowid",
    [ST_GET_POOLS] = "SELECT idx, sku, stock, markets FROM sale_pools WHERE sale_id = ?1"
                     " ORDER BY idx",
    [ST_GET_BUYERS] = "SELECT id, email, market, token_hash, created_at_ms FROM buyers"
                      " ORDER BY id",
    [ST_GET_HOLDS] = "SELECT id, buyer_id, sale_id, pool_index, market, quantity, state,"
                     " created_at_ms, expires_at_ms, ended_at_ms, order_id FROM holds"
                     " ORDER BY id",
    [ST_GET_ORDERS] = "SELECT " ORDER_COLUMNS("") " FROM orders ORDER BY id",
    [ST_GET_IDEM] = "SELECT scope, key, fingerprint, status, body, created_at_ms, rowid"
                    " FROM idempotency WHERE created_at_ms >= ?1 ORDER BY rowid",
    [ST_GET_WEBHOOKS] = "SELECT digest, t_s FROM webhook_signatures WHERE t_s >= ?1"
                        " ORDER BY t_s",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
};

/* ---------------------------------------------------------------- multi-row writes */

/* Holds and stored answers are nearly all of a commit's rows: one of each per hold placed.
 * Running a statement costs SQLite more than the row it writes: each run opens its cursors,
 * allocates their memory and the record's, and frees it all when it halts (Debian's SQLite is
 * built with SQLITE_OMIT_LOOKASIDE, so each of these is a malloc and a free). A commit
 * therefore queues these rows and writes up to LEDGER_PUT_ROWS_MAX of them with one multi-row
 * INSERT, prepared at open for each size in k_put_rows; a queue of n rows is written with the
 * largest sizes first, so 130 rows take 64 + 64 + 1 + 1. */
#define LEDGER_PUT_ROWS_MAX      64
#define LEDGER_PUT_SIZES         4
#define LEDGER_HOLD_PARAMS       11 /* parameters per row of k_put_hold_head */
#define LEDGER_IDEM_PARAMS       7  /* parameters per row of k_put_idem_head */
#define LEDGER_PUT_SQL_BYTES_MAX 4096

static const int k_put_rows[LEDGER_PUT_SIZES] = {LEDGER_PUT_ROWS_MAX, 16, 4, 1};

/* An upsert updates the row in place; INSERT OR REPLACE would delete and insert it. Rows of
 * one statement are applied in order, so a hold that appears twice keeps its last snapshot. */
static const char k_put_hold_head[] =
    "INSERT INTO holds(id, buyer_id, sale_id, pool_index, market, quantity, state,"
    " created_at_ms, expires_at_ms, ended_at_ms, order_id) VALUES";
static const char k_put_hold_tail[] =
    " ON CONFLICT(id) DO UPDATE SET buyer_id = excluded.buyer_id,"
    " sale_id = excluded.sale_id, pool_index = excluded.pool_index,"
    " market = excluded.market, quantity = excluded.quantity,"
    " state = excluded.state, created_at_ms = excluded.created_at_ms,"
    " expires_at_ms = excluded.expires_at_ms,"
    " ended_at_ms = excluded.ended_at_ms, order_id = excluded.order_id";
/* The row id is given, not left to SQLite, so that a multi-row INSERT still tells each answer
 * its row id. The commit gives max(rowid) + 1, what SQLite itself would have picked. */
static const char k_put_idem_head[] =
    "INSERT INTO idempotency(rowid, scope, key, fingerprint, status, body, created_at_ms)"
    " VALUES";

/* Reads one stored answer back by its row id, on the answer reader's own connection. */
static const char k_answer_sql[] = "SELECT scope, key, fingerprint, status, body, created_at_ms,"
                                   " rowid FROM idempotency WHERE rowid = ?1";

struct fg_ledger {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    /* [i] writes k_put_rows[i] rows at once. */
    sqlite3_stmt *put_holds[LEDGER_PUT_SIZES];
    sqlite3_stmt *put_idems[LEDGER_PUT_SIZES];
    /* A read-only connection for fg_ledger_answer_get, used by the engine's thread while the
     * commit thread writes on db (WAL readers see the last committed state). */
    sqlite3 *reader;
    sqlite3_stmt *answer_st;
};

struct fg_ledger_export {
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t last_id; /* keyset cursor: the next page starts after this order id */
    int page_rows;   /* rows returned from the current page */
    bool done;
};

/* ---------------------------------------------------------------- small helpers */

static int failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a message (when there is room for one) and returns -1, so `return failf(...)` reads
 * as what it does. */
static int failf(char *err, size_t errlen, const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int64_t u64_to_i64(uint64_t v) {
    int64_t s;
    memcpy(&s, &v, sizeof s);
    return s;
}

static uint64_t i64_to_u64(int64_t v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* Steps a statement that returns no rows, its parameters bound by the caller (bind_rc: the
 * OR of the bind results), and resets it so it holds no lock. 0 when done; -1 with SQLite's
 * message in why, taken before the reset. Parameters bound to the caller's stack stay behind
 * in the statement, unread, until its next use binds every one of them again. */
static int step_done(sqlite3 *db, sqlite3_stmt *st, int bind_rc, char *why, size_t whylen) {
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(st) : bind_rc;
    if (rc != SQLITE_DONE) failf(why, whylen, "%s", sqlite3_errmsg(db));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int db_path(const char *dir, char *path, size_t cap, char *err, size_t errlen) {
    int n = snprintf(path, cap, "%s/%s", dir, LEDGER_FILE);
    if (n < 0 || (size_t)n >= cap)
        return failf(err, errlen, "ledger: directory path is longer than %d bytes",
                     LEDGER_PATH_BYTES_MAX - (int)sizeof LEDGER_FILE - 1);
    return 0;
}

/* Opens a connection with floodgate's settings for every connection. *db is NULL on failure. */
static int connect_db(const char *path, int flags, sqlite3 **db, char *err, size_t errlen) {
    /* NOMUTEX: a connection is used by one thread at a time (ledger.h), so SQLite's own
     * per-call mutex buys nothing. */
    int rc = sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        failf(err, errlen, "ledger: cannot open %s: %s", path,
              *db != NULL ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_extended_result_codes(*db, 1);
    sqlite3_busy_timeout(*db, LEDGER_BUSY_TIMEOUT_MS);
    /* The file is ours, but a damaged or tampered one must not be able to run code or rewrite
     * the schema through us. */
    sqlite3_db_config(*db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(*db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    return 0;
}

/* Runs a query expected to return at most one TEXT value. 1 found, 0 no row, -1 error. */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t cap) {
    sqlite3_stmt *st = NULL;
    int found = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        int n = sqlite3_column_bytes(st, 0);
        if (v != NULL && n >= 0 && (size_t)n < cap) {
            memcpy(out, v, (size_t)n);
            out[n] = '\0';
            found = 1;
        }
    } else if (rc == SQLITE_DONE) {
        found = 0;
    }
    /* finalize keeps the step's error for sqlite3_errmsg */
    sqlite3_finalize(st);
    return found;
}

/* ---------------------------------------------------------------- open and migrate */

static int configure(sqlite3 *db, const char *path, char *err, size_t errlen) {
    char mode[16];
    /* The first statement on a file that is not a database fails here, with SQLite's words. */
    if (query_text(db, "PRAGMA journal_mode=WAL", mode, sizeof mode) != 1)
        return failf(err, errlen, "ledger: %s: %s", path, sqlite3_errmsg(db));
    if (strcmp(mode, "wal") != 0)
        return failf(err, errlen, "ledger: %s: cannot use WAL (journal mode is %s)", path, mode);
    /* FULL: in WAL mode every commit syncs the log, so a returned commit survives power loss
     * (I3). Rows arrive as snapshots in engine order, so foreign keys would only add work. */
    /* MEMORY: a multi-row INSERT (k_put_rows) keeps a statement journal of the pages it
     * changes, to undo itself alone; past 64 KiB (a few dozen hold rows updated on random
     * pages) SQLite would spill it to a temporary file, a write per page for nothing durable. */
    if (sqlite3_exec(db,
                     "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;"
                     " PRAGMA temp_store=MEMORY;",
                     NULL, NULL, NULL) != SQLITE_OK)
        return failf(err, errlen, "ledger: %s: %s", path, sqlite3_errmsg(db));
    return 0;
}

/* Reads the schema version inside the caller's transaction: 0 for an empty file. */
static int read_version(sqlite3 *db, const char *path, int *version, char *err, size_t errlen) {
    char text[32];
    int rc = query_text(db,
                        "SELECT count(*) FROM sqlite_master"
                        " WHERE type = 'table' AND name = 'meta'",
                        text, sizeof text);
    if (rc != 1) return failf(err, errlen, "ledger: %s: %s", path, sqlite3_errmsg(db));
    if (strcmp(text, "0") == 0) {
        rc = query_text(db, "SELECT count(*) FROM sqlite_master", text, sizeof text);
        if (rc != 1) return failf(err, errlen, "ledger: %s: %s", path, sqlite3_errmsg(db));
        if (strcmp(text, "0") != 0)
            return failf(err, errlen,
                         "ledger: %s has tables but no meta table: not a floodgate "
                         "database",
                         path);
        *version = 0;
        return 0;
    }
    rc = query_text(db, "SELECT value FROM meta WHERE key = 'schema_version'", text, sizeof text);
    if (rc < 0) return failf(err, errlen, "ledger: %s: %s", path, sqlite3_errmsg(db));
    if (rc == 0) return failf(err, errlen, "ledger: %s: meta has no schema_version", path);
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || v < 0 || v > 1000000)
        return failf(err, errlen, "ledger: %s: schema_version '%s' is not a version", path, text);
    *version = (int)v;
    return 0;
}

/* Records the schema version inside the caller's transaction. */
static int write_version(sqlite3 *db, int version) {
    char text[16];
    snprintf(text, sizeof text, "%d", version);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO meta(key, value) VALUES('schema_version', ?1)"
                                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Applies the next migration when one is due. 1 applied, 0 up to date, -1 error. Each step
 * reads the version under the write lock, so two processes opening at once cannot both run
 * a migration. */
static int migrate_step(sqlite3 *db, const char *path, char *err, size_t errlen) {
    int version = 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return failf(err, errlen, "ledger: %s: %s", path, sqlite3_errmsg(db));
    if (read_version(db, path, &version, err, errlen) != 0) goto fail;
    if (version > FG_LEDGER_SCHEMA_VERSION) {
        failf(err, errlen,
              "ledger: %s has schema version %d, newer than this floodgate's %d; "
              "run a newer floodgate",
              path, version, FG_LEDGER_SCHEMA_VERSION);
        goto fail;
    }
    if (version == FG_LEDGER_SCHEMA_VERSION) {
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        return 0;
    }
    if (sqlite3_exec(db, k_migrations[version], NULL, NULL, NULL) != SQLITE_OK ||
        write_version(db, version + 1) != 0 ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        failf(err, errlen, "ledger: %s: migration to schema version %d failed: %s", path,
              version + 1, sqlite3_errmsg(db));
        goto fail;
    }
    FG_LOG_INFO("event=ledger_migrated path=%s schema_version=%d", path, version + 1);
    return 1;
fail:
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return failf(err, errlen, "ledger: cannot prepare \"%.60s\": %s", sql,
                     sqlite3_errmsg(db));
    return 0;
}

/* head, then rows groups of params "?" each, then tail: "... VALUES(?, ?),(?, ?) ...". */
static void put_sql(char *out, size_t cap, const char *head, int params, int rows,
                    const char *tail) {
    size_t n = (size_t)snprintf(out, cap, "%s", head);
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < params; p++) {
            FG_ASSERT(n < cap);
            n += (size_t)snprintf(out + n, cap - n, "%s?%s", p > 0 ? ", " : r > 0 ? ",(" : "(",
                                  p == params - 1 ? ")" : "");
        }
    FG_ASSERT(n < cap);
    n += (size_t)snprintf(out + n, cap - n, "%s", tail);
    FG_ASSERT(n < cap); /* LEDGER_PUT_SQL_BYTES_MAX holds the largest statement */
}

static int prepare_all(fg_ledger_t *l, char *err, size_t errlen) {
    for (int i = 0; i < ST_COUNT; i++) {
        FG_ASSERT(k_sql[i] != NULL);
        if (prepare(l->db, k_sql[i], &l->st[i], err, errlen) != 0) return -1;
    }
    char sql[LEDGER_PUT_SQL_BYTES_MAX];
    for (int i = 0; i < LEDGER_PUT_SIZES; i++) {
        /* Largest first, down to one row, so that every queue can be written (flush_queue). */
        FG_ASSERT(i == 0 ? k_put_rows[i] == LEDGER_PUT_ROWS_MAX
                         : k_put_rows[i] < k_put_rows[i - 1]);
        FG_ASSERT(i < LEDGER_PUT_SIZES - 1 || k_put_rows[i] == 1);
        put_sql(sql, sizeof sql, k_put_hold_head, LEDGER_HOLD_PARAMS, k_put_rows[i],
                k_put_hold_tail);
        if (prepare(l->db, sql, &l->put_holds[i], err, errlen) != 0) return -1;
        put_sql(sql, sizeof sql, k_put_idem_head, LEDGER_IDEM_PARAMS, k_put_rows[i], "");
        if (prepare(l->db, sql, &l->put_idems[i], err, errlen) != 0) return -1;
    }
    return 0;
}

int fg_ledger_open(const char *dir, fg_ledger_t **out, char *err, size_t errlen) {
    FG_ASSERT(dir != NULL && out != NULL);
    *out = NULL;
    char path[LEDGER_PATH_BYTES_MAX];
    if (db_path(dir, path, sizeof path, err, errlen) != 0) return -1;
    fg_ledger_t *l = calloc(1, sizeof *l);
    if (l == NULL) return failf(err, errlen, "ledger: out of memory");
    if (connect_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &l->db, err, errlen) != 0)
        goto fail;
    if (configure(l->db, path, err, errlen) != 0) goto fail;
    int rc;
    while ((rc = migrate_step(l->db, path, err, errlen)) == 1)
        continue;
    if (rc != 0) goto fail;
    if (prepare_all(l, err, errlen) != 0) goto fail;
    if (connect_db(path, SQLITE_OPEN_READONLY, &l->reader, err, errlen) != 0) goto fail;
    if (sqlite3_prepare_v3(l->reader, k_answer_sql, -1, SQLITE_PREPARE_PERSISTENT, &l->answer_st,
                           NULL) != SQLITE_OK) {
        failf(err, errlen, "ledger: cannot prepare the answer reader: %s",
              sqlite3_errmsg(l->reader));
        goto fail;
    }
    *out = l;
    return 0;
fail:
    fg_ledger_close(l);
    return -1;
}

void fg_ledger_close(fg_ledger_t *l) {
    if (l == NULL) return;
    sqlite3_finalize(l->answer_st);
    sqlite3_close(l->reader); /* read-only, nothing to lose */
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(l->st[i]);
    for (int i = 0; i < LEDGER_PUT_SIZES; i++) {
        sqlite3_finalize(l->put_holds[i]);
        sqlite3_finalize(l->put_idems[i]);
    }
    /* With every statement finalized this cannot be busy; the last close also checkpoints the
     * log into the database file. */
    if (sqlite3_close(l->db) != SQLITE_OK)
        FG_LOG_ERROR("event=ledger_close_failed error=\"%s\"", sqlite3_errmsg(l->db));
    free(l);
}

/* ---------------------------------------------------------------- row rules */

/* Each check_* returns 0, or -1 with why set. They run on every change before it is written
 * and on every row after it is read, so what commit accepts, load accepts. */

static int check_str(const char *s, size_t cap, size_t min, size_t max, const char *what, char *why,
                     size_t whylen) {
    size_t n = strnlen(s, cap);
    if (n == cap) return failf(why, whylen, "%s is not NUL-terminated", what);
    if (n < min || n > max)
        return failf(why, whylen, "%s has %zu bytes, not %zu to %zu", what, n, min, max);
    return 0;
}

static bool is_id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int check_id(const char *s, size_t cap, const char *what, char *why, size_t whylen) {
    if (check_str(s, cap, 1, FG_ID_BYTES_MAX, what, why, whylen) != 0) return -1;
    for (const char *p = s; *p != '\0'; p++)
        if (!is_id_char(*p))
            return failf(why, whylen, "%s has byte 0x%02x, outside [A-Za-z0-9._-]", what,
                         (unsigned char)*p);
    return 0;
}

/* Exactly n upper-case ASCII letters: a market (2) or a currency (3). */
static int check_code(const char *s, size_t cap, size_t n, const char *what, char *why,
                      size_t whylen) {
    if (check_str(s, cap, n, n, what, why, whylen) != 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return failf(why, whylen, "%s '%s' is not %zu upper-case letters", what, s, n);
    return 0;
}

static int check_mcode(fg_mcode_t c, const char *what, char *why, size_t whylen) {
    char s[3];
    fg_mcode_str(c, s);
    if (s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z')
        return failf(why, whylen, "%s 0x%04x is not 2 upper-case letters", what, (unsigned)c);
    return 0;
}

static int check_range(int64_t v, int64_t min, int64_t max, const char *what, char *why,
                       size_t whylen) {
    if (v < min || v > max)
        return failf(why, whylen, "%s %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]", what, v,
                     min, max);
    return 0;
}

/* Ids of buyers, holds and orders are SQLite integers, which are signed. */
static int check_uid(uint64_t v, const char *what, char *why, size_t whylen) {
    if (v > (uint64_t)INT64_MAX)
        return failf(why, whylen, "%s %" PRIu64 " is above INT64_MAX", what, v);
    return 0;
}

/* A serialized document: nullable or not, at most max bytes. */
static int check_doc(const char *s, size_t max, bool nullable, const char *what, char *why,
                     size_t whylen) {
    if (s == NULL) return nullable ? 0 : failf(why, whylen, "%s is missing", what);
    if (strnlen(s, max + 1) > max)
        return failf(why, whylen, "%s is longer than %zu bytes", what, max);
    return 0;
}

static int check_market(const fg_market_t *m, char *why, size_t whylen) {
    if (check_code(m->code, sizeof m->code, 2, "code", why, whylen) ||
        check_str(m->name, sizeof m->name, 0, FG_NAME_BYTES_MAX, "name", why, whylen) ||
        check_code(m->currency, sizeof m->currency, 3, "currency", why, whylen))
        return -1;
    return 0;
}

static int check_sku(const fg_sku_t *s, char *why, size_t whylen) {
    if (check_id(s->id, sizeof s->id, "sku id", why, whylen) ||
        check_str(s->name, sizeof s->name, 0, FG_NAME_BYTES_MAX, "sku name", why, whylen) ||
        check_doc(s->attributes_json, FG_JSON_DOC_BYTES_MAX, true, "attributes_json", why, whylen))
        return -1;
    return 0;
}

static int check_product(const fg_product_t *p, char *why, size_t whylen) {
    if (check_id(p->id, sizeof p->id, "id", why, whylen) ||
        check_str(p->name, sizeof p->name, 0, FG_NAME_BYTES_MAX, "name", why, whylen) ||
        check_doc(p->specs_json, FG_JSON_DOC_BYTES_MAX, true, "specs_json", why, whylen) ||
        check_range(p->sku_count, 0, FG_SKUS_PER_PRODUCT_MAX, "sku_count", why, whylen))
        return -1;
    if (p->sku_count > 0 && p->skus == NULL) return failf(why, whylen, "skus is missing");
    for (int i = 0; i < p->sku_count; i++) {
        char inner[200];
        if (check_sku(&p->skus[i], inner, sizeof inner) != 0)
            return failf(why, whylen, "skus[%d]: %s", i, inner);
    }
    return 0;
}

static int check_offer(const fg_offer_t *o, char *why, size_t whylen) {
    if (check_id(o->sku, sizeof o->sku, "sku", why, whylen) ||
        check_code(o->market, sizeof o->market, 2, "market", why, whylen) ||
        check_str(o->reason, sizeof o->reason, 0, FG_REASON_BYTES_MAX, "reason", why, whylen))
        return -1;
    /* A blocked offer has no price, so whatever is there is not checked. */
    if (!o->blocked &&
        check_range(o->price_minor, 0, FG_PRICE_MINOR_MAX, "price_minor", why, whylen) != 0)
        return -1;
    return 0;
}

static int check_pool(const fg_pool_def_t *p, char *why, size_t whylen) {
    if (check_id(p->sku, sizeof p->sku, "sku", why, whylen) ||
        check_range(p->stock, 0, FG_STOCK_MAX, "stock", why, whylen) ||
        check_range(p->market_count, 0, FG_MARKETS_PER_POOL_MAX, "market_count", why, whylen))
        return -1;
    for (int k = 0; k < p->market_count; k++)
        if (check_mcode(p->markets[k], "market", why, whylen) != 0) return -1;
    return 0;
}

static int check_sale(const fg_sale_row_t *s, char *why, size_t whylen) {
    if (check_id(s->id, sizeof s->id, "id", why, whylen) ||
        check_str(s->name, sizeof s->name, 0, FG_NAME_BYTES_MAX, "name", why, whylen) ||
        check_range(s->limit_per_buyer, 0, INT32_MAX, "limit_per_buyer", why, whylen) ||
        check_range(s->hold_ttl_s, 0, INT32_MAX, "hold_ttl_s", why, whylen) ||
        check_range(s->pool_count, 0, FG_POOLS_PER_SALE_MAX, "pool_count", why, whylen))
        return -1;
    for (int i = 0; i < s->pool_count; i++) {
        char inner[200];
        if (check_pool(&s->pools[i], inner, sizeof inner) != 0)
            return failf(why, whylen, "pools[%d]: %s", i, inner);
    }
    return 0;
}

static int check_buyer(const fg_buyer_row_t *b, char *why, size_t whylen) {
    if (check_uid(b->id, "id", why, whylen) ||
        check_str(b->email, sizeof b->email, 1, FG_EMAIL_BYTES_MAX, "email", why, whylen) ||
        check_code(b->market, sizeof b->market, 2, "market", why, whylen))
        return -1;
    return 0;
}

static int check_hold(const fg_hold_row_t *h, char *why, size_t whylen) {
    if (check_uid(h->id, "id", why, whylen) || check_uid(h->buyer_id, "buyer_id", why, whylen) ||
        check_id(h->sale_id, sizeof h->sale_id, "sale_id", why, whylen) ||
        check_range(h->pool_index, 0, FG_POOLS_PER_SALE_MAX - 1, "pool_index", why, whylen) ||
        check_mcode(h->market, "market", why, whylen) ||
        check_range(h->quantity, 0, INT32_MAX, "quantity", why, whylen) ||
        check_range(h->state, FG_HOLD_HELD, FG_HOLD_EXPIRED, "state", why, whylen) ||
        check_uid(h->order_id, "order_id", why, whylen))
        return -1;
    return 0;
}

static int check_order(const fg_order_row_t *o, char *why, size_t whylen) {
    if (check_uid(o->id, "id", why, whylen) || check_uid(o->hold_id, "hold_id", why, whylen) ||
        check_uid(o->buyer_id, "buyer_id", why, whylen) ||
        check_id(o->sale_id, sizeof o->sale_id, "sale_id", why, whylen) ||
        check_id(o->sku, sizeof o->sku, "sku", why, whylen) ||
        check_mcode(o->market, "market", why, whylen) ||
        check_range(o->quantity, 0, INT32_MAX, "quantity", why, whylen) ||
        check_range(o->total_minor, 0, INT64_MAX, "total_minor", why, whylen) ||
        check_code(o->currency, sizeof o->currency, 3, "currency", why, whylen) ||
        check_range(o->state, FG_ORDER_PENDING_PAYMENT, FG_ORDER_CANCELLED, "state", why, whylen) ||
        check_range(o->method, FG_PAY_INSTANT, FG_PAY_WEBHOOK, "method", why, whylen) ||
        check_doc(o->shipping_json, LEDGER_DOC_BYTES_MAX, false, "shipping_json", why, whylen))
        return -1;
    return 0;
}

static int check_idem(const fg_idem_row_t *r, char *why, size_t whylen) {
    if (r->key == NULL) return failf(why, whylen, "key is missing");
    size_t n = strnlen(r->key, FG_IDEM_KEY_BYTES_MAX + 1);
    if (n < 1 || n > FG_IDEM_KEY_BYTES_MAX)
        return failf(why, whylen, "key is not 1 to %d bytes", FG_IDEM_KEY_BYTES_MAX);
    if (check_range(r->status, 100, 599, "status", why, whylen) ||
        check_doc(r->body, LEDGER_DOC_BYTES_MAX, false, "body", why, whylen))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- commit */

static int bind_text(sqlite3_stmt *st, int i, const char *s) {
    /* STATIC: the text outlives the step, which happens in the same function as the bind. */
    return s == NULL ? sqlite3_bind_null(st, i) : sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static int put_market(fg_ledger_t *l, const fg_market_t *m, char *why, size_t whylen) {
    FG_ASSERT(m != NULL); /* the engine never emits an empty change */
    if (check_market(m, why, whylen) != 0) return -1;
    sqlite3_stmt *st = l->st[ST_PUT_MARKET];
    int rc = bind_text(st, 1, m->code);
    rc |= bind_text(st, 2, m->name);
    rc |= bind_text(st, 3, m->currency);
    return step_done(l->db, st, rc, why, whylen);
}

static int put_product(fg_ledger_t *l, const fg_product_t *p, char *why, size_t whylen) {
    FG_ASSERT(p != NULL); /* the engine never emits an empty change */
    if (check_product(p, why, whylen) != 0) return -1;
    sqlite3_stmt *st = l->st[ST_PUT_PRODUCT];
    int rc = bind_text(st, 1, p->id);
    rc |= bind_text(st, 2, p->name);
    rc |= bind_text(st, 3, p->specs_json);
    if (step_done(l->db, st, rc, why, whylen) != 0) return -1;
    st = l->st[ST_DEL_SKUS];
    if (step_done(l->db, st, bind_text(st, 1, p->id), why, whylen) != 0) return -1;
    st = l->st[ST_PUT_SKU];
    for (int i = 0; i < p->sku_count; i++) {
        const fg_sku_t *s = &p->skus[i];
        rc = bind_text(st, 1, s->id);
        rc |= bind_text(st, 2, p->id);
        rc |= sqlite3_bind_int(st, 3, i);
        rc |= bind_text(st, 4, s->name);
        rc |= bind_text(st, 5, s->attributes_json);
        if (step_done(l->db, st, rc, why, whylen) != 0) return -1;
    }
    return 0;
}

static int put_offer(fg_ledger_t *l, const fg_offer_t *o, char *why, size_t whylen) {
    FG_ASSERT(o != NULL); /* the engine never emits an empty change */
    if (check_offer(o, why, whylen) != 0) return -1;
    sqlite3_stmt *st = l->st[ST_PUT_OFFER];
    int rc = bind_text(st, 1, o->sku);
    rc |= bind_text(st, 2, o->market);
    rc |= sqlite3_bind_int(st, 3, o->blocked ? 1 : 0);
    rc |= sqlite3_bind_int64(st, 4, o->price_minor);
    rc |= bind_text(st, 5, o->reason);
    return step_done(l->db, st, rc, why, whylen);
}

/* "IN,DE,FR" from a pool's codes; the pool was checked, so it fits. */
static void pool_markets_text(const fg_pool_def_t *p, char out[LEDGER_POOL_MARKETS_BYTES_MAX + 1]) {
    size_t n = 0;
    for (int k = 0; k < p->market_count; k++) {
        if (k > 0) out[n++] = ',';
        fg_mcode_str(p->markets[k], out + n);
        n += 2;
    }
    out[n] = '\0';
}

static int put_sale(fg_ledger_t *l, const fg_sale_row_t *s, char *why, size_t whylen) {
    FG_ASSERT(s != NULL); /* the engine never emits an empty change */
    if (check_sale(s, why, whylen) != 0) return -1;
    sqlite3_stmt *st = l->st[ST_PUT_SALE];
    int rc = bind_text(st, 1, s->id);
    rc |= bind_text(st, 2, s->name);
    rc |= sqlite3_bind_int64(st, 3, s->opens_at_ms);
    rc |= sqlite3_bind_int64(st, 4, s->closes_at_ms);
    rc |= sqlite3_bind_int(st, 5, s->limit_per_buyer);
    rc |= sqlite3_bind_int(st, 6, s->hold_ttl_s);
    rc |= sqlite3_bind_int(st, 7, s->paused ? 1 : 0);
    rc |= sqlite3_bind_int(st, 8, s->closed ? 1 : 0);
    rc |= sqlite3_bind_int64(st, 9, s->created_at_ms);
    if (step_done(l->db, st, rc, why, whylen) != 0) return -1;
    st = l->st[ST_DEL_POOLS];
    if (step_done(l->db, st, bind_text(st, 1, s->id), why, whylen) != 0) return -1;
    st = l->st[ST_PUT_POOL];
    for (int i = 0; i < s->pool_count; i++) {
        char markets[LEDGER_POOL_MARKETS_BYTES_MAX + 1];
        pool_markets_text(&s->pools[i], markets);
        rc = bind_text(st, 1, s->id);
        rc |= sqlite3_bind_int(st, 2, i);
        rc |= bind_text(st, 3, s->pools[i].sku);
        rc |= sqlite3_bind_int64(st, 4, s->pools[i].stock);
        rc |= bind_text(st, 5, markets);
        if (step_done(l->db, st, rc, why, whylen) != 0) return -1;
    }
    return 0;
}

static int put_buyer(fg_ledger_t *l, const fg_buyer_row_t *b, char *why, size_t whylen) {
    FG_ASSERT(b != NULL); /* the engine never emits an empty change */
    if (check_buyer(b, why, whylen) != 0) return -1;
    sqlite3_stmt *st = l->st[ST_PUT_BUYER];
    int rc = sqlite3_bind_int64(st, 1, (int64_t)b->id);
    rc |= bind_text(st, 2, b->email);
    rc |= bind_text(st, 3, b->market);
    rc |= sqlite3_bind_blob(st, 4, b->token_hash, sizeof b->token_hash, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 5, b->created_at_ms);
    return step_done(l->db, st, rc, why, whylen);
}

static int put_order(fg_ledger_t *l, const fg_order_row_t *o, char *why, size_t whylen) {
    if (check_order(o, why, whylen) != 0) return -1;
    char market[3];
    fg_mcode_str(o->market, market);
    sqlite3_stmt *st = l->st[ST_PUT_ORDER];
    int rc = sqlite3_bind_int64(st, 1, (int64_t)o->id);
    rc |= sqlite3_bind_int64(st, 2, (int64_t)o->hold_id);
    rc |= sqlite3_bind_int64(st, 3, (int64_t)o->buyer_id);
    rc |= bind_text(st, 4, o->sale_id);
    rc |= bind_text(st, 5, o->sku);
    rc |= sqlite3_bind_text(st, 6, market, 2, SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, 7, o->quantity);
    rc |= sqlite3_bind_int64(st, 8, o->total_minor);
    rc |= bind_text(st, 9, o->currency);
    rc |= sqlite3_bind_int(st, 10, o->state);
    rc |= sqlite3_bind_int(st, 11, o->method);
    rc |= sqlite3_bind_int64(st, 12, o->created_at_ms);
    rc |= sqlite3_bind_int64(st, 13, o->updated_at_ms);
    rc |= bind_text(st, 14, o->shipping_json);
    return step_done(l->db, st, rc, why, whylen);
}

static int put_webhook(fg_ledger_t *l, const fg_webhook_row_t *w, char *why, size_t whylen) {
    sqlite3_stmt *st = l->st[ST_PUT_WEBHOOK];
    int rc = sqlite3_bind_blob(st, 1, w->digest, sizeof w->digest, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 2, w->t_s);
    return step_done(l->db, st, rc, why, whylen);
}

static int prune(fg_ledger_t *l, const fg_prune_row_t *p, char *why, size_t whylen) {
    sqlite3_stmt *st = l->st[ST_PRUNE_IDEM];
    if (step_done(l->db, st, sqlite3_bind_int64(st, 1, p->idem_before_ms), why, whylen) != 0)
        return -1;
    st = l->st[ST_PRUNE_WEBHOOKS];
    return step_done(l->db, st, sqlite3_bind_int64(st, 1, p->webhook_before_s), why, whylen);
}

/* ---------------------------------------------------------------- commit: queued rows */

/* Holds or stored answers waiting for their multi-row INSERT: positions in the batch. */
typedef struct {
    size_t at[LEDGER_PUT_ROWS_MAX];
    int n;
} put_queue_t;

/* One commit's state. */
typedef struct {
    const fg_change_t *changes;
    put_queue_t holds, idems;
    bool idem_rowid_known; /* idem_rowid_last was read in this transaction, since any prune */
    int64_t idem_rowid_last;
    size_t failed_at; /* on failure: the first change of the statement that failed */
    int failed_rows;  /* and how many rows it wrote */
} batch_t;

/* Binds hold h as row `row` of a multi-row statement; market receives its code, which must
 * live until the step. The OR of the bind results. */
static int bind_hold(sqlite3_stmt *st, int row, const fg_hold_row_t *h, char market[3]) {
    int p = row * LEDGER_HOLD_PARAMS;
    fg_mcode_str(h->market, market);
    int rc = sqlite3_bind_int64(st, p + 1, (int64_t)h->id);
    rc |= sqlite3_bind_int64(st, p + 2, (int64_t)h->buyer_id);
    rc |= bind_text(st, p + 3, h->sale_id);
    rc |= sqlite3_bind_int(st, p + 4, h->pool_index);
    rc |= sqlite3_bind_text(st, p + 5, market, 2, SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, p + 6, h->quantity);
    rc |= sqlite3_bind_int(st, p + 7, h->state);
    rc |= sqlite3_bind_int64(st, p + 8, h->created_at_ms);
    rc |= sqlite3_bind_int64(st, p + 9, h->expires_at_ms);
    rc |= sqlite3_bind_int64(st, p + 10, h->ended_at_ms);
    rc |= sqlite3_bind_int64(st, p + 11, (int64_t)h->order_id);
    return rc;
}

static int bind_idem(sqlite3_stmt *st, int row, const fg_idem_row_t *r, int64_t rowid) {
    int p = row * LEDGER_IDEM_PARAMS;
    int rc = sqlite3_bind_int64(st, p + 1, rowid);
    rc |= sqlite3_bind_int64(st, p + 2, u64_to_i64(r->scope));
    rc |= bind_text(st, p + 3, r->key);
    rc |= sqlite3_bind_blob(st, p + 4, r->fingerprint, sizeof r->fingerprint, SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, p + 5, r->status);
    rc |= bind_text(st, p + 6, r->body);
    rc |= sqlite3_bind_int64(st, p + 7, r->created_at_ms);
    return rc;
}

typedef int (*put_rows_fn)(fg_ledger_t *l, batch_t *b, int size, const size_t *at, char *why,
                           size_t whylen);

/* Writes the holds at `at` with put_holds[size]. */
static int put_holds(fg_ledger_t *l, batch_t *b, int size, const size_t *at, char *why,
                     size_t whylen) {
    sqlite3_stmt *st = l->put_holds[size];
    char markets[LEDGER_PUT_ROWS_MAX][3];
    int rc = SQLITE_OK;
    for (int i = 0; i < k_put_rows[size]; i++)
        rc |= bind_hold(st, i, &b->changes[at[i]].u.hold, markets[i]);
    return step_done(l->db, st, rc, why, whylen);
}

/* The last row id of idempotency in this transaction; read once, then counted. */
static int idem_rowid_last(fg_ledger_t *l, batch_t *b, char *why, size_t whylen) {
    if (b->idem_rowid_known) return 0;
    sqlite3_stmt *st = l->st[ST_IDEM_LAST];
    int rc = sqlite3_step(st);
    b->idem_rowid_last = sqlite3_column_int64(st, 0); /* max() of no rows is NULL: 0 */
    if (rc != SQLITE_ROW) failf(why, whylen, "%s", sqlite3_errmsg(l->db));
    sqlite3_reset(st);
    b->idem_rowid_known = rc == SQLITE_ROW;
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Writes the answers at `at` with put_idems[size] and tells the engine each one's row id, by
 * which it reads the answer back. */
static int put_idems(fg_ledger_t *l, batch_t *b, int size, const size_t *at, char *why,
                     size_t whylen) {
    sqlite3_stmt *st = l->put_idems[size];
    int rows = k_put_rows[size];
    if (idem_rowid_last(l, b, why, whylen) != 0) return -1;
    /* SQLite would pick a random free row id here; the engine's answers need them in order. */
    if (b->idem_rowid_last > INT64_MAX - rows)
        return failf(why, whylen, "idempotency row ids are used up");
    int rc = SQLITE_OK;
    for (int i = 0; i < rows; i++)
        rc |= bind_idem(st, i, b->changes[at[i]].u.idem, b->idem_rowid_last + 1 + i);
    if (step_done(l->db, st, rc, why, whylen) != 0) return -1;
    /* Read by the engine's thread only after this batch's commit is reported to it. */
    for (int i = 0; i < rows; i++)
        b->changes[at[i]].u.idem->ledger_rowid = b->idem_rowid_last + 1 + i;
    b->idem_rowid_last += rows;
    return 0;
}

/* Writes a queue with the largest statements first and empties it. */
static int flush_queue(fg_ledger_t *l, batch_t *b, put_queue_t *q, put_rows_fn put, char *why,
                       size_t whylen) {
    int done = 0;
    for (int size = 0; size < LEDGER_PUT_SIZES; size++) {
        for (; q->n - done >= k_put_rows[size]; done += k_put_rows[size]) {
            if (put(l, b, size, q->at + done, why, whylen) != 0) {
                b->failed_at = q->at[done];
                b->failed_rows = k_put_rows[size];
                return -1;
            }
        }
    }
    FG_ASSERT(done == q->n); /* the last size is one row */
    q->n = 0;
    return 0;
}

static int flush_all(fg_ledger_t *l, batch_t *b, char *why, size_t whylen) {
    if (flush_queue(l, b, &b->holds, put_holds, why, whylen) != 0) return -1;
    return flush_queue(l, b, &b->idems, put_idems, why, whylen);
}

/* Queues change i, checked now so that a bad row is named as it would be when written alone,
 * and writes the queue when it is full. */
static int queue_row(fg_ledger_t *l, batch_t *b, put_queue_t *q, put_rows_fn put, size_t i,
                     char *why, size_t whylen) {
    q->at[q->n++] = i;
    if (q->n < LEDGER_PUT_ROWS_MAX) return 0;
    return flush_queue(l, b, q, put, why, whylen);
}

static int queue_hold(fg_ledger_t *l, batch_t *b, size_t i, char *why, size_t whylen) {
    if (check_hold(&b->changes[i].u.hold, why, whylen) != 0) return -1;
    return queue_row(l, b, &b->holds, put_holds, i, why, whylen);
}

static int queue_idem(fg_ledger_t *l, batch_t *b, size_t i, char *why, size_t whylen) {
    const fg_idem_row_t *r = b->changes[i].u.idem;
    FG_ASSERT(r != NULL); /* the engine never emits an empty change */
    if (check_idem(r, why, whylen) != 0) return -1;
    return queue_row(l, b, &b->idems, put_idems, i, why, whylen);
}

static int apply_change(fg_ledger_t *l, batch_t *b, size_t i, char *why, size_t whylen) {
    const fg_change_t *c = &b->changes[i];
    b->failed_at = i;
    b->failed_rows = 1;
    /* No other kind of change writes holds or stored answers, so queued rows may wait past
     * them, except past a prune: it must see the answers queued before it. */
    if (c->kind == FG_CH_PRUNE && flush_all(l, b, why, whylen) != 0) return -1;
    switch ((fg_change_kind_t)c->kind) {
    case FG_CH_MARKET: return put_market(l, c->u.market, why, whylen);
    case FG_CH_PRODUCT: return put_product(l, c->u.product, why, whylen);
    case FG_CH_OFFER: return put_offer(l, c->u.offer, why, whylen);
    case FG_CH_SALE: return put_sale(l, c->u.sale, why, whylen);
    case FG_CH_BUYER: return put_buyer(l, c->u.buyer, why, whylen);
    case FG_CH_HOLD: return queue_hold(l, b, i, why, whylen);
    case FG_CH_ORDER: return put_order(l, &c->u.order, why, whylen);
    case FG_CH_IDEM: return queue_idem(l, b, i, why, whylen);
    case FG_CH_WEBHOOK: return put_webhook(l, &c->u.webhook, why, whylen);
    case FG_CH_PRUNE:
        /* The newest answer survives a prune (ST_PRUNE_IDEM), yet the next row id is read
         * again rather than assumed. */
        b->idem_rowid_known = false;
        return prune(l, &c->u.prune, why, whylen);
    }
    return failf(why, whylen, "unknown change kind %d", c->kind);
}

/* Names a change for an error message, e.g. "hold 42" or "sale spring-sale". It reads at most
 * an id's bytes, since the change may be the bad one. */
static void describe_change(const fg_change_t *c, char *out, size_t cap) {
    const int w = FG_ID_BYTES_MAX;
    switch ((fg_change_kind_t)c->kind) {
    case FG_CH_MARKET: snprintf(out, cap, "market %.2s", c->u.market->code); return;
    case FG_CH_PRODUCT: snprintf(out, cap, "product %.*s", w, c->u.product->id); return;
    case FG_CH_OFFER:
        snprintf(out, cap, "offer %.*s/%.2s", w, c->u.offer->sku, c->u.offer->market);
        return;
    case FG_CH_SALE: snprintf(out, cap, "sale %.*s", w, c->u.sale->id); return;
    case FG_CH_BUYER: snprintf(out, cap, "buyer %" PRIu64, c->u.buyer->id); return;
    case FG_CH_HOLD: snprintf(out, cap, "hold %" PRIu64, c->u.hold.id); return;
    case FG_CH_ORDER: snprintf(out, cap, "order %" PRIu64, c->u.order.id); return;
    case FG_CH_IDEM:
        snprintf(out, cap, "idempotency record of scope %" PRIu64, c->u.idem->scope);
        return;
    case FG_CH_WEBHOOK:
        snprintf(out, cap, "webhook signature t=%" PRId64, c->u.webhook.t_s);
        return;
    case FG_CH_PRUNE: snprintf(out, cap, "prune"); return;
    }
    snprintf(out, cap, "change of kind %d", c->kind);
}

/* Names the change that failed, or the first of the rows written with it. */
static void describe_failure(const batch_t *b, size_t n, const char *why, char *err,
                             size_t errlen) {
    char what[112];
    describe_change(&b->changes[b->failed_at], what, sizeof what);
    if (b->failed_rows == 1)
        failf(err, errlen, "ledger: commit: change %zu of %zu (%s): %s", b->failed_at + 1, n,
              what, why);
    else
        failf(err, errlen, "ledger: commit: change %zu of %zu (%s) or one of the %d rows written"
              " with it: %s", b->failed_at + 1, n, what, b->failed_rows - 1, why);
}

/* Ends a failed transaction. SQLite may already have rolled it back (after an I/O error or a
 * full disk), and then there is nothing to end. */
static void rollback(fg_ledger_t *l) {
    char why[256];
    if (sqlite3_get_autocommit(l->db)) return;
    if (step_done(l->db, l->st[ST_ROLLBACK], SQLITE_OK, why, sizeof why) != 0)
        FG_LOG_ERROR("event=ledger_rollback_failed error=\"%s\"", why);
}

/* Classifies the failure SQLite reported last on db, before anything else runs on it.
 *
 * A failed fsync is set apart because nothing after it can be trusted: the kernel may already
 * have dropped the dirty pages it could not write, marked them clean, and a later fsync that
 * succeeds says nothing about them (PostgreSQL learned this in 2018, "fsyncgate"). SQLite does
 * not retry an fsync either. A write that fails (EIO, ENOSPC) is different: SQLite has rolled
 * the transaction back and nothing was promised, so a later successful commit is trustworthy.
 * An fsync failure can also come from COMMIT's automatic checkpoint, after the batch itself
 * committed; it is still an fsync failure and handled as one. */
static int failure_class(sqlite3 *db) {
    int code = sqlite3_extended_errcode(db);
    if (code == SQLITE_IOERR_FSYNC || code == SQLITE_IOERR_DIR_FSYNC) return FG_LEDGER_ESYNC;
    if ((code & 0xff) == SQLITE_IOERR || code == SQLITE_FULL) return FG_LEDGER_EDISK;
    return FG_LEDGER_EFAIL;
}

int fg_ledger_commit(fg_ledger_t *l, const fg_change_t *changes, size_t n, char *err,
                     size_t errlen) {
    FG_ASSERT(l != NULL);
    FG_ASSERT(n == 0 || changes != NULL);
    if (n == 0) return 0;
    char why[320];
    int cls = FG_LEDGER_EFAIL;
    if (step_done(l->db, l->st[ST_BEGIN_WRITE], SQLITE_OK, why, sizeof why) != 0) {
        cls = failure_class(l->db);
        failf(err, errlen, "ledger: commit: cannot begin: %s", why);
        goto fail;
    }
    batch_t b = {.changes = changes};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_change(l, &b, i, why, sizeof why);
    if (rc == 0) rc = flush_all(l, &b, why, sizeof why);
    if (rc != 0) {
        cls = failure_class(l->db);
        describe_failure(&b, n, why, err, errlen);
        goto fail;
    }
    if (step_done(l->db, l->st[ST_COMMIT], SQLITE_OK, why, sizeof why) != 0) {
        cls = failure_class(l->db);
        failf(err, errlen, "ledger: commit: %s", why);
        goto fail;
    }
    return 0;
fail:
    rollback(l);
    return cls;
}

int fg_ledger_probe(fg_ledger_t *l, int64_t now_ms, char *err, size_t errlen) {
    FG_ASSERT(l != NULL);
    /* A failed commit's ROLLBACK may itself have failed; the probe must not join that
     * transaction, or its "commit" would prove nothing. */
    rollback(l);
    if (!sqlite3_get_autocommit(l->db))
        return failf(err, errlen, "ledger: probe: a failed transaction is still open");
    char value[24], why[256];
    snprintf(value, sizeof value, "%" PRId64, now_ms);
    sqlite3_stmt *st = l->st[ST_META_SET];
    int rc = bind_text(st, 1, "ledger_probe_at_ms");
    rc |= bind_text(st, 2, value);
    /* Outside a transaction the upsert is its own commit, with its fsync. */
    if (step_done(l->db, st, rc, why, sizeof why) == 0) return 0;
    int cls = failure_class(l->db);
    failf(err, errlen, "ledger: probe: %s", why);
    return cls;
}

/* ---------------------------------------------------------------- reading rows */

/* A cursor over one result row. Readers take the columns in SELECT order; the first failure
 * writes the message (table, row, column, problem) and later reads do nothing, so a loader
 * reads every field and checks `bad` once. */
typedef struct {
    sqlite3_stmt *st;
    const char *op; /* "load" or "export", for messages */
    const char *table;
    char row[FG_ID_BYTES_MAX + 24]; /* names the row: its key once read, else its position */
    int col;                        /* the next column to read */
    bool bad;
    char *err;
    size_t errlen;
} rd_t;

static int rd_fail(rd_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int rd_fail(rd_t *r, const char *fmt, ...) {
    if (r->bad) return -1;
    r->bad = true;
    if (r->err == NULL || r->errlen == 0) return -1;
    int n = snprintf(r->err, r->errlen, "ledger: %s: %s row %s: ", r->op, r->table, r->row);
    if (n < 0 || (size_t)n >= r->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void rd_begin(rd_t *r, int64_t position) {
    r->col = 0;
    r->bad = false;
    snprintf(r->row, sizeof r->row, "#%" PRId64, position);
}

static void rd_label(rd_t *r, const char *key) {
    if (!r->bad) snprintf(r->row, sizeof r->row, "%s", key);
}

static void rd_label_id(rd_t *r, uint64_t id) {
    if (!r->bad) snprintf(r->row, sizeof r->row, "%" PRIu64, id);
}

static const char *rd_name(rd_t *r, int col) {
    const char *name = sqlite3_column_name(r->st, col);
    return name != NULL ? name : "?";
}

static int64_t rd_i64(rd_t *r, int64_t min, int64_t max) {
    int col = r->col++;
    if (r->bad) return 0;
    if (sqlite3_column_type(r->st, col) != SQLITE_INTEGER) {
        rd_fail(r, "%s is not an integer", rd_name(r, col));
        return 0;
    }
    int64_t v = sqlite3_column_int64(r->st, col);
    if (v < min || v > max) {
        rd_fail(r, "%s %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]", rd_name(r, col), v, min,
                max);
        return 0;
    }
    return v;
}

static uint64_t rd_uid(rd_t *r) {
    return (uint64_t)rd_i64(r, 0, INT64_MAX);
}

/* TEXT (or NULL when nullable) of at most max bytes with no NUL inside; the pointer is the
 * statement's and dies at its next step or reset. */
static const char *rd_text(rd_t *r, size_t max, bool nullable, size_t *len) {
    int col = r->col++;
    *len = 0;
    if (r->bad) return NULL;
    int type = sqlite3_column_type(r->st, col);
    if (type == SQLITE_NULL && nullable) return NULL;
    if (type != SQLITE_TEXT) {
        rd_fail(r, "%s is not text", rd_name(r, col));
        return NULL;
    }
    const char *s = (const char *)sqlite3_column_text(r->st, col);
    int n = sqlite3_column_bytes(r->st, col);
    if (s == NULL || n < 0) {
        rd_fail(r, "%s cannot be read: %s", rd_name(r, col),
                sqlite3_errmsg(sqlite3_db_handle(r->st)));
        return NULL;
    }
    if ((size_t)n > max) {
        rd_fail(r, "%s has %d bytes, more than %zu", rd_name(r, col), n, max);
        return NULL;
    }
    if (memchr(s, '\0', (size_t)n) != NULL) {
        rd_fail(r, "%s has a NUL byte inside", rd_name(r, col));
        return NULL;
    }
    *len = (size_t)n;
    return s;
}

/* Copies TEXT of min..max bytes into dst (cap > max), NUL-terminated; "" on failure. */
static void rd_str(rd_t *r, char *dst, size_t cap, size_t min, size_t max) {
    FG_ASSERT(max < cap);
    dst[0] = '\0';
    size_t n;
    int col = r->col;
    const char *s = rd_text(r, max, false, &n);
    if (s == NULL) return;
    if (n < min) {
        rd_fail(r, "%s has %zu bytes, fewer than %zu", rd_name(r, col), n, min);
        return;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static fg_mcode_t rd_mcode(rd_t *r) {
    char code[3] = ""; /* rd_str fills it or sets bad; "" lets the analyzer see it */
    rd_str(r, code, sizeof code, 2, 2);
    return r->bad ? 0 : fg_mcode(code);
}

/* A malloc'd copy of a document column; NULL for SQL NULL or on failure (see r->bad). */
static char *rd_doc_dup(rd_t *r, size_t max, bool nullable) {
    size_t n;
    const char *s = rd_text(r, max, nullable, &n);
    if (s == NULL) return NULL;
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        rd_fail(r, "out of memory");
        return NULL;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

static void rd_blob32(rd_t *r, uint8_t out[32]) {
    int col = r->col++;
    memset(out, 0, 32);
    if (r->bad) return;
    if (sqlite3_column_type(r->st, col) != SQLITE_BLOB) {
        rd_fail(r, "%s is not a blob", rd_name(r, col));
        return;
    }
    const void *p = sqlite3_column_blob(r->st, col);
    int n = sqlite3_column_bytes(r->st, col);
    if (p == NULL || n != 32) {
        rd_fail(r, "%s has %d bytes, not 32", rd_name(r, col), n);
        return;
    }
    memcpy(out, p, 32);
}

/* Parses "IN,DE,FR" into the pool's codes; check_pool then checks the letters. */
static void rd_pool_markets(rd_t *r, fg_pool_def_t *p) {
    int col = r->col;
    size_t n;
    const char *s = rd_text(r, LEDGER_POOL_MARKETS_BYTES_MAX, false, &n);
    p->market_count = 0;
    if (s == NULL || n == 0) return;
    if ((n + 1) % 3 != 0) {
        rd_fail(r, "%s is not a comma-separated list of 2-letter codes", rd_name(r, col));
        return;
    }
    for (size_t i = 0; i < n; i += 3) {
        if (i + 2 < n && s[i + 2] != ',') {
            rd_fail(r, "%s is not a comma-separated list of 2-letter codes", rd_name(r, col));
            return;
        }
        p->markets[p->market_count++] = fg_mcode(s + i);
    }
}

/* Hands a row to the visitor. A visitor that refuses may have written its own reason into
 * err (the engine's restore does): keep it and add where it stopped. */
static int rd_visit(rd_t *r, int visitor_rc) {
    if (visitor_rc == 0) return 0;
    r->bad = true;
    if (r->err == NULL || r->errlen == 0) return -1;
    size_t n = strnlen(r->err, r->errlen);
    if (n == 0)
        snprintf(r->err, r->errlen, "ledger: %s: %s row %s: stopped by the visitor", r->op,
                 r->table, r->row);
    else if (n + 1 < r->errlen)
        snprintf(r->err + n, r->errlen - n, " (ledger: %s row %s)", r->table, r->row);
    return -1;
}

/* Fails the row when a rule of check_* is broken. */
static int rd_check(rd_t *r, int check_rc, const char *why) {
    if (r->bad) return -1;
    return check_rc == 0 ? 0 : rd_fail(r, "%s", why);
}

/* ---------------------------------------------------------------- load */

typedef int (*load_fn)(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx);

static int load_market(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_market_t m;
    memset(&m, 0, sizeof m);
    rd_str(r, m.code, sizeof m.code, 2, 2);
    rd_label(r, m.code);
    rd_str(r, m.name, sizeof m.name, 0, FG_NAME_BYTES_MAX);
    rd_str(r, m.currency, sizeof m.currency, 3, 3);
    char why[256] = "";
    if (r->bad || rd_check(r, check_market(&m, why, sizeof why), why) != 0) return -1;
    return rd_visit(r, v->market(ctx, &m));
}

/* Reads one SKU row into the next slot of p->skus, growing it. */
static int load_sku_row(rd_t *r, fg_product_t *p, int *cap) {
    int64_t position = rd_i64(r, 0, FG_SKUS_PER_PRODUCT_MAX - 1);
    if (!r->bad && position != p->sku_count)
        return rd_fail(r, "position %" PRId64 " follows %d SKUs", position, p->sku_count);
    if (r->bad) return -1;
    if (p->sku_count == *cap) {
        int grown = *cap == 0 ? 4 : *cap * 2;
        fg_sku_t *skus = realloc(p->skus, (size_t)grown * sizeof *skus);
        if (skus == NULL) return rd_fail(r, "out of memory");
        p->skus = skus;
        *cap = grown;
    }
    fg_sku_t *s = &p->skus[p->sku_count];
    memset(s, 0, sizeof *s);
    rd_str(r, s->id, sizeof s->id, 1, FG_ID_BYTES_MAX);
    rd_label(r, s->id);
    rd_str(r, s->name, sizeof s->name, 0, FG_NAME_BYTES_MAX);
    s->attributes_json = rd_doc_dup(r, FG_JSON_DOC_BYTES_MAX, true);
    if (r->bad) return -1;
    p->sku_count++;
    return 0;
}

static int load_skus(fg_ledger_t *l, fg_product_t *p, char *err, size_t errlen) {
    sqlite3_stmt *st = l->st[ST_GET_SKUS];
    rd_t r = {.st = st, .op = "load", .table = "skus", .err = err, .errlen = errlen};
    if (bind_text(st, 1, p->id) != SQLITE_OK)
        return failf(err, errlen, "ledger: load: skus: %s", sqlite3_errmsg(l->db));
    int cap = 0, rc;
    int64_t position = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rd_begin(&r, ++position);
        snprintf(r.row, sizeof r.row, "%s/#%" PRId64, p->id, position);
        if (load_sku_row(&r, p, &cap) != 0) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        failf(err, errlen, "ledger: load: skus of %s: %s", p->id, sqlite3_errmsg(l->db));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int load_product(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_product_t p;
    memset(&p, 0, sizeof p);
    rd_str(r, p.id, sizeof p.id, 1, FG_ID_BYTES_MAX);
    rd_label(r, p.id);
    rd_str(r, p.name, sizeof p.name, 0, FG_NAME_BYTES_MAX);
    p.specs_json = rd_doc_dup(r, FG_JSON_DOC_BYTES_MAX, true);
    if (r->bad) goto fail;
    if (load_skus(l, &p, r->err, r->errlen) != 0) {
        r->bad = true;
        goto fail;
    }
    char why[256] = "";
    if (rd_check(r, check_product(&p, why, sizeof why), why) != 0) goto fail;
    /* From here the visitor owns p's allocations, whatever it answers. */
    return rd_visit(r, v->product(ctx, &p));
fail:
    fg_product_free(&p);
    return -1;
}

static int load_offer(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_offer_t o;
    memset(&o, 0, sizeof o);
    rd_str(r, o.sku, sizeof o.sku, 1, FG_ID_BYTES_MAX);
    rd_str(r, o.market, sizeof o.market, 2, 2);
    if (!r->bad) snprintf(r->row, sizeof r->row, "%s/%s", o.sku, o.market);
    o.blocked = rd_i64(r, 0, 1) != 0;
    o.price_minor = rd_i64(r, INT64_MIN, INT64_MAX);
    rd_str(r, o.reason, sizeof o.reason, 0, FG_REASON_BYTES_MAX);
    char why[256] = "";
    if (r->bad || rd_check(r, check_offer(&o, why, sizeof why), why) != 0) return -1;
    return rd_visit(r, v->offer(ctx, &o));
}

/* Reads a sale's pools, which must be numbered 0, 1, 2, ... */
static int load_pools(fg_ledger_t *l, fg_sale_row_t *s, char *err, size_t errlen) {
    sqlite3_stmt *st = l->st[ST_GET_POOLS];
    rd_t r = {.st = st, .op = "load", .table = "sale_pools", .err = err, .errlen = errlen};
    if (bind_text(st, 1, s->id) != SQLITE_OK)
        return failf(err, errlen, "ledger: load: sale_pools: %s", sqlite3_errmsg(l->db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rd_begin(&r, s->pool_count + 1);
        int64_t idx = rd_i64(&r, 0, FG_POOLS_PER_SALE_MAX - 1);
        if (!r.bad) snprintf(r.row, sizeof r.row, "%s/%" PRId64, s->id, idx);
        if (!r.bad && idx != s->pool_count)
            rd_fail(&r, "idx %" PRId64 " follows %d pools", idx, s->pool_count);
        if (r.bad) break;
        fg_pool_def_t *p = &s->pools[s->pool_count];
        rd_str(&r, p->sku, sizeof p->sku, 1, FG_ID_BYTES_MAX);
        p->stock = rd_i64(&r, INT64_MIN, INT64_MAX);
        rd_pool_markets(&r, p);
        if (r.bad) break;
        s->pool_count++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        failf(err, errlen, "ledger: load: pools of %s: %s", s->id, sqlite3_errmsg(l->db));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int load_sale(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_sale_row_t s;
    memset(&s, 0, sizeof s);
    rd_str(r, s.id, sizeof s.id, 1, FG_ID_BYTES_MAX);
    rd_label(r, s.id);
    rd_str(r, s.name, sizeof s.name, 0, FG_NAME_BYTES_MAX);
    s.opens_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    s.closes_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    s.limit_per_buyer = (int32_t)rd_i64(r, INT32_MIN, INT32_MAX);
    s.hold_ttl_s = (int32_t)rd_i64(r, INT32_MIN, INT32_MAX);
    s.paused = rd_i64(r, 0, 1) != 0;
    s.closed = rd_i64(r, 0, 1) != 0;
    s.created_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    if (r->bad) return -1;
    if (load_pools(l, &s, r->err, r->errlen) != 0) {
        r->bad = true;
        return -1;
    }
    char why[256] = "";
    if (rd_check(r, check_sale(&s, why, sizeof why), why) != 0) return -1;
    return rd_visit(r, v->sale(ctx, &s));
}

static int load_buyer(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_buyer_row_t b;
    memset(&b, 0, sizeof b);
    b.id = rd_uid(r);
    rd_label_id(r, b.id);
    rd_str(r, b.email, sizeof b.email, 1, FG_EMAIL_BYTES_MAX);
    rd_str(r, b.market, sizeof b.market, 2, 2);
    rd_blob32(r, b.token_hash);
    b.created_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    char why[256] = "";
    if (r->bad || rd_check(r, check_buyer(&b, why, sizeof why), why) != 0) return -1;
    return rd_visit(r, v->buyer(ctx, &b));
}

static int load_hold(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_hold_row_t h;
    memset(&h, 0, sizeof h);
    h.id = rd_uid(r);
    rd_label_id(r, h.id);
    h.buyer_id = rd_uid(r);
    rd_str(r, h.sale_id, sizeof h.sale_id, 1, FG_ID_BYTES_MAX);
    h.pool_index = (uint16_t)rd_i64(r, 0, UINT16_MAX);
    h.market = rd_mcode(r);
    h.quantity = (int32_t)rd_i64(r, INT32_MIN, INT32_MAX);
    h.state = (uint8_t)rd_i64(r, 0, UINT8_MAX);
    h.created_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    h.expires_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    h.ended_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    h.order_id = rd_uid(r);
    char why[256] = "";
    if (r->bad || rd_check(r, check_hold(&h, why, sizeof why), why) != 0) return -1;
    return rd_visit(r, v->hold(ctx, &h));
}

/* Reads ORDER_COLUMNS; shipping_json points into the statement's row (see rd_text). */
static void rd_order(rd_t *r, fg_order_row_t *o) {
    memset(o, 0, sizeof *o);
    o->id = rd_uid(r);
    rd_label_id(r, o->id);
    o->hold_id = rd_uid(r);
    o->buyer_id = rd_uid(r);
    rd_str(r, o->sale_id, sizeof o->sale_id, 1, FG_ID_BYTES_MAX);
    rd_str(r, o->sku, sizeof o->sku, 1, FG_ID_BYTES_MAX);
    o->market = rd_mcode(r);
    o->quantity = (int32_t)rd_i64(r, INT32_MIN, INT32_MAX);
    o->total_minor = rd_i64(r, INT64_MIN, INT64_MAX);
    rd_str(r, o->currency, sizeof o->currency, 3, 3);
    o->state = (uint8_t)rd_i64(r, 0, UINT8_MAX);
    o->method = (uint8_t)rd_i64(r, 0, UINT8_MAX);
    o->created_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    o->updated_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    size_t n;
    o->shipping_json = rd_text(r, LEDGER_DOC_BYTES_MAX, false, &n);
    char why[256] = "";
    if (!r->bad) rd_check(r, check_order(o, why, sizeof why), why);
}

static int load_order(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_order_row_t o;
    rd_order(r, &o);
    if (r->bad) return -1;
    size_t n = strlen(o.shipping_json);
    char *shipping = malloc(n + 1);
    if (shipping == NULL) return rd_fail(r, "out of memory");
    memcpy(shipping, o.shipping_json, n + 1);
    o.shipping_json = shipping;
    /* The visitor owns shipping_json from here, whatever it answers. */
    return rd_visit(r, v->order(ctx, &o));
}

/* Reads an idempotency row (the columns of ST_GET_IDEM) into row; key is the caller's buffer,
 * row->body points at the statement's row. 0, or -1 with r->bad set. */
static int read_idem(rd_t *r, fg_idem_row_t *row, char key[FG_IDEM_KEY_BYTES_MAX + 1]) {
    memset(row, 0, sizeof *row);
    row->scope = i64_to_u64(rd_i64(r, INT64_MIN, INT64_MAX));
    rd_str(r, key, FG_IDEM_KEY_BYTES_MAX + 1, 1, FG_IDEM_KEY_BYTES_MAX);
    if (!r->bad) snprintf(r->row, sizeof r->row, "%" PRIu64 "/%.*s", row->scope, 40, key);
    rd_blob32(r, row->fingerprint);
    row->status = (int)rd_i64(r, INT32_MIN, INT32_MAX);
    size_t n;
    /* The cast drops the const that fg_idem_row_t lacks; callers only read the body. */
    row->body = (char *)rd_text(r, LEDGER_DOC_BYTES_MAX, false, &n);
    row->created_at_ms = rd_i64(r, INT64_MIN, INT64_MAX);
    row->ledger_rowid = rd_i64(r, 1, INT64_MAX);
    row->key = key;
    char why[256] = "";
    if (r->bad || rd_check(r, check_idem(row, why, sizeof why), why) != 0) return -1;
    return 0;
}

static int load_idem(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_idem_row_t row;
    char key[FG_IDEM_KEY_BYTES_MAX + 1];
    if (read_idem(r, &row, key) != 0) return -1;
    /* The visitor only reads the body during the call (it copies what it keeps). */
    return rd_visit(r, v->idem(ctx, &row));
}

static int load_webhook(fg_ledger_t *l, rd_t *r, const fg_ledger_visitor_t *v, void *ctx) {
    fg_webhook_row_t w;
    memset(&w, 0, sizeof w);
    rd_blob32(r, w.digest);
    w.t_s = rd_i64(r, INT64_MIN, INT64_MAX);
    if (!r->bad) snprintf(r->row, sizeof r->row, "t=%" PRId64, w.t_s);
    if (r->bad) return -1;
    return rd_visit(r, v->webhook(ctx, &w));
}

/* Steps through one table, handing each row to fn. */
static int scan(fg_ledger_t *l, int stmt, const char *table, load_fn fn,
                const fg_ledger_visitor_t *v, void *ctx, char *err, size_t errlen) {
    sqlite3_stmt *st = l->st[stmt];
    rd_t r = {.st = st, .op = "load", .table = table, .err = err, .errlen = errlen};
    int64_t position = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rd_begin(&r, ++position);
        if (fn(l, &r, v, ctx) != 0) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        failf(err, errlen, "ledger: load: reading %s: %s", table, sqlite3_errmsg(l->db));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int fg_ledger_load(fg_ledger_t *l, const fg_ledger_visitor_t *v, void *ctx, int64_t idem_since_ms,
                   int64_t webhook_since_s, char *err, size_t errlen) {
    FG_ASSERT(l != NULL && v != NULL);
    /* Empty, so that a visitor's own message can be told from none (rd_visit). */
    if (err != NULL && errlen > 0) err[0] = '\0';
    const struct {
        int stmt;
        const char *table;
        load_fn fn;
        bool wanted;
    } steps[] = {
        {ST_GET_MARKETS, "markets", load_market, v->market != NULL},
        {ST_GET_PRODUCTS, "products", load_product, v->product != NULL},
        {ST_GET_OFFERS, "offers", load_offer, v->offer != NULL},
        {ST_GET_SALES, "sales", load_sale, v->sale != NULL},
        {ST_GET_BUYERS, "buyers", load_buyer, v->buyer != NULL},
        {ST_GET_HOLDS, "holds", load_hold, v->hold != NULL},
        {ST_GET_ORDERS, "orders", load_order, v->order != NULL},
        {ST_GET_IDEM, "idempotency", load_idem, v->idem != NULL},
        {ST_GET_WEBHOOKS, "webhook_signatures", load_webhook, v->webhook != NULL},
    };
    if (sqlite3_bind_int64(l->st[ST_GET_IDEM], 1, idem_since_ms) != SQLITE_OK ||
        sqlite3_bind_int64(l->st[ST_GET_WEBHOOKS], 1, webhook_since_s) != SQLITE_OK)
        return failf(err, errlen, "ledger: load: %s", sqlite3_errmsg(l->db));
    /* One read transaction, so every table is read from the same committed state. */
    char why[256];
    if (step_done(l->db, l->st[ST_BEGIN_READ], SQLITE_OK, why, sizeof why) != 0)
        return failf(err, errlen, "ledger: load: cannot begin: %s", why);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof steps / sizeof steps[0]; i++)
        if (steps[i].wanted)
            rc = scan(l, steps[i].stmt, steps[i].table, steps[i].fn, v, ctx, err, errlen);
    rollback(l); /* nothing was written: ending the read transaction either way is the same */
    return rc;
}

/* ---------------------------------------------------------------- stored answers */

int fg_ledger_answer_get(fg_ledger_t *l, int64_t rowid, fg_idem_row_t *row,
                         char key[FG_IDEM_KEY_BYTES_MAX + 1], char **body) {
    FG_ASSERT(l != NULL && row != NULL && key != NULL && body != NULL);
    *body = NULL;
    sqlite3_stmt *st = l->answer_st;
    char err[320] = "";
    rd_t r = {.st = st, .op = "read", .table = "idempotency", .err = err, .errlen = sizeof err};
    int found = -1;
    int rc = sqlite3_bind_int64(st, 1, rowid);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        found = 0;
    } else if (rc == SQLITE_ROW) {
        rd_begin(&r, rowid);
        if (read_idem(&r, row, key) == 0 && (*body = strdup(row->body)) != NULL) {
            row->body = *body;
            found = 1;
        } else if (err[0] == '\0') {
            snprintf(err, sizeof err, "out of memory");
        }
    } else {
        snprintf(err, sizeof err, "%s", sqlite3_errmsg(l->reader));
    }
    /* Reset ends the read transaction, so the next read sees the newest commit. */
    sqlite3_reset(st);
    if (found < 0)
        FG_LOG_ERROR("event=answer_read_failed rowid=%" PRId64 " error=\"%s\"", rowid, err);
    return found;
}

/* ---------------------------------------------------------------- meta */

int fg_ledger_meta_get(fg_ledger_t *l, const char *key, char *out, size_t cap) {
    FG_ASSERT(l != NULL && key != NULL && out != NULL && cap > 0);
    sqlite3_stmt *st = l->st[ST_META_GET];
    int rc = bind_text(st, 1, key);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int found = -1;
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        int n = sqlite3_column_bytes(st, 0);
        if (v != NULL && n >= 0) {
            size_t len = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            found = 1;
        }
    } else if (rc == SQLITE_DONE) {
        found = 0;
    }
    if (found < 0)
        FG_LOG_ERROR("event=ledger_meta_get_failed key=%s error=\"%s\"", key,
                     sqlite3_errmsg(l->db));
    sqlite3_reset(st);
    return found;
}

int fg_ledger_meta_set(fg_ledger_t *l, const char *key, const char *value) {
    FG_ASSERT(l != NULL && key != NULL && value != NULL);
    /* The schema version belongs to the migrations; writing it from outside would make the next
     * open skip or repeat one. */
    if (strcmp(key, "schema_version") == 0) {
        FG_LOG_ERROR("event=ledger_meta_set_refused key=%s", key);
        return -1;
    }
    sqlite3_stmt *st = l->st[ST_META_SET];
    int rc = bind_text(st, 1, key);
    rc |= bind_text(st, 2, value);
    char why[256];
    /* Outside a transaction this is its own durable commit. */
    if (step_done(l->db, st, rc, why, sizeof why) != 0) {
        FG_LOG_ERROR("event=ledger_meta_set_failed key=%s error=\"%s\"", key, why);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- export */

/* The export reads in pages of FG_EXPORT_PAGE_ROWS by order id. A WAL reader pins the log for
 * as long as its read transaction lasts, and a streamed export to a slow client can last
 * minutes during a sale; a page at a time lets checkpoints go on between pages. Each page sees
 * the state committed when it starts, and the export ends at the last order that existed when
 * it opened, so it does not chase new orders. */
static const char k_export_sql[] = "SELECT " ORDER_COLUMNS(
    "o.") ", b.email FROM orders AS o"
          " LEFT JOIN buyers AS b ON b.id = o.buyer_id"
          " WHERE o.sale_id = ?1 AND o.id > ?2 AND o.id <= ?3 ORDER BY o.id LIMIT ?4";

static const char k_export_last_sql[] = "SELECT max(id) FROM orders WHERE sale_id = ?1";

/* Binds the next page's start; the other parameters stay bound from export_bind. */
static int export_page(fg_ledger_export_t *x) {
    sqlite3_reset(x->st);
    x->page_rows = 0;
    return sqlite3_bind_int64(x->st, 2, x->last_id);
}

/* Finds the sale's last order now and binds the export to end there. */
/* 1 when the sale exists, 0 when not, -1 on error. */
static int export_sale_exists(fg_ledger_export_t *x, const char *sale_id, char *err,
                              size_t errlen) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(x->db, "SELECT 1 FROM sales WHERE id = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, sale_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (found < 0) failf(err, errlen, "%s", sqlite3_errmsg(x->db));
    sqlite3_finalize(st);
    return found;
}

static int export_bind(fg_ledger_export_t *x, const char *sale_id, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int64_t last = 0;
    bool none = true;
    int rc = sqlite3_prepare_v2(x->db, k_export_last_sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, sale_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        none = sqlite3_column_type(st, 0) == SQLITE_NULL; /* max() of no rows */
        last = sqlite3_column_int64(st, 0);
    } else {
        failf(err, errlen, "%s", sqlite3_errmsg(x->db));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return -1;
    x->done = none;
    /* TRANSIENT: the caller's sale_id may die before the export ends. */
    rc = sqlite3_bind_text(x->st, 1, sale_id, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_int64(x->st, 3, last);
    rc |= sqlite3_bind_int(x->st, 4, FG_EXPORT_PAGE_ROWS);
    rc |= export_page(x);
    return rc == SQLITE_OK ? 0 : failf(err, errlen, "%s", sqlite3_errmsg(x->db));
}

int fg_ledger_export_open(const char *dir, const char *sale_id, fg_ledger_export_t **out) {
    FG_ASSERT(dir != NULL && sale_id != NULL && out != NULL);
    *out = NULL;
    char path[LEDGER_PATH_BYTES_MAX];
    char err[320] = "";
    fg_ledger_export_t *x = NULL;
    if (db_path(dir, path, sizeof path, err, sizeof err) != 0) goto fail;
    x = calloc(1, sizeof *x);
    if (x == NULL) {
        failf(err, sizeof err, "out of memory");
        goto fail;
    }
    if (connect_db(path, SQLITE_OPEN_READONLY, &x->db, err, sizeof err) != 0) goto fail;
    if (sqlite3_prepare_v3(x->db, k_export_sql, -1, SQLITE_PREPARE_PERSISTENT, &x->st, NULL) !=
        SQLITE_OK) {
        failf(err, sizeof err, "%s", sqlite3_errmsg(x->db));
        goto fail;
    }
    int exists = export_sale_exists(x, sale_id, err, sizeof err);
    if (exists == 0) {
        fg_ledger_export_close(x);
        return -2;
    }
    if (exists < 0 || export_bind(x, sale_id, err, sizeof err) != 0) goto fail;
    *out = x;
    return 0;
fail:
    FG_LOG_ERROR("event=ledger_export_failed step=open error=\"%s\"", err);
    fg_ledger_export_close(x);
    return -1;
}

int fg_ledger_export_next(fg_ledger_export_t *x, fg_export_row_t *row) {
    FG_ASSERT(x != NULL && row != NULL);
    if (x->done) return 0;
    if (x->page_rows == FG_EXPORT_PAGE_ROWS && export_page(x) != SQLITE_OK) goto fail;
    int rc = sqlite3_step(x->st);
    if (rc == SQLITE_DONE) {
        /* A short page is the last one. */
        x->done = true;
        sqlite3_reset(x->st);
        return 0;
    }
    if (rc != SQLITE_ROW) goto fail;
    x->page_rows++;
    char err[320] = "";
    rd_t r = {.st = x->st, .op = "export", .table = "orders", .err = err, .errlen = sizeof err};
    rd_begin(&r, x->page_rows);
    rd_order(&r, &row->order);
    if (!r.bad && sqlite3_column_type(x->st, r.col) == SQLITE_NULL)
        rd_fail(&r, "buyer %" PRIu64 " does not exist", row->order.buyer_id);
    rd_str(&r, row->email, sizeof row->email, 1, FG_EMAIL_BYTES_MAX);
    if (r.bad) {
        FG_LOG_ERROR("event=ledger_export_failed step=row error=\"%s\"", err);
        return -1;
    }
    x->last_id = (int64_t)row->order.id;
    return 1;
fail:
    FG_LOG_ERROR("event=ledger_export_failed step=read error=\"%s\"", sqlite3_errmsg(x->db));
    return -1;
}

void fg_ledger_export_close(fg_ledger_export_t *x) {
    if (x == NULL) return;
    sqlite3_finalize(x->st);
    sqlite3_close(x->db);
    free(x);
}
