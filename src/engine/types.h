/*
 * types.h — floodgate's domain: markets, catalog, sales, buyers, holds, orders, and the change
 * records the engine hands to the ledger.
 *
 * The engine owns every object here. The ledger reads change records (and builds rows from them)
 * but never calls into the engine: it includes this header for the shapes only.
 *
 * Ownership: catalog objects (market, product, offer) and sale definitions are immutable once
 * published; an update publishes a new object and the old one is retired, kept until the engine
 * is destroyed, so a change record may point at it while a batch commits. Holds and orders
 * mutate, so their change records carry copies.
 */
#ifndef FG_ENGINE_TYPES_H
#define FG_ENGINE_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

/* A market code packed into 16 bits: 'D' << 8 | 'E'. 0 means none. */
typedef uint16_t fg_mcode_t;

static inline fg_mcode_t fg_mcode(const char *s) {
    return (fg_mcode_t)(((unsigned char)s[0] << 8) | (unsigned char)s[1]);
}
static inline void fg_mcode_str(fg_mcode_t c, char out[3]) {
    out[0] = (char)(c >> 8);
    out[1] = (char)(c & 0xff);
    out[2] = '\0';
}

typedef struct {
    char code[3]; /* ISO 3166-1 alpha-2, upper case */
    char name[FG_NAME_BYTES_MAX + 1];
    char currency[4]; /* ISO 4217, upper case */
} fg_market_t;

typedef struct {
    char id[FG_ID_BYTES_MAX + 1];
    char name[FG_NAME_BYTES_MAX + 1];
    char *attributes_json; /* serialized JSON object, owned */
} fg_sku_t;

typedef struct {
    char id[FG_ID_BYTES_MAX + 1];
    char name[FG_NAME_BYTES_MAX + 1];
    char *specs_json; /* serialized JSON object, owned */
    fg_sku_t *skus;   /* owned array */
    int sku_count;
} fg_product_t;

typedef struct {
    char sku[FG_ID_BYTES_MAX + 1];
    char market[3];
    bool blocked;
    int64_t price_minor;                  /* when !blocked */
    char reason[FG_REASON_BYTES_MAX + 1]; /* when blocked */
} fg_offer_t;

/* One stock pool of a sale: a SKU's stock, sold in the listed markets (shared between them). */
typedef struct {
    char sku[FG_ID_BYTES_MAX + 1];
    int64_t stock; /* initial stock plus every add */
    fg_mcode_t markets[FG_MARKETS_PER_POOL_MAX];
    int market_count;
} fg_pool_def_t;

typedef enum {
    FG_SALE_SCHEDULED,
    FG_SALE_OPEN,
    FG_SALE_PAUSED,
    FG_SALE_SOLD_OUT,
    FG_SALE_CLOSED,
} fg_sale_state_t;

/* What the ledger stores of a sale. Live counters (held, sold) are derived from holds/orders. */
typedef struct {
    char id[FG_ID_BYTES_MAX + 1];
    char name[FG_NAME_BYTES_MAX + 1];
    int64_t opens_at_ms;
    int64_t closes_at_ms; /* 0 = no scheduled close */
    int32_t limit_per_buyer;
    int32_t hold_ttl_s;
    bool paused;
    bool closed; /* closed by an operator */
    int64_t created_at_ms;
    int pool_count;
    fg_pool_def_t pools[FG_POOLS_PER_SALE_MAX];
} fg_sale_row_t;

typedef struct {
    uint64_t id;
    char email[FG_EMAIL_BYTES_MAX + 1]; /* normalized: trimmed, lower-case */
    char market[3];
    uint8_t token_hash[32]; /* BLAKE2b-256 of the token's secret part */
    int64_t created_at_ms;
} fg_buyer_row_t;

typedef enum {
    FG_HOLD_HELD,
    FG_HOLD_ORDERED,
    FG_HOLD_RELEASED,
    FG_HOLD_EXPIRED,
} fg_hold_state_t;

typedef struct {
    uint64_t id;
    uint64_t buyer_id;
    char sale_id[FG_ID_BYTES_MAX + 1];
    uint16_t pool_index;
    fg_mcode_t market;
    int32_t quantity;
    uint8_t state; /* fg_hold_state_t */
    int64_t created_at_ms;
    int64_t expires_at_ms;
    int64_t ended_at_ms; /* released/expired/ordered time, 0 while held */
    uint64_t order_id;   /* 0 until ordered */
} fg_hold_row_t;

typedef enum {
    FG_ORDER_PENDING_PAYMENT,
    FG_ORDER_PAID,
    FG_ORDER_CANCELLED,
} fg_order_state_t;

typedef enum {
    FG_PAY_INSTANT,
    FG_PAY_WEBHOOK,
} fg_pay_method_t;

typedef struct {
    uint64_t id;
    uint64_t hold_id;
    uint64_t buyer_id;
    char sale_id[FG_ID_BYTES_MAX + 1];
    char sku[FG_ID_BYTES_MAX + 1];
    fg_mcode_t market;
    int32_t quantity;
    int64_t total_minor;
    char currency[4];
    uint8_t state;  /* fg_order_state_t */
    uint8_t method; /* fg_pay_method_t */
    int64_t created_at_ms;
    int64_t updated_at_ms;
    const char *shipping_json; /* immutable, owned by the engine's order */
} fg_order_row_t;

/* A stored answer for an Idempotency-Key (I5). Immutable once created. */
typedef struct {
    uint64_t scope;          /* buyer id; 0 anonymous; FG_IDEM_SCOPE_ADMIN */
    char *key;               /* owned */
    uint8_t fingerprint[32]; /* hash of method, path and body */
    int status;
    char *body; /* owned, the answer's JSON */
    int64_t created_at_ms;
    int64_t ledger_rowid; /* the ledger's row, set when written there; 0 before */
} fg_idem_row_t;

#define FG_IDEM_SCOPE_ADMIN UINT64_MAX

typedef enum {
    FG_CH_MARKET,  /* .market: immutable, engine-owned */
    FG_CH_PRODUCT, /* .product: immutable, engine-owned (skus replaced as a whole) */
    FG_CH_OFFER,   /* .offer: immutable, engine-owned */
    FG_CH_SALE,    /* .sale: heap copy owned by the change */
    FG_CH_BUYER,   /* .buyer: heap copy owned by the change */
    FG_CH_HOLD,    /* .hold: inline copy */
    FG_CH_ORDER,   /* .order: inline copy; shipping_json engine-owned */
    FG_CH_IDEM,    /* .idem: engine-owned record; the ledger fills ledger_rowid */
    FG_CH_WEBHOOK, /* .webhook: a used signature, for replay refusal */
    FG_CH_PRUNE,   /* .prune: forget stored answers and signatures older than cut-offs */
} fg_change_kind_t;

typedef struct {
    int64_t idem_before_ms;   /* idempotency records created before this */
    int64_t webhook_before_s; /* webhook signatures with t_s before this */
} fg_prune_row_t;

typedef struct {
    uint8_t digest[32]; /* BLAKE2b-256 of the signature header */
    int64_t t_s;        /* its timestamp */
} fg_webhook_row_t;

typedef struct {
    uint8_t kind; /* fg_change_kind_t */
    union {
        const fg_market_t *market;
        const fg_product_t *product;
        const fg_offer_t *offer;
        fg_sale_row_t *sale;
        fg_buyer_row_t *buyer;
        fg_hold_row_t hold;
        fg_order_row_t order;
        fg_idem_row_t *idem; /* the ledger sets its ledger_rowid */
        fg_webhook_row_t webhook;
        fg_prune_row_t prune;
    } u;
} fg_change_t;

/* Frees what a product owns (specs, SKUs and their attributes), not the struct itself. */
void fg_product_free(fg_product_t *p);

/* Frees what a change owns (sale and buyer copies). Safe on every kind. */
void fg_change_release(fg_change_t *c);

#endif
