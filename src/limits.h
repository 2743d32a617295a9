/*
 * limits.h — every limit floodgate enforces, in one place, with its unit in its name.
 *
 * Input is checked against these where it enters (the HTTP layer for sizes and counts, the API
 * layer for fields). Memory that grows with input is bounded by them. Changing one is a
 * deliberate act: docs/operations.md lists them for operators.
 */
#ifndef FG_LIMITS_H
#define FG_LIMITS_H

/* HTTP */
#define FG_BODY_BYTES_MAX        (64 * 1024) /* request body; more is 413 body_too_large */
#define FG_CONN_MEMORY_BYTES_MAX (16 * 1024) /* per connection, headers + read buffer */
#define FG_CONNECTIONS_MAX       20000       /* open connections; more are refused at accept */
#define FG_CONN_TIMEOUT_S        30          /* idle keep-alive connection */
#define FG_PARKED_MAX            16384       /* requests waiting for a batch; more is 503 */
#define FG_ADMIT_MIN             1024        /* buyers' writes at the writer always admitted */
#define FG_ADMIT_START           2048        /* the admission limit at start */
#define FG_ADMIT_STEP            64          /* it grows by this while writes wait less than: */
#define FG_ADMIT_WAIT_US_TARGET  10000       /* a write's wait at the writer, longest in a window */
#define FG_ADMIT_WINDOW_MS       100         /* how often the limit moves */
#define FG_QUEUE_DEPTH_MAX       16384       /* commands queued for the writer; more is 503 */
#define FG_RETRY_AFTER_S         1           /* Retry-After on 503 overloaded */
#define FG_URL_BYTES_MAX         1024        /* path + query */
#define FG_SSE_CLIENTS_MAX       4096        /* concurrent event streams */

/* HTTP: slow and many clients. A request line must end within FG_CONN_TIMEOUT_S of the connection
 * being ready for it (as an idle connection must send one), then its headers and body must
 * arrive within FG_REQUEST_RECV_S_MAX, however slowly they trickle; past that the connection is
 * closed. Open files bound connections as well: the limit is lowered to fit RLIMIT_NOFILE. */
#define FG_REQUEST_RECV_S_MAX   10  /* headers and body, from the end of the request line */
#define FG_CONN_SWEEP_MS        500 /* how often too-slow requests are looked for */
#define FG_CONN_FDS_RESERVED    256 /* open files kept from connections (ledger, logs, accept) */

/* Strings and lists in bodies */
#define FG_ID_BYTES_MAX            64  /* sale, product, SKU ids: [A-Za-z0-9._-] */
#define FG_NAME_BYTES_MAX          200 /* display names */
#define FG_EMAIL_BYTES_MAX         254 /* RFC 5321 path limit */
#define FG_REASON_BYTES_MAX        200 /* blocked-offer reason */
#define FG_ADDRESS_FIELD_BYTES_MAX 200 /* each shipping address line */
#define FG_POSTAL_CODE_BYTES_MAX   16
#define FG_IDEM_KEY_BYTES_MAX      255  /* Idempotency-Key header */
#define FG_TOKEN_BYTES_MAX         128  /* Authorization bearer token */
#define FG_JSON_DOC_BYTES_MAX      8192 /* specs / attributes objects, serialized */
#define FG_SKUS_PER_PRODUCT_MAX    64
#define FG_POOLS_PER_SALE_MAX      64 /* items of a sale */
#define FG_MARKETS_PER_POOL_MAX    64
#define FG_MARKETS_MAX             250
#define FG_PRODUCTS_MAX            1000
#define FG_SKUS_MAX                4000
#define FG_SALES_MAX               1000
#define FG_ALTERNATIVES_MAX        8 /* alternatives named in a not-offered answer */

/* Sales */
#define FG_STOCK_MAX           100000000LL /* units in one pool */
#define FG_LIMIT_PER_BUYER_MAX 100
#define FG_HOLD_TTL_S_MIN      10
#define FG_HOLD_TTL_S_MAX      3600
#define FG_PRICE_MINOR_MAX     100000000000LL

/* Objects */
#define FG_BUYERS_MAX 10000000
#define FG_HOLDS_MAX  50000000

/* Engine, ledger */
#define FG_IDEM_TTL_MS         (24LL * 3600 * 1000) /* stored answers kept for replay */
#define FG_WEBHOOK_TOLERANCE_S 300                  /* signature timestamp window, either way */
#define FG_TICK_MS             50  /* writer wakes at least this often to expire holds */
#define FG_EXPORT_PAGE_ROWS    512 /* rows read per step of a streamed export */
#define FG_ME_ORDERS_MAX       100 /* orders listed by GET /v1/me/orders */

/* Build-time checks that the limits agree with each other. */
_Static_assert(FG_CONN_MEMORY_BYTES_MAX >= 4096, "a connection must hold a normal header set");
_Static_assert(FG_ADMIT_MIN <= FG_PARKED_MAX, "the admission limit has room to move");
_Static_assert(FG_IDEM_KEY_BYTES_MAX < FG_CONN_MEMORY_BYTES_MAX, "key must fit in headers");
_Static_assert(FG_REQUEST_RECV_S_MAX < FG_CONN_TIMEOUT_S, "a slow request ends before an idle one");
_Static_assert(FG_CONN_SWEEP_MS < FG_REQUEST_RECV_S_MAX * 1000, "sweeps are finer than deadlines");
_Static_assert(FG_CONNECTIONS_MAX >= 10000 + 1000, "10,000 idle connections with headroom");
_Static_assert(FG_POOLS_PER_SALE_MAX <= 65535, "pool index is 16 bits");
_Static_assert(FG_BUYERS_MAX < (1LL << 40), "buyer id packs into 40 bits");
_Static_assert(FG_SALES_MAX < (1 << 20), "sale index packs into 20 bits");

#endif
