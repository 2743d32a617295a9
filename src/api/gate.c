/*
 * gate.c — what the HTTP threads may know of sales without asking the writer: which sales are
 * sold out, and which Idempotency-Keys holds have used.
 *
 * When a sale is sold out, most of the crowd's hold requests are refused, and each refusal that
 * went through the writer cost a hand-off, a resume and three BLAKE2b hashes for an answer that
 * stores nothing. The writer publishes here, after each loop, the state of every sale that
 * changed (fg__gate_publish); a loop thread then answers a hold on a sold-out sale at once
 * (holds.c), before the token is checked: a sale's state is public (GET /v1/sales/{id}).
 *
 * Two things keep that answer the one the writer would give:
 * - It is given only while no hold is due to expire (the writer publishes the engine's next
 *   expiry): an expired hold gives its unit back, and the writer learns that only when it runs.
 * - I5: a retry of a hold that was placed (its 201 lost in transit) must get that 201 again,
 *   even once the sale is sold out. So every hold request that goes to the writer first marks
 *   its key here (a bitset indexed by the same hash the engine stores keys by), and a key that
 *   may have been seen always goes to the writer. Bits are never cleared: a false "seen" only
 *   costs a trip to the writer. When the engine is (re)loaded the writer marks every key it
 *   knows (fg__gate_loaded), before it publishes any sale, so a restart forgets nothing.
 * Each sale's slot is a seqlock: the writer is its only writer, readers retry nothing (a slot
 * being written sends the request to the writer).
 */
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "util/check.h"

#define GATE_SLOTS     2048 /* sale slots, open addressing on the id's hash */
#define GATE_SEEN_BITS 24   /* 2^24 bits (2 MiB) of keys seen */

_Static_assert(GATE_SLOTS >= 2 * FG_SALES_MAX, "sale slots stay at most half full");
_Static_assert((GATE_SLOTS & (GATE_SLOTS - 1)) == 0, "slots are a power of two");

typedef struct {
    atomic_uint_fast64_t seq; /* odd while the writer changes the slot; 0: unused */
    char id[FG_ID_BYTES_MAX + 1];
    atomic_bool sold_out;
    _Atomic int64_t closes_at_ms; /* 0: none */
    atomic_int sku_count;
    atomic_uint_fast64_t sku_hash[FG_POOLS_PER_SALE_MAX];
} gate_sale_t;

struct fg_gate {
    atomic_uint_fast64_t refused;   /* holds refused here, for /metrics */
    _Atomic int64_t next_expiry_ms; /* INT64_MIN: not known (no engine): nothing is refused */
    gate_sale_t sales[GATE_SLOTS];
    atomic_uint_fast64_t seen[(1u << GATE_SEEN_BITS) / 64];
};

fg_gate_t *fg__gate_new(void) {
    fg_gate_t *g = calloc(1, sizeof *g);
    if (g != NULL) atomic_store(&g->next_expiry_ms, INT64_MIN);
    return g;
}

void fg__gate_free(fg_gate_t *g) {
    free(g);
}

static size_t seen_bit(uint64_t idem_hash) {
    return (size_t)(idem_hash >> (64 - GATE_SEEN_BITS));
}

void fg__gate_mark_key(fg_gate_t *g, uint64_t idem_hash) {
    size_t bit = seen_bit(idem_hash);
    uint64_t m = (uint64_t)1 << (bit % 64);
    /* A retried key finds its bit set: no write, so the line is not taken from other cores. */
    if ((atomic_load(&g->seen[bit / 64]) & m) == 0) atomic_fetch_or(&g->seen[bit / 64], m);
}

static bool key_seen(fg_gate_t *g, uint64_t idem_hash) {
    size_t bit = seen_bit(idem_hash);
    return (atomic_load(&g->seen[bit / 64]) >> (bit % 64)) & 1;
}

static void mark_tag(void *ctx, uint64_t idem_hash) {
    fg__gate_mark_key(ctx, idem_hash);
}

/* The slot of a sale id: its own, or the empty one where it would go. NULL when full. */
static gate_sale_t *slot_of(fg_gate_t *g, const char *id) {
    size_t i = (size_t)fg_hash_str(id, strlen(id)) & (GATE_SLOTS - 1);
    for (size_t n = 0; n < GATE_SLOTS; n++, i = (i + 1) & (GATE_SLOTS - 1)) {
        gate_sale_t *s = &g->sales[i];
        if (atomic_load_explicit(&s->seq, memory_order_acquire) == 0 || strcmp(s->id, id) == 0)
            return s;
    }
    return NULL;
}

void fg__gate_loaded(fg_gate_t *g, const fg_engine_t *e) {
    if (e == NULL) {
        /* No engine (the ledger failed): refuse nothing here until it is back. */
        atomic_store(&g->next_expiry_ms, INT64_MIN);
        return;
    }
    fg_engine_idem_each_hash(e, mark_tag, g);
}

void fg__gate_publish(fg_gate_t *g, const fg_engine_t *e, const fg_sale_t *s, int64_t now_ms) {
    atomic_store(&g->next_expiry_ms, fg_engine_next_expiry_ms(e));
    gate_sale_t *slot = slot_of(g, s->def.id);
    if (slot == NULL) return; /* cannot happen below FG_SALES_MAX: never refused here */
    uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_relaxed);
    uint64_t odd = seq == 0 ? 1 : seq + 1;
    FG_ASSERT(odd % 2 == 1);
    if (seq == 0) snprintf(slot->id, sizeof slot->id, "%s", s->def.id);
    /* release: a reader that sees the slot in use (seq != 0) also sees its id */
    atomic_store_explicit(&slot->seq, odd, memory_order_release);
    atomic_thread_fence(memory_order_release);
    bool sold_out = fg_engine_sale_state(s, now_ms) == FG_SALE_SOLD_OUT;
    atomic_store_explicit(&slot->sold_out, sold_out, memory_order_relaxed);
    atomic_store_explicit(&slot->closes_at_ms, s->def.closes_at_ms, memory_order_relaxed);
    int n = s->def.pool_count;
    for (int i = 0; i < n; i++) {
        const char *sku = s->def.pools[i].sku;
        atomic_store_explicit(&slot->sku_hash[i], fg_hash_str(sku, strlen(sku)),
                              memory_order_relaxed);
    }
    atomic_store_explicit(&slot->sku_count, n, memory_order_relaxed);
    atomic_store_explicit(&slot->seq, odd + 1, memory_order_release);
}

bool fg__gate_sold_out(fg_gate_t *g, const char *sale_id, const char *sku, int64_t now_ms) {
    int64_t next_expiry = atomic_load(&g->next_expiry_ms);
    if (next_expiry == INT64_MIN || now_ms >= next_expiry) return false;
    gate_sale_t *slot = slot_of(g, sale_id);
    if (slot == NULL) return false;
    uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
    if (seq == 0 || seq % 2 == 1) return false;
    bool sold_out = atomic_load_explicit(&slot->sold_out, memory_order_relaxed);
    int64_t closes_at = atomic_load_explicit(&slot->closes_at_ms, memory_order_relaxed);
    int n = atomic_load_explicit(&slot->sku_count, memory_order_relaxed);
    uint64_t want = fg_hash_str(sku, strlen(sku));
    bool in_sale = false;
    for (int i = 0; i < n && !in_sale; i++)
        in_sale = atomic_load_explicit(&slot->sku_hash[i], memory_order_relaxed) == want;
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&slot->seq, memory_order_relaxed) != seq) return false;
    /* A closed sale is "sale_not_open", an unknown SKU "invalid_field": the writer says so. */
    return sold_out && in_sale && (closes_at == 0 || now_ms < closes_at);
}

bool fg__gate_refuses(fg_gate_t *g, const char *sale_id, const char *sku, uint64_t idem_hash,
                      int64_t now_ms) {
    if (!fg__gate_sold_out(g, sale_id, sku, now_ms) || key_seen(g, idem_hash)) return false;
    atomic_fetch_add_explicit(&g->refused, 1, memory_order_relaxed);
    return true;
}

uint64_t fg__gate_refused(fg_gate_t *g) {
    return atomic_load_explicit(&g->refused, memory_order_relaxed);
}
