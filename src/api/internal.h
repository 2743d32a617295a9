/*
 * internal.h — shared by the API's modules: parameters of commands, input checks, rendering.
 */
#ifndef FG_API_INTERNAL_H
#define FG_API_INTERNAL_H

#include <jansson.h>
#include <pthread.h>

#include "api/api.h"
#include "engine/engine.h"
#include "util/map.h"

typedef struct fg_events fg_events_t;
typedef struct fg_gate fg_gate_t;

struct fg_api {
    char data_dir[4096];
    uint8_t admin_token_hash[32];
    char webhook_secret[256];
    fg_writer_t *writer;
    fg_http_metrics_t *metrics;
    fg_events_t *events;
    fg_gate_t *gate; /* sold-out sales and keys seen, for refusals without the writer */
    int rate_limit_per_s;
    pthread_mutex_t rate_mu;
    fg_map_t rate_buckets; /* hash(ip) -> tokens << 32 | second */
};

typedef struct {
    char sku[FG_ID_BYTES_MAX + 1];
    fg_mcode_t market;
    int32_t quantity;
} fg_hold_params_t;

/* The body of a hold request (hold_body.c). */
typedef struct {
    char sku[FG_ID_BYTES_MAX + 1];
    char market[3]; /* "" when the body names none */
    int64_t quantity;
} fg_hold_body_t;

typedef struct {
    char *shipping_json; /* owned until the engine copies it */
    char country[3];
    fg_pay_method_t method;
} fg_order_params_t;

typedef struct {
    uint64_t order_id;
    bool succeeded;
    uint8_t digest[32];
    int64_t t_s;
} fg_pay_params_t;

typedef struct {
    char email[FG_EMAIL_BYTES_MAX + 1];
    char market[3];
    char token[FG_TOKEN_BYTES_MAX + 1];
    uint8_t token_hash[32];
    char raw_key[FG_IDEM_KEY_BYTES_MAX + 1]; /* the Idempotency-Key: seals the stored token */
} fg_buyer_params_t;

typedef struct {
    char sku[FG_ID_BYTES_MAX + 1];
    char market[3];
    bool has_market;
    int64_t add;
} fg_stock_params_t;

typedef enum { FG_ACT_PAUSE, FG_ACT_RESUME, FG_ACT_CLOSE } fg_sale_action_t;

/* What a command carries from the HTTP thread to the writer thread. */
struct fg_api_cmd {
    fg_api_t *api;
    uint64_t buyer_id; /* claimed by the token; checked by admit */
    uint8_t secret_hash[32];
    char id[FG_ID_BYTES_MAX + 1];  /* first path id */
    char id2[FG_ID_BYTES_MAX + 1]; /* second path id */
    uint64_t num_id;               /* hold or order id from the path */
    union {
        fg_market_t market;
        fg_product_t product; /* owned strings until the engine takes them */
        fg_offer_t offer;
        fg_sale_row_t *sale; /* owned */
        fg_buyer_params_t buyer;
        fg_hold_params_t hold;
        fg_order_params_t order;
        fg_pay_params_t pay;
        fg_stock_params_t stock;
        fg_sale_action_t action;
        struct {
            int limit;
            uint64_t cursor;
        } page;
    } u;
    int kind; /* which union member owns memory, see slot_release */
};

_Static_assert(sizeof(struct fg_api_cmd) <= FG_API_CMD_BYTES, "API command fits its slot");

enum { FG_OWN_NONE, FG_OWN_PRODUCT, FG_OWN_SALE, FG_OWN_ORDER };

static inline fg_api_cmd_t *fg__params(fg_api_slot_t *slot) {
    return (fg_api_cmd_t *)(void *)slot->params;
}
static inline fg_api_cmd_t *fg__cmd_params(fg_cmd_t *cmd) {
    return fg__params((fg_api_slot_t *)(void *)cmd);
}

/* ---- answers (writer thread) ---- */
void fg__ok(fg_cmd_t *cmd, int status, fg_buf_t *body); /* takes body's data */
/* Maps an engine error to status and code, with the engine's detail. */
void fg__engine_err(fg_cmd_t *cmd, const fg_engine_t *e, fg_err_t err);
/* 403 not_offered_in_market with reason and alternatives offered in the market. sale may be
 * NULL (a catalog question, not a sale's). */
void fg__not_offered(fg_cmd_t *cmd, const fg_engine_t *e, const fg_sale_t *sale, const char *sku,
                     const char *market, const char *reason);
bool fg__admit_buyer(fg_engine_t *e, fg_cmd_t *cmd);

/* ---- rendering (writer thread) ---- */
void fg__render_sale(fg_buf_t *b, const fg_engine_t *e, const fg_sale_t *s, int64_t now_ms,
                     bool full);
/* What a hold's answer shows, apart from the engine (a stored answer replays from it). */
typedef struct {
    uint64_t id;
    const char *sale_id, *sku; /* ids: [A-Za-z0-9._-], at most FG_ID_BYTES_MAX */
    char market[3];
    int64_t quantity;
    int state; /* fg_hold_state_t */
    int64_t created_at_ms, expires_at_ms;
    uint64_t order_id; /* 0: none */
} fg_hold_view_t;
void fg__hold_view(const fg_engine_t *e, const fg_hold_t *h, fg_hold_view_t *v);
void fg__render_hold_view(fg_buf_t *b, const fg_hold_view_t *v);
void fg__render_hold(fg_buf_t *b, const fg_engine_t *e, const fg_hold_t *h);
/* A new hold's answer as stored for its Idempotency-Key, in short (holds.c; malloc'd, NULL when
 * it does not fit), and the answer rendered again from it (NULL when the text is not one). */
char *fg__hold_stored(const fg_hold_view_t *v);
char *fg__hold_replay(const char *stored);
void fg__render_order(fg_buf_t *b, const fg_order_row_t *o, bool with_buyer, const char *email);
void fg__render_market(fg_buf_t *b, const fg_market_t *m);
void fg__render_markets(fg_buf_t *b, const fg_pool_def_t *pool); /* ["IN","DE"] */
void fg__render_product(fg_buf_t *b, const fg_product_t *p);
/* {"id","name","specs" of a product, without its SKUs and without closing the object. */
void fg__render_product_head(fg_buf_t *b, const fg_product_t *p);
void fg__render_offer(fg_buf_t *b, const fg_engine_t *e, const fg_offer_t *o);
void fg__render_alternatives(fg_buf_t *b, const fg_engine_t *e, const fg_sale_t *sale,
                             const char *product_id, const char *exclude_sku, const char *market);

/* ---- input (HTTP threads) ---- */
/* Parses the body as one JSON object; on failure fills ans (400 invalid_json) and returns NULL. */
json_t *fg__parse_body(const fg_api_request_t *rq, fg_api_answer_t *ans);
/* Checks that obj has only the listed keys (NULL-terminated); else 400 naming the first other. */
bool fg__only_keys(json_t *obj, const char *const *keys, const char *prefix, fg_api_answer_t *ans);
/* Copies a string field; required or optional; limits on bytes; false with ans filled. */
bool fg__str_field(json_t *obj, const char *key, const char *path, bool required, size_t max,
                   char *out, size_t cap, fg_api_answer_t *ans);
bool fg__int_field(json_t *obj, const char *key, const char *path, bool required, int64_t min,
                   int64_t max, int64_t *out, fg_api_answer_t *ans);
bool fg__valid_id(const char *s);
bool fg__valid_market(const char *s);
bool fg__valid_currency(const char *s);
/* Finds a query parameter's value (decoded into out); false when absent. */
bool fg__query_param(const char *query, const char *name, char *out, size_t cap);
/* Parses "h_123" with the given prefix letter. */
bool fg__parse_obj_id(const char *s, char prefix, uint64_t *id);

/* Auth: true when the admin token is right; else ans is 401. */
bool fg__auth_admin(const fg_api_t *api, const fg_api_request_t *rq, fg_api_answer_t *ans);
/* Parses a buyer token into the command (checked later by admit); else ans is 401. */
bool fg__auth_buyer(const fg_api_request_t *rq, fg_api_cmd_t *p, fg_api_answer_t *ans);
/* The same in two steps: the buyer id and where the secret is (no hashing), then its hash. */
bool fg__buyer_token(const fg_api_request_t *rq, uint64_t *buyer_id, const char **secret,
                     fg_api_answer_t *ans);
void fg__buyer_secret_hash(fg_api_cmd_t *p, const char *secret);
/* Reads the Idempotency-Key into the command; 400 when missing or malformed. */
bool fg__idem(const fg_api_request_t *rq, fg_cmd_t *cmd, uint64_t scope, fg_api_answer_t *ans);
/* The same in two steps: the key (checked, hashed), then the request's fingerprint. */
/* Reads a hold's body: the plain shape by hand, anything else through jansson and the field
 * checks; false with the answer set (400) when it is not a valid hold body. */
bool fg__hold_body(const fg_api_request_t *rq, fg_hold_body_t *out, fg_api_answer_t *ans);
/* The hand reader alone: true and *out set only for a body the full path reads the same way;
 * false declines (the body may still be valid). */
bool fg__hold_body_fast(const char *body, size_t len, fg_hold_body_t *out);
/* The full path alone (jansson and the field checks). */
bool fg__hold_body_full(const fg_api_request_t *rq, fg_hold_body_t *out, fg_api_answer_t *ans);
bool fg__idem_key(const fg_api_request_t *rq, fg_cmd_t *cmd, uint64_t scope,
                  fg_api_answer_t *ans);
void fg__idem_fingerprint(const fg_api_request_t *rq, fg_cmd_t *cmd);
/* Per-IP token bucket: true to go on; else ans is 429. */
bool fg__rate_ok(fg_api_t *api, const fg_api_request_t *rq, fg_api_answer_t *ans);

/* ---- the gate (gate.c): refusals the HTTP threads may give without the writer ---- */
fg_gate_t *fg__gate_new(void);
void fg__gate_free(fg_gate_t *g);
/* Writer thread: the engine was loaded (e) or dropped (NULL); a sale changed. */
void fg__gate_loaded(fg_gate_t *g, const fg_engine_t *e);
void fg__gate_publish(fg_gate_t *g, const fg_engine_t *e, const fg_sale_t *s, int64_t now_ms);
/* HTTP threads. A key a hold request sends to the writer, marked before it is submitted. */
void fg__gate_mark_key(fg_gate_t *g, uint64_t idem_hash);
/* True when the sale is sold out now (as last published, no hold due to expire, the SKU is
 * the sale's) — the writer would refuse the hold 409 sold_out. */
bool fg__gate_sold_out(fg_gate_t *g, const char *sale_id, const char *sku, int64_t now_ms);
/* fg__gate_sold_out, and the key was never sent to the writer (I5: no answer to replay). */
bool fg__gate_refuses(fg_gate_t *g, const char *sale_id, const char *sku, uint64_t idem_hash,
                      int64_t now_ms);
/* How many holds the gate refused since start. */
uint64_t fg__gate_refused(fg_gate_t *g);

/* ---- handlers (HTTP threads): return the answer kind ---- */
typedef fg_answer_kind_t (*fg_handler_fn)(fg_api_t *api, const fg_api_request_t *rq,
                                          const char *const *parts, fg_api_slot_t *slot,
                                          fg_api_answer_t *ans);

fg_answer_kind_t fg__h_markets(fg_api_t *, const fg_api_request_t *, const char *const *,
                               fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_products(fg_api_t *, const fg_api_request_t *, const char *const *,
                                fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_product(fg_api_t *, const fg_api_request_t *, const char *const *,
                               fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_market(fg_api_t *, const fg_api_request_t *, const char *const *,
                                    fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_product(fg_api_t *, const fg_api_request_t *, const char *const *,
                                     fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_offer(fg_api_t *, const fg_api_request_t *, const char *const *,
                                   fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_sale(fg_api_t *, const fg_api_request_t *, const char *const *,
                            fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_sale_events(fg_api_t *, const fg_api_request_t *, const char *const *,
                                   fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_sales(fg_api_t *, const fg_api_request_t *, const char *const *,
                                   fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_sale_action(fg_api_t *, const fg_api_request_t *, const char *const *,
                                         fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_stock(fg_api_t *, const fg_api_request_t *, const char *const *,
                                   fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_stats(fg_api_t *, const fg_api_request_t *, const char *const *,
                                   fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_admin_export(fg_api_t *, const fg_api_request_t *, const char *const *,
                                    fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_buyers(fg_api_t *, const fg_api_request_t *, const char *const *,
                              fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_holds(fg_api_t *, const fg_api_request_t *, const char *const *,
                             fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_hold(fg_api_t *, const fg_api_request_t *, const char *const *,
                            fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_hold_order(fg_api_t *, const fg_api_request_t *, const char *const *,
                                  fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_webhook(fg_api_t *, const fg_api_request_t *, const char *const *,
                               fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_order(fg_api_t *, const fg_api_request_t *, const char *const *,
                             fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_me_orders(fg_api_t *, const fg_api_request_t *, const char *const *,
                                 fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_healthz(fg_api_t *, const fg_api_request_t *, const char *const *,
                               fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_readyz(fg_api_t *, const fg_api_request_t *, const char *const *,
                              fg_api_slot_t *, fg_api_answer_t *);
fg_answer_kind_t fg__h_metrics(fg_api_t *, const fg_api_request_t *, const char *const *,
                               fg_api_slot_t *, fg_api_answer_t *);

/* Prepares slot for a command run on the writer thread. */
fg_api_cmd_t *fg__cmd_init(fg_api_t *api, fg_api_slot_t *slot, fg_cmd_exec_fn exec);

/* ---- events hub ---- */
fg_events_t *fg_events_new(void);
void fg_events_free(fg_events_t *ev);
void fg_events_publish(fg_events_t *ev, const char *sale_id, const char *json);
fg_api_stream_t *fg_events_subscribe(fg_events_t *ev, const char *sale_id, uint64_t last_id);
void fg_events_shutdown(fg_events_t *ev);

/* ---- export ---- */
/* NULL when it cannot start; *no_such_sale tells a 404 from a 503. */
fg_api_stream_t *fg_export_open(const char *data_dir, const char *sale_id, bool csv,
                                bool *no_such_sale);

/* Streams are a small vtable so events and exports share the HTTP plumbing. */
struct fg_api_stream {
    ssize_t (*read)(fg_api_stream_t *s, char *buf, size_t max, fg_stream_park_fn park,
                    fg_stream_park_fn unpark, void *ctx);
    void (*free)(fg_api_stream_t *s);
};

#endif
