/*
 * server.h — the HTTP layer: floodgate's own HTTP/1.1 server, one epoll loop thread per core.
 *
 * It owns connections and requests: reads headers and body within limits and deadlines, refuses
 * requests whose framing or bytes HTTP forbids before the API sees them, hands complete
 * requests to the API, parks (suspends) those whose answer waits for a commit and resumes them
 * when the answer is ready, streams event and export answers, counts requests for /metrics, and
 * writes one log line per request. Each loop thread closes its connections whose request is
 * too slow to arrive.
 */
#ifndef FG_HTTP_SERVER_H
#define FG_HTTP_SERVER_H

#include <stddef.h>

#include "api/api.h"

typedef struct fg_http fg_http_t;

typedef struct {
    const char *listen; /* "127.0.0.1:8080", "[::1]:8080", ":8080" (all IPv4 interfaces) */
    int threads;        /* loop threads; 0 = one per core, more with a high connection limit */
} fg_http_config_t;

/* Binds and starts serving. NULL with a message in err on failure. */
fg_http_t *fg_http_start(const fg_http_config_t *cfg, fg_api_t *api, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int fg_http_port(const fg_http_t *h);
/* Stops accepting new connections; open ones are still served. */
void fg_http_quiesce(fg_http_t *h);
/* Waits (at most `timeout_ms`) until no request is in progress. Returns how many still are. */
long fg_http_drain(fg_http_t *h, int timeout_ms);
/* Closes every connection and frees the server. */
void fg_http_stop(fg_http_t *h);

#endif
