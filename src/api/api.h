/*
 * api.h — the HTTP API: routes, request validation, answers; between the HTTP layer (which owns
 * connections) and the engine (which the writer owns).
 *
 * The HTTP layer hands a complete request (fg_api_request_t) to fg_api_handle. The API either
 * answers at once (bad input, auth failure for admin calls, health) or fills a command that runs
 * on the writer thread; the HTTP layer parks the connection, submits it with fg_api_submit, and
 * sends the answer when the command's done callback fires. Event streams and exports are
 * answered by streams that the HTTP layer pulls from.
 *
 * Threads: fg_api_handle and the stream calls run on HTTP threads; command exec functions run on
 * the writer thread.
 */
#ifndef FG_API_H
#define FG_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/writer.h"
#include "util/buf.h"

typedef enum { FG_GET, FG_PUT, FG_POST, FG_DELETE, FG_OTHER } fg_method_t;

/* Routes, for metrics and logs. */
typedef enum {
    FG_R_UNKNOWN,
    FG_R_HEALTHZ,
    FG_R_READYZ,
    FG_R_METRICS,
    FG_R_MARKETS,
    FG_R_PRODUCTS,
    FG_R_PRODUCT,
    FG_R_SALE,
    FG_R_SALE_EVENTS,
    FG_R_BUYERS,
    FG_R_HOLDS,
    FG_R_HOLD,
    FG_R_HOLD_ORDER,
    FG_R_WEBHOOK,
    FG_R_ORDER,
    FG_R_ME_ORDERS,
    FG_R_ADMIN_MARKET,
    FG_R_ADMIN_PRODUCT,
    FG_R_ADMIN_OFFER,
    FG_R_ADMIN_SALES,
    FG_R_ADMIN_SALE_ACTION,
    FG_R_ADMIN_STOCK,
    FG_R_ADMIN_STATS,
    FG_R_ADMIN_EXPORT,
    FG_R_COUNT
} fg_route_t;

const char *fg_route_name(fg_route_t r);

typedef struct {
    fg_method_t method;
    const char *path;          /* without the query */
    const char *query;         /* after '?', or "" */
    const char *authorization; /* header values, NULL when absent */
    const char *idempotency_key;
    const char *signature; /* Floodgate-Signature */
    const char *last_event_id;
    const char *body;
    size_t body_len;
    const char *client_ip; /* text form */
} fg_api_request_t;

typedef enum {
    FG_ANSWER_NOW,    /* ans is complete */
    FG_ANSWER_LATER,  /* run the command: fg_api_submit, then answer from cmd */
    FG_ANSWER_STREAM, /* ans.stream is set: pull from it */
} fg_answer_kind_t;

typedef struct fg_api_stream fg_api_stream_t;

typedef struct {
    int status;
    const char *code; /* problem code or NULL */
    char *body;       /* malloc'd, owned by the caller after handle */
    const char *content_type;
    int retry_after_s; /* 0 = no header */
    const char *allow; /* Allow header for 405, static */
    fg_api_stream_t *stream;
} fg_api_answer_t;

/* The per-request command: the writer's command plus the parsed request. Embedded in the HTTP
 * layer's request context; the API fills it. */
typedef struct fg_api_cmd fg_api_cmd_t;
#define FG_API_CMD_BYTES 1280
typedef struct {
    fg_cmd_t cmd; /* first: the writer sees this */
    _Alignas(8) unsigned char params[FG_API_CMD_BYTES];
} fg_api_slot_t;

typedef struct fg_api fg_api_t;

typedef struct {
    const char *data_dir;
    const uint8_t *admin_token_hash; /* 32 bytes */
    const char *webhook_secret;
    int rate_limit_per_s; /* per client IP, registrations and holds; 0 = off */
} fg_api_config_t;

/* The writer is set afterwards (fg_api_set_writer): starting it needs the API's change
 * callback. NULL when memory runs out. */
fg_api_t *fg_api_new(const fg_api_config_t *cfg);
void fg_api_free(fg_api_t *api);
void fg_api_set_writer(fg_api_t *api, fg_writer_t *writer);
/* The writer's sale change callback: publishes events. */
void fg_api_on_sale_change(void *api, const fg_engine_t *e, const fg_sale_t *s, int64_t now_ms);

fg_answer_kind_t fg_api_handle(fg_api_t *api, const fg_api_request_t *rq, fg_api_slot_t *slot,
                               fg_api_answer_t *ans, fg_route_t *route);
/* Submits a filled command; false when the writer refuses (answer 503 overloaded). */
FG_MUST_USE bool fg_api_submit(fg_api_t *api, fg_api_slot_t *slot);

/* Streams. read: bytes written into buf (> 0), 0 when there is nothing now (the stream called
 * `park` under its lock, and will call `unpark` when there is), -1 at the end. */
typedef void (*fg_stream_park_fn)(void *ctx);
ssize_t fg_api_stream_read(fg_api_stream_t *s, char *buf, size_t max, fg_stream_park_fn park,
                           fg_stream_park_fn unpark, void *ctx);
void fg_api_stream_free(fg_api_stream_t *s);

/* Problem answers (also used by the HTTP layer for its own refusals). */
void fg_api_problem(fg_api_answer_t *ans, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Stops event streams (shutdown): every parked stream is woken and ends. */
void fg_api_shutdown_streams(fg_api_t *api);

/* Frees what a command's parameters still own once its answer is sent. */
void fg_api_slot_release(fg_api_slot_t *slot);

/* Metrics the HTTP layer keeps, rendered by GET /metrics. Statuses are counted in slots. */
#define FG_STATUS_SLOTS 16
int fg_status_slot(int status);
int fg_status_of_slot(int slot); /* 0 for the "other" slot */
typedef struct {
    atomic_uint_fast64_t requests[FG_R_COUNT][FG_STATUS_SLOTS];
    atomic_int_fast64_t parked;
    atomic_int_fast64_t streams;
    atomic_int_fast64_t connections;
    fg_hist_t request_seconds;
} fg_http_metrics_t;
void fg_api_set_metrics(fg_api_t *api, fg_http_metrics_t *m);

#endif
