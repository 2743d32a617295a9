/*
 * events.c — the live event stream of each sale (Server-Sent Events).
 *
 * The writer publishes a sale's snapshot (state and units available per item) after every loop
 * in which it changed; subscribers get the newest snapshot, never a backlog: a slow client
 * skips intermediate states instead of holding memory for them. Event ids are one counter for
 * all sales, so Last-Event-ID tells whether the client has seen the newest.
 *
 * A subscriber with nothing to send parks (the HTTP layer suspends its connection) under the
 * hub's lock, and publish wakes it under the same lock, so no change is missed between "nothing
 * to send" and "parked". A keep-alive thread wakes parked streams every FG_SSE_KEEPALIVE_S so
 * idle clients get a comment line and vanished ones are noticed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "util/check.h"
#include "util/clock.h"

#define FG_SSE_KEEPALIVE_S 15

typedef struct sale_entry {
    char id[FG_ID_BYTES_MAX + 1];
    char *json;
    uint64_t seq;
    struct sale_entry *next;
} sale_entry_t;

typedef struct sub {
    fg_api_stream_t base; /* first: the stream vtable */
    fg_events_t *hub;
    char sale_id[FG_ID_BYTES_MAX + 1];
    uint64_t last_seq;
    int64_t last_write_ms;
    fg_buf_t pending; /* an event being copied out */
    size_t pending_off;
    bool parked;
    fg_stream_park_fn unpark;
    void *ctx;
    struct sub *prev, *next; /* parked list */
} sub_t;

struct fg_events {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sale_entry_t *sales;
    uint64_t seq;
    sub_t *parked;
    bool stopping;
    pthread_t keepalive;
};

static sale_entry_t *find(fg_events_t *ev, const char *id) {
    for (sale_entry_t *s = ev->sales; s != NULL; s = s->next)
        if (strcmp(s->id, id) == 0) return s;
    return NULL;
}

static void unlink_sub(fg_events_t *ev, sub_t *s) {
    if (!s->parked) return;
    if (s->prev)
        s->prev->next = s->next;
    else
        ev->parked = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->parked = false;
}

/* Wakes parked subscribers: of one sale, or all when sale_id is NULL; only those idle since
 * before idle_before_ms when that is not 0. Caller holds mu. */
static void wake(fg_events_t *ev, const char *sale_id, int64_t idle_before_ms) {
    for (sub_t *s = ev->parked; s != NULL;) {
        sub_t *next = s->next;
        bool hit = (sale_id == NULL || strcmp(s->sale_id, sale_id) == 0) &&
                   (idle_before_ms == 0 || s->last_write_ms < idle_before_ms);
        if (hit) {
            unlink_sub(ev, s);
            s->unpark(s->ctx);
        }
        s = next;
    }
}

static void *keepalive_main(void *arg) {
    fg_events_t *ev = arg;
    pthread_mutex_lock(&ev->mu);
    while (!ev->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&ev->cv, &ev->mu, &ts);
        wake(ev, NULL, fg_clock_now_ms() - FG_SSE_KEEPALIVE_S * 1000);
    }
    pthread_mutex_unlock(&ev->mu);
    return NULL;
}

fg_events_t *fg_events_new(void) {
    fg_events_t *ev = calloc(1, sizeof *ev);
    if (ev == NULL) return NULL;
    pthread_mutex_init(&ev->mu, NULL);
    pthread_cond_init(&ev->cv, NULL);
    if (pthread_create(&ev->keepalive, NULL, keepalive_main, ev) != 0) {
        pthread_cond_destroy(&ev->cv);
        pthread_mutex_destroy(&ev->mu);
        free(ev);
        return NULL;
    }
    return ev;
}

void fg_events_shutdown(fg_events_t *ev) {
    pthread_mutex_lock(&ev->mu);
    ev->stopping = true;
    wake(ev, NULL, 0);
    pthread_cond_broadcast(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
}

void fg_events_free(fg_events_t *ev) {
    if (ev == NULL) return;
    fg_events_shutdown(ev);
    pthread_join(ev->keepalive, NULL);
    for (sale_entry_t *s = ev->sales; s != NULL;) {
        sale_entry_t *next = s->next;
        free(s->json);
        free(s);
        s = next;
    }
    pthread_cond_destroy(&ev->cv);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

/* copy is owned by the sale's entry, freed by the next publish or fg_events_free. gcc 12's
 * analyzer does not follow an entry found by walking the list and reports copy leaked. */
FG_ANALYZER_OFF("-Wanalyzer-malloc-leak")
void fg_events_publish(fg_events_t *ev, const char *sale_id, const char *json) {
    char *copy = strdup(json);
    if (copy == NULL) return; /* the next change publishes again */
    pthread_mutex_lock(&ev->mu);
    sale_entry_t *s = find(ev, sale_id);
    if (s == NULL && (s = calloc(1, sizeof *s)) != NULL) {
        snprintf(s->id, sizeof s->id, "%s", sale_id);
        s->next = ev->sales;
        ev->sales = s;
    }
    if (s != NULL) {
        free(s->json);
        s->json = copy;
        s->seq = ++ev->seq;
        wake(ev, sale_id, 0);
    } else {
        free(copy);
    }
    pthread_mutex_unlock(&ev->mu);
}
FG_ANALYZER_ON

/* Copies out what is pending; returns bytes, 0 when nothing is pending. */
static size_t drain(sub_t *s, char *buf, size_t max) {
    size_t left = s->pending.len - s->pending_off;
    size_t n = left < max ? left : max;
    memcpy(buf, s->pending.data + s->pending_off, n);
    s->pending_off += n;
    if (s->pending_off == s->pending.len) {
        fg_buf_reset(&s->pending);
        s->pending_off = 0;
    }
    return n;
}

static ssize_t sub_read(fg_api_stream_t *base, char *buf, size_t max, fg_stream_park_fn park,
                        fg_stream_park_fn unpark, void *ctx) {
    sub_t *s = (sub_t *)base;
    fg_events_t *ev = s->hub;
    if (s->pending.len > s->pending_off) return (ssize_t)drain(s, buf, max);
    int64_t now_ms = fg_clock_now_ms();
    pthread_mutex_lock(&ev->mu);
    sale_entry_t *e = find(ev, s->sale_id);
    if (ev->stopping) {
        pthread_mutex_unlock(&ev->mu);
        return -1;
    }
    if (e != NULL && e->seq > s->last_seq) {
        fg_buf_printf(&s->pending, "id: %llu\nevent: sale\ndata: %s\n\n",
                      (unsigned long long)e->seq, e->json);
        s->last_seq = e->seq;
    } else if (now_ms - s->last_write_ms >= FG_SSE_KEEPALIVE_S * 1000) {
        fg_buf_str(&s->pending, ": keep-alive\n\n");
    } else {
        park(ctx);
        s->parked = true;
        s->unpark = unpark;
        s->ctx = ctx;
        s->next = ev->parked;
        if (ev->parked) ev->parked->prev = s;
        ev->parked = s;
        pthread_mutex_unlock(&ev->mu);
        return 0;
    }
    pthread_mutex_unlock(&ev->mu);
    if (s->pending.overflow) return -1;
    s->last_write_ms = now_ms;
    return (ssize_t)drain(s, buf, max);
}

static void sub_free(fg_api_stream_t *base) {
    sub_t *s = (sub_t *)base;
    pthread_mutex_lock(&s->hub->mu);
    unlink_sub(s->hub, s);
    pthread_mutex_unlock(&s->hub->mu);
    fg_buf_free(&s->pending);
    free(s);
}

fg_api_stream_t *fg_events_subscribe(fg_events_t *ev, const char *sale_id, uint64_t last_id) {
    pthread_mutex_lock(&ev->mu);
    bool known = find(ev, sale_id) != NULL;
    /* An id from before a restart (ids start over) means "send the newest". */
    if (last_id > ev->seq) last_id = 0;
    pthread_mutex_unlock(&ev->mu);
    if (!known) return NULL;
    sub_t *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->base.read = sub_read;
    s->base.free = sub_free;
    s->hub = ev;
    snprintf(s->sale_id, sizeof s->sale_id, "%s", sale_id);
    s->last_seq = last_id;
    s->last_write_ms = fg_clock_now_ms();
    fg_buf_init(&s->pending, 1 << 20);
    return &s->base;
}
