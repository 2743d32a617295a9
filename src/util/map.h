/*
 * map.h — an open-addressing hash map from non-zero uint64 keys to uint64 values.
 *
 * Linear probing with backward-shift deletion (no tombstones), so lookups stay short after many
 * deletes. Keys are mixed before use, so sequential ids spread well. Single-threaded: the owner
 * (the engine's writer thread) is the only caller. Values are often pointers cast to uint64.
 */
#ifndef FG_MAP_H
#define FG_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/check.h"

typedef struct {
    uint64_t key; /* 0 = empty */
    uint64_t val;
} fg_map_slot_t;

typedef struct {
    fg_map_slot_t *slots;
    size_t cap; /* power of two */
    size_t count;
} fg_map_t;

void fg_map_init(fg_map_t *m);
void fg_map_free(fg_map_t *m);
/* Inserts or replaces. Returns 0, or -1 when memory runs out (the map is unchanged). */
FG_MUST_USE int fg_map_put(fg_map_t *m, uint64_t key, uint64_t val);
/* Returns true and sets *val when the key is present. */
bool fg_map_get(const fg_map_t *m, uint64_t key, uint64_t *val);
/* Returns true when the key was present and is now removed. */
bool fg_map_del(fg_map_t *m, uint64_t key);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

/* A keyed 64-bit hash of a string (SipHash, random key per process), never 0. */
uint64_t fg_hash_str(const char *s, size_t n);

#endif
