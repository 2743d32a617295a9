/*
 * test_gate.c — the sold-out gate (src/api/gate.c): what the HTTP threads may refuse without
 * the writer, and that the writer's publishing and the loop threads' reading do not race (this
 * file also runs under ThreadSanitizer, suite "tsan").
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

#define NOW 1800000000000LL

/* A sale "s1" with one pool of "sku-a", one unit, held: sold out. */
static fg_sale_t *sale_new(void) {
    fg_sale_t *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    snprintf(s->def.id, sizeof s->def.id, "s1");
    s->def.pool_count = 1;
    snprintf(s->def.pools[0].sku, sizeof s->def.pools[0].sku, "sku-a");
    s->def.pools[0].stock = 1;
    s->held[0] = 1;
    return s;
}

typedef struct {
    fg_gate_t *g;
    fg_engine_t *e;
    fg_sale_t *s;
} world_t;

static world_t world(void) {
    world_t w = {fg__gate_new(), fg_engine_new(), sale_new()};
    cr_assert_not_null(w.g);
    cr_assert_not_null(w.e);
    return w;
}

static void world_free(world_t *w) {
    fg__gate_free(w->g);
    fg_engine_free(w->e);
    free(w->s);
}

Test(gate, nothing_is_refused_before_a_sale_is_published) {
    world_t w = world();
    cr_assert(!fg__gate_sold_out(w.g, "s1", "sku-a", NOW));
    fg__gate_loaded(w.g, w.e);
    cr_assert(!fg__gate_sold_out(w.g, "s1", "sku-a", NOW));
    world_free(&w);
}

Test(gate, a_sold_out_sale_is_refused_for_its_own_skus_only) {
    world_t w = world();
    fg__gate_loaded(w.g, w.e);
    fg__gate_publish(w.g, w.e, w.s, NOW);
    cr_assert(fg__gate_sold_out(w.g, "s1", "sku-a", NOW));
    cr_assert(!fg__gate_sold_out(w.g, "s1", "sku-b", NOW), "a SKU the sale does not sell");
    cr_assert(!fg__gate_sold_out(w.g, "s2", "sku-a", NOW), "another sale");
    /* the unit comes back */
    w.s->held[0] = 0;
    fg__gate_publish(w.g, w.e, w.s, NOW);
    cr_assert(!fg__gate_sold_out(w.g, "s1", "sku-a", NOW));
    world_free(&w);
}

Test(gate, a_key_sent_to_the_writer_is_never_refused) {
    world_t w = world();
    fg__gate_publish(w.g, w.e, w.s, NOW);
    uint64_t k1 = fg_engine_idem_hash(7, "key-1"), k2 = fg_engine_idem_hash(7, "key-2");
    cr_assert(fg__gate_refuses(w.g, "s1", "sku-a", k1, NOW));
    fg__gate_mark_key(w.g, k1);
    cr_assert(!fg__gate_refuses(w.g, "s1", "sku-a", k1, NOW));
    fg__gate_mark_key(w.g, k1); /* twice: still marked */
    cr_assert(!fg__gate_refuses(w.g, "s1", "sku-a", k1, NOW));
    /* A different key almost surely has another bit; if not, it is only sent to the writer. */
    if ((k1 >> 40) != (k2 >> 40)) cr_assert(fg__gate_refuses(w.g, "s1", "sku-a", k2, NOW));
    cr_assert_eq(fg__gate_refused(w.g), (k1 >> 40) != (k2 >> 40) ? 2u : 1u);
    world_free(&w);
}

Test(gate, a_closed_sale_is_left_to_the_writer) {
    world_t w = world();
    w.s->def.closes_at_ms = NOW + 1000;
    fg__gate_publish(w.g, w.e, w.s, NOW);
    cr_assert(fg__gate_sold_out(w.g, "s1", "sku-a", NOW + 999));
    cr_assert(!fg__gate_sold_out(w.g, "s1", "sku-a", NOW + 1000));
    world_free(&w);
}

Test(gate, nothing_is_refused_while_the_engine_is_gone) {
    world_t w = world();
    fg__gate_publish(w.g, w.e, w.s, NOW);
    cr_assert(fg__gate_sold_out(w.g, "s1", "sku-a", NOW));
    fg__gate_loaded(w.g, NULL); /* a commit failed: the engine is dropped */
    cr_assert(!fg__gate_sold_out(w.g, "s1", "sku-a", NOW));
    fg__gate_publish(w.g, w.e, w.s, NOW); /* rebuilt and published again */
    cr_assert(fg__gate_sold_out(w.g, "s1", "sku-a", NOW));
    world_free(&w);
}

Test(gate, many_sales_each_in_its_own_slot) {
    world_t w = world();
    for (int i = 0; i < FG_SALES_MAX; i++) {
        snprintf(w.s->def.id, sizeof w.s->def.id, "sale-%d", i);
        w.s->held[0] = i % 2; /* odd sales sold out */
        fg__gate_publish(w.g, w.e, w.s, NOW);
    }
    for (int i = 0; i < FG_SALES_MAX; i++) {
        char id[32];
        snprintf(id, sizeof id, "sale-%d", i);
        cr_assert_eq(fg__gate_sold_out(w.g, id, "sku-a", NOW), i % 2 == 1, "%s", id);
    }
    world_free(&w);
}

/* ---------------------------------------------------------------- threads */

#define PUBLISHES 20000

#define READS_MIN 10000

typedef struct {
    world_t *w;
    atomic_int started;
    atomic_bool done;
    atomic_long answers;
} race_t;

/* Reads at least READS_MIN times, and on while the writer publishes (bounded). */
static void *reader(void *arg) {
    race_t *r = arg;
    long n = 0;
    atomic_fetch_add(&r->started, 1);
    for (long i = 0; (i < READS_MIN || !atomic_load(&r->done)) && i < 50 * PUBLISHES; i++) {
        uint64_t k = fg_engine_idem_hash((uint64_t)i, "k");
        if (!fg__gate_refuses(r->w->g, "s1", "sku-a", k, NOW)) fg__gate_mark_key(r->w->g, k);
        n++;
    }
    atomic_fetch_add(&r->answers, n);
    return NULL;
}

/* One writer publishes while two readers decide: TSan checks the seqlock and the bitset. */
Test(gate, publishing_and_reading_at_once) {
    world_t w = world();
    race_t r = {.w = &w};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, reader, &r), 0);
    while (atomic_load(&r.started) < 2)
        sched_yield();
    for (int i = 0; i < PUBLISHES; i++) {
        w.s->held[0] = i % 2;
        fg__gate_publish(w.g, w.e, w.s, NOW);
    }
    atomic_store(&r.done, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_geq(atomic_load(&r.answers), 2 * READS_MIN);
    /* the last state published wins: its unit held, sold out */
    cr_assert_eq(fg__gate_sold_out(w.g, "s1", "sku-a", NOW), (PUBLISHES - 1) % 2 == 1);
    world_free(&w);
}
