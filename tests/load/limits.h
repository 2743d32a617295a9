/*
 * limits.h — every limit floodgate-load holds itself to, in one place, with its unit last.
 *
 * floodgate-load is an open-loop load generator: it must never be the thing that runs out of
 * memory, loops forever or hides its own slowness. Options are checked against these where they
 * enter (load.c), buffers are capped by them, and every wait is bounded by one of them.
 */
#ifndef FGL_LIMITS_H
#define FGL_LIMITS_H

/* Options */
#define FGL_CONNECTIONS_MAX    20000   /* --connections: the server's own connection limit */
#define FGL_BUYERS_MAX         500000  /* --buyers */
#define FGL_RATE_PER_S_MAX     1000000 /* --rate, --after-rate: arrivals per second */
#define FGL_DURATION_S_MAX     3600    /* --duration-s */
#define FGL_AFTER_S_MAX        60      /* --after-s */
#define FGL_LIMIT_PER_BUYER    100     /* the server's own maximum limit_per_buyer */
#define FGL_TIMEOUT_MS_MIN     100     /* --timeout-ms, per request */
#define FGL_TIMEOUT_MS_MAX     60000
#define FGL_TIMEOUT_MS_DEFAULT 10000

/* Connections and requests */
#define FGL_REQUEST_BYTES_MAX  2048        /* one request: line, headers and body */
#define FGL_BODY_BYTES_MAX     4096        /* an answer body kept (setup, registration) */
#define FGL_READ_CHUNK_BYTES   (64 * 1024) /* one read() from a socket */
#define FGL_EVENTS_MAX         1024        /* events taken by one epoll_pwait2 */
#define FGL_SWEEP_MS           20          /* timeouts and reconnects are checked this often */
#define FGL_CONNECT_MS_MAX     10000       /* every connection open within this, or fail */
#define FGL_DRAIN_MS_MAX       5000        /* after the run: answers still in flight */
#define FGL_URL_BYTES_MAX      256         /* --url */
#define FGL_ID_BYTES_MAX       64          /* --sale-id, the SKU id */
#define FGL_TOKEN_BYTES_MAX    128         /* a buyer token as the server gives it, plus NUL */
#define FGL_IDEM_KEY_BYTES_MAX 64          /* the generator's own Idempotency-Keys */

/* Setup and registration */
#define FGL_SETUP_CALL_MS_MAX  10000 /* one operator call */
#define FGL_REGISTER_CONNS_MAX 64    /* registrations in flight: below any shedding limit */
#define FGL_REGISTER_TRIES_MAX 20    /* tries of one registration (same key) after 429/503 */
#define FGL_REGISTER_S_MAX     300   /* the whole registration phase */

/* Reports */
#define FGL_STATUS_SLOTS       600  /* answers counted by exact status; slot 0: no answer */
#define FGL_PROBES_MAX         4096 /* answers of the after phase kept one by one */
#define FGL_RECOVERY_WINDOW_MS 100  /* the after phase is judged normal or not per window */

_Static_assert(FGL_REGISTER_CONNS_MAX <= FGL_CONNECTIONS_MAX, "registration uses the pool");
_Static_assert(FGL_TOKEN_BYTES_MAX + FGL_IDEM_KEY_BYTES_MAX + 256 < FGL_REQUEST_BYTES_MAX,
               "a hold request fits its buffer");
_Static_assert(FGL_SWEEP_MS * 5 <= FGL_TIMEOUT_MS_MIN, "timeouts are swept often enough");

#endif
