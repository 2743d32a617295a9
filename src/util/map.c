/*
 * map.c — see map.h.
 */
#include "util/map.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Old slots looked at per put or del while a large map grows. The growth starts at 3/4 load
 * and the next one is due after as many puts again; at 32 slots a put, the old table is empty
 * long before (after 1/32 of its size in puts). */
#define STEP_SLOTS 32
#define NONE       SIZE_MAX

void fg_map_init(fg_map_t *m) {
    memset(m, 0, sizeof *m);
}

void fg_map_free(fg_map_t *m) {
    free(m->slots);
    free(m->old);
    memset(m, 0, sizeof *m);
}

static size_t find(const fg_map_slot_t *slots, size_t cap, uint64_t key) {
    if (cap == 0) return NONE;
    size_t j = mix(key) & (cap - 1);
    while (slots[j].key != 0) {
        if (slots[j].key == key) return j;
        j = (j + 1) & (cap - 1);
    }
    return NONE;
}

/* Puts a key known to be absent into a table with room for it. */
static void place(fg_map_slot_t *slots, size_t cap, uint64_t key, uint64_t val) {
    size_t j = mix(key) & (cap - 1);
    while (slots[j].key != 0)
        j = (j + 1) & (cap - 1);
    slots[j].key = key;
    slots[j].val = val;
}

/* Empties slot j, pulling later entries of its probe run back into the hole (backward shift),
 * so every remaining entry is still reached from its home without tombstones. Entries only move
 * towards the hole: a slot before j that is empty stays empty. */
static void remove_at(fg_map_slot_t *slots, size_t cap, size_t j) {
    size_t mask = cap - 1;
    size_t hole = j;
    for (size_t k = (j + 1) & mask; slots[k].key != 0; k = (k + 1) & mask) {
        size_t home = mix(slots[k].key) & mask;
        bool between = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (between) continue;
        slots[hole] = slots[k];
        hole = k;
    }
    slots[hole].key = 0;
    slots[hole].val = 0;
}

/* Moves entries of the old table into the new one, looking at up to budget old slots. The old
 * table is emptied from the bottom up; removing its lowest entry may pull a later one of the
 * same probe run down into that slot, so the slot is looked at again until it is empty. Slots
 * below old_next stay empty, so no probe run in the old table passes through them. */
static void step(fg_map_t *m, size_t budget) {
    if (m->old == NULL) return;
    for (; budget > 0 && m->old_next < m->old_cap; budget--) {
        fg_map_slot_t *s = &m->old[m->old_next];
        if (s->key == 0) {
            m->old_next++;
            continue;
        }
        FG_ASSERT(find(m->slots, m->cap, s->key) == NONE);
        place(m->slots, m->cap, s->key, s->val);
        remove_at(m->old, m->old_cap, m->old_next);
    }
    if (m->old_next == m->old_cap) {
        free(m->old);
        m->old = NULL;
        m->old_cap = m->old_next = 0;
    }
}

void fg_map_settle(fg_map_t *m) {
    step(m, SIZE_MAX);
}

static int grow(fg_map_t *m) {
    /* Not reached in practice (STEP_SLOTS empties the old table first); kept correct anyway. */
    fg_map_settle(m);
    size_t cap = m->cap ? m->cap * 2 : 16;
    fg_map_slot_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return -1;
    if (m->cap < FG_MAP_STEP_MIN_CAP) {
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key != 0) place(slots, cap, m->slots[i].key, m->slots[i].val);
        free(m->slots);
    } else {
        m->old = m->slots;
        m->old_cap = m->cap;
        m->old_next = 0;
    }
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int fg_map_put(fg_map_t *m, uint64_t key, uint64_t val) {
    FG_ASSERT(key != 0);
    step(m, STEP_SLOTS);
    size_t j = find(m->slots, m->cap, key);
    if (j != NONE) {
        m->slots[j].val = val;
        return 0;
    }
    j = find(m->old, m->old_cap, key);
    if (j != NONE) { /* replaced where it is; it moves over with the rest */
        m->old[j].val = val;
        return 0;
    }
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m) != 0) return -1;
    place(m->slots, m->cap, key, val);
    m->count++;
    return 0;
}

bool fg_map_get(const fg_map_t *m, uint64_t key, uint64_t *val) {
    if (key == 0) return false;
    size_t j = find(m->slots, m->cap, key);
    const fg_map_slot_t *s = j != NONE ? &m->slots[j] : NULL;
    if (s == NULL && (j = find(m->old, m->old_cap, key)) != NONE) s = &m->old[j];
    if (s == NULL) return false;
    if (val) *val = s->val;
    return true;
}

bool fg_map_del(fg_map_t *m, uint64_t key) {
    if (key == 0) return false;
    step(m, STEP_SLOTS);
    size_t j = find(m->slots, m->cap, key);
    if (j != NONE) {
        remove_at(m->slots, m->cap, j);
    } else if ((j = find(m->old, m->old_cap, key)) != NONE) {
        remove_at(m->old, m->old_cap, j);
    } else {
        return false;
    }
    m->count--;
    return true;
}

bool fg_map_next(const fg_map_t *m, size_t *it, uint64_t *key, uint64_t *val) {
    while (*it < m->cap + m->old_cap) {
        size_t i = (*it)++;
        const fg_map_slot_t *s = i < m->cap ? &m->slots[i] : &m->old[i - m->cap];
        if (s->key == 0) continue;
        *key = s->key;
        if (val) *val = s->val;
        return true;
    }
    return false;
}

static unsigned char hash_key[crypto_shorthash_KEYBYTES];
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void hash_key_init(void) {
    randombytes_buf(hash_key, sizeof hash_key);
}

uint64_t fg_hash_str(const char *s, size_t n) {
    pthread_once(&hash_once, hash_key_init);
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, (const unsigned char *)s, n, hash_key);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h ? h : 1;
}
