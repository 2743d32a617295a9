/*
 * map.h — an open-addressing hash map from non-zero uint64 keys to uint64 values.
 *
 * Linear probing with backward-shift deletion (no tombstones), so lookups stay short after many
 * deletes. Keys are mixed before use, so sequential ids spread well. Single-threaded: the owner
 * (the engine's writer thread) is the only caller. Values are often pointers cast to uint64.
 *
 * A large map grows a little at a time: doubling a table of millions of entries in one go is a
 * pause of a hundred milliseconds on the writer thread (every entry is a cache miss in a fresh
 * table), and every buyer waiting on the writer would wait through it. So from
 * FG_MAP_STEP_MIN_CAP slots on, the full table is kept as `old` beside a new one of twice the
 * size; each put and del moves a few of its entries over, and lookups look in both. Every key
 * is in exactly one of the two tables.
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
    size_t cap;   /* power of two */
    size_t count; /* entries in both tables */
    /* While growing: the previous table. Its slots below old_next are all empty (moved). */
    fg_map_slot_t *old;
    size_t old_cap, old_next;
} fg_map_t;

/* Tables at least this large grow a little at a time (below it, all at once: a small rehash is
 * shorter than the bookkeeping). 2^15 slots of 16 bytes: a half-MiB table, a rehash well under a
 * millisecond. */
#define FG_MAP_STEP_MIN_CAP ((size_t)1 << 15)

void fg_map_init(fg_map_t *m);
void fg_map_free(fg_map_t *m);
/* Inserts or replaces. Returns 0, or -1 when memory runs out (the map is unchanged). */
FG_MUST_USE int fg_map_put(fg_map_t *m, uint64_t key, uint64_t val);
/* Returns true and sets *val when the key is present. */
bool fg_map_get(const fg_map_t *m, uint64_t key, uint64_t *val);
/* Returns true when the key was present and is now removed. */
bool fg_map_del(fg_map_t *m, uint64_t key);

/* Iteration over both tables: for (size_t it = 0; fg_map_next(m, &it, &k, &v);) ...
 * The map must not change during it (see fg_map_settle for loops that delete). */
bool fg_map_next(const fg_map_t *m, size_t *it, uint64_t *key, uint64_t *val);
/* Finishes a growth in progress, so that m->slots[0 .. m->cap) holds every entry. For the rare
 * loops that walk the slots and delete as they go. */
void fg_map_settle(fg_map_t *m);

/* A keyed 64-bit hash of a string (SipHash, random key per process), never 0. */
uint64_t fg_hash_str(const char *s, size_t n);

#endif
