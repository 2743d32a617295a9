/*
 * pack.h — a compact open-addressing set of 8-byte entries for the engine's biggest indexes
 * (a million buyers' emails, a million stored answers), where a 16-byte key/value slot would
 * double the memory.
 *
 * An entry is a non-zero uint64 whose top FG_PACK_TAG_BITS bits are a hash (its tag); the rest
 * is the caller's (a row id, or more hash). The tag picks the home slot, so the table can grow
 * without knowing the key the entry came from. Several entries may share a tag: a lookup walks
 * the candidates with the tag and the caller tells which one is its own. Deletion leaves a
 * tombstone; growth and sweeps clear them. Linear probing, load at most 3/4. Single-threaded.
 *
 * Like fg_map, a large set grows (or is cleaned of tombstones) a little at a time: the full
 * table is kept as `old` beside the new one, each add moves a few of its entries over, and
 * walks look in both. An entry is in exactly one of the two tables.
 */
#ifndef FG_PACK_H
#define FG_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/check.h"

#define FG_PACK_TAG_BITS 28
#define FG_PACK_LOW_BITS (64 - FG_PACK_TAG_BITS)
#define FG_PACK_LOW_MASK ((UINT64_C(1) << FG_PACK_LOW_BITS) - 1)
#define FG_PACK_TOMB     UINT64_MAX /* never a valid entry */

typedef struct {
    uint64_t *slots;
    size_t cap;   /* power of two, at most 2^FG_PACK_TAG_BITS */
    size_t count; /* entries in both tables */
    size_t tombs; /* tombstones in slots (the old table's do not count: it is going away) */
    /* While growing: the previous table. Its slots below old_next are empty or tombstones. */
    uint64_t *old;
    size_t old_cap, old_next;
} fg_pack_t;

/* Tables at least this large are rebuilt a little at a time (2^16 slots: half a MiB). */
#define FG_PACK_STEP_MIN_CAP ((size_t)1 << 16)

static inline uint64_t fg_pack_tag(uint64_t entry) {
    return entry >> FG_PACK_LOW_BITS;
}

void fg_pack_free(fg_pack_t *p);
/* Adds an entry (non-zero, not FG_PACK_TOMB). 0, or -1 when memory runs out (unchanged). */
FG_MUST_USE int fg_pack_add(fg_pack_t *p, uint64_t entry);

/* Walks the entries with the given tag: start with *cursor = FG_PACK_START; true with *entry
 * and *cursor (its place) set, false at the end of the probe run(s). No add in between. */
#define FG_PACK_START SIZE_MAX
bool fg_pack_next(const fg_pack_t *p, uint64_t tag, size_t *cursor, uint64_t *entry);
/* Replaces the entry at a cursor from fg_pack_next with one of the same tag. */
void fg_pack_replace(fg_pack_t *p, size_t cursor, uint64_t entry);
/* Removes the entry at a cursor from fg_pack_next. */
void fg_pack_remove(fg_pack_t *p, size_t cursor);
/* True when exactly this entry is present. */
bool fg_pack_has(const fg_pack_t *p, uint64_t entry);
/* Every entry, in no particular order: for (size_t it = 0; fg_pack_scan(p, &it, &e);) ...
 * The set must not change during it. */
bool fg_pack_scan(const fg_pack_t *p, size_t *it, uint64_t *entry);
/* Removes every entry for which drop says true: a full pass, in place (tombstones). */
void fg_pack_sweep(fg_pack_t *p, bool (*drop)(uint64_t entry, void *ctx), void *ctx);

#endif
