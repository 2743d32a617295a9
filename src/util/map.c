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

void fg_map_init(fg_map_t *m) {
    memset(m, 0, sizeof *m);
}

void fg_map_free(fg_map_t *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int grow(fg_map_t *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    fg_map_slot_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == 0) continue;
        size_t j = mix(m->slots[i].key) & (cap - 1);
        while (slots[j].key != 0)
            j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int fg_map_put(fg_map_t *m, uint64_t key, uint64_t val) {
    FG_ASSERT(key != 0);
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m) != 0) return -1;
    size_t j = mix(key) & (m->cap - 1);
    while (m->slots[j].key != 0) {
        if (m->slots[j].key == key) {
            m->slots[j].val = val;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j].key = key;
    m->slots[j].val = val;
    m->count++;
    return 0;
}

bool fg_map_get(const fg_map_t *m, uint64_t key, uint64_t *val) {
    if (m->cap == 0 || key == 0) return false;
    size_t j = mix(key) & (m->cap - 1);
    while (m->slots[j].key != 0) {
        if (m->slots[j].key == key) {
            if (val) *val = m->slots[j].val;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

bool fg_map_del(fg_map_t *m, uint64_t key) {
    if (m->cap == 0 || key == 0) return false;
    size_t mask = m->cap - 1;
    size_t j = mix(key) & mask;
    while (m->slots[j].key != key) {
        if (m->slots[j].key == 0) return false;
        j = (j + 1) & mask;
    }
    /* Backward-shift: pull later entries of the probe run into the hole. */
    size_t hole = j;
    for (size_t k = (j + 1) & mask; m->slots[k].key != 0; k = (k + 1) & mask) {
        size_t home = mix(m->slots[k].key) & mask;
        bool between = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (between) continue;
        m->slots[hole] = m->slots[k];
        hole = k;
    }
    m->slots[hole].key = 0;
    m->slots[hole].val = 0;
    m->count--;
    return true;
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
