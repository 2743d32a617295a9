/*
 * limits.h — every limit floodgate-crowd holds itself to, in one place, with its unit last.
 *
 * The crowd is a load generator: it must never be the thing that runs out of memory or loops
 * forever. Options are checked against these where they enter (opts.c), buffers are capped by
 * them, and every wait and retry is bounded by one of them.
 */
#ifndef FGC_LIMITS_H
#define FGC_LIMITS_H

/* Options */
#define FGC_BUYERS_MAX          1000000     /* --buyers */
#define FGC_CONNECTIONS_MAX     10000       /* --connections */
#define FGC_RATE_PER_S_MAX      1000000     /* --rate, arrivals per second */
#define FGC_STOCK_MAX           100000000LL /* --stock: the server's own pool limit */
#define FGC_LIMIT_PER_BUYER_MAX 100         /* --limit: the server's own limit */
#define FGC_HOLD_TTL_S_MIN      10          /* --hold-ttl-s: the server's range */
#define FGC_HOLD_TTL_S_MAX      3600
#define FGC_OPENS_IN_S_MAX      3600  /* --opens-in-s */
#define FGC_DURATION_S_MAX      86400 /* --duration-s */
#define FGC_TIMEOUT_MS_MIN      100   /* --timeout-ms, per request */
#define FGC_TIMEOUT_MS_MAX      600000
#define FGC_TIMEOUT_MS_DEFAULT  10000

/* HTTP */
#define FGC_REQUEST_BYTES_MAX     4096        /* one request: line, headers and body */
#define FGC_HEAD_BYTES_MAX        (16 * 1024) /* an answer's status line, headers and trailers */
#define FGC_LINE_BYTES_MAX        1024        /* one header line kept; longer ones are skipped */
#define FGC_BODY_BYTES_MAX        (64 * 1024) /* a buffered answer body (API answers are small) */
#define FGC_EXPORT_LINE_BYTES_MAX (64 * 1024) /* one NDJSON order of the export */
#define FGC_READ_CHUNK_BYTES      (64 * 1024) /* one read() from a socket */
#define FGC_URL_BYTES_MAX         1024        /* --url, and every path the crowd builds */
#define FGC_TOKEN_SECRET_BYTES    32          /* a buyer token's secret, decoded */
#define FGC_TOKEN_TEXT_BYTES_MAX  96          /* "fgb_<id>_<43 base64url>" plus NUL */
#define FGC_IDEM_KEY_BYTES_MAX    96          /* the crowd's own Idempotency-Keys */

/* Retries and waits */
#define FGC_RETRIES_DEFAULT       5   /* --retries: tries of one step after the first (same key) */
#define FGC_RETRIES_MAX           200 /* --retries at most: about 400 s of backoff in all */
#define FGC_RETRY_AFTER_S_MAX     10  /* a longer Retry-After is capped to this */
#define FGC_BACKOFF_MS_MIN        100 /* first backoff after a timeout or 5xx */
#define FGC_BACKOFF_MS_MAX        2000
#define FGC_NOT_OPEN_RETRIES_MAX  50 /* 409 sale_not_open at the opening (clock skew) */
#define FGC_NOT_OPEN_RETRY_MS     100
#define FGC_DRAIN_MS_MAX          5000  /* after the run: answers still in flight */
#define FGC_EXPIRY_MARGIN_MS      2000  /* after the last hold's TTL, before checking expiry */
#define FGC_HELD_RECHECK_S_MAX    5     /* units still held: stats read again, once a second */
#define FGC_WARMUP_MS             2000  /* connections opened this long before the opening */
#define FGC_LOOP_WAIT_MS_MAX      100   /* one epoll_wait; timeouts are swept this often */
#define FGC_ARRIVALS_PER_STEP_MAX 10000 /* open-loop arrivals started per loop step */
#define FGC_AUDIT_CALL_MS         60000 /* stats, export: one call of the audit */

/* Reports */
#define FGC_TALLY_ROWS_MAX      64   /* distinct (step, status, code) answers counted */
#define FGC_CODE_BYTES_MAX      40   /* an error code kept for the tally */
#define FGC_VIOLATIONS_KEPT_MAX 1000 /* violations printed; more are only counted */
#define FGC_VIOLATION_BYTES_MAX 240  /* one violation line */
#define FGC_PROGRESS_TTY_MS     250  /* progress bar redraw on a terminal */
#define FGC_PROGRESS_LOG_MS     5000 /* progress line otherwise */
#define FGC_TIMELINE_MS         100  /* --timeline: one row per interval of the sale */

_Static_assert(FGC_BUYERS_MAX < (1LL << 31), "a buyer index fits a 32-bit tag");
_Static_assert(FGC_CONNECTIONS_MAX <= FGC_BUYERS_MAX, "no more connections than buyers");
_Static_assert(FGC_LINE_BYTES_MAX < FGC_HEAD_BYTES_MAX, "a line fits the head");
_Static_assert(FGC_REQUEST_BYTES_MAX >= 2 * FGC_URL_BYTES_MAX, "a request holds its path");
_Static_assert(FGC_NOT_OPEN_RETRIES_MAX < 256, "tries are counted in 8 bits");
_Static_assert(FGC_RETRIES_MAX < 256, "tries are counted in 8 bits");

#endif
