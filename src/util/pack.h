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
    size_t cap; /* power of two, at most 2^FG_PACK_TAG_BITS */
    size_t count, tombs;
} fg_pack_t;

static inline uint64_t fg_pack_tag(uint64_t entry) {
    return entry >> FG_PACK_LOW_BITS;
}

void fg_pack_free(fg_pack_t *p);
/* Adds an entry (non-zero, not FG_PACK_TOMB). 0, or -1 when memory runs out (unchanged). */
FG_MUST_USE int fg_pack_add(fg_pack_t *p, uint64_t entry);

/* Walks the entries with the given tag: start with *cursor = FG_PACK_START; true with *entry
 * and *cursor (its slot) set, false at the end of the probe run. */
#define FG_PACK_START SIZE_MAX
bool fg_pack_next(const fg_pack_t *p, uint64_t tag, size_t *cursor, uint64_t *entry);
/* Replaces the entry at a cursor from fg_pack_next with one of the same tag. */
void fg_pack_replace(fg_pack_t *p, size_t cursor, uint64_t entry);
/* Removes the entry at a cursor from fg_pack_next. */
void fg_pack_remove(fg_pack_t *p, size_t cursor);
/* True when exactly this entry is present. */
bool fg_pack_has(const fg_pack_t *p, uint64_t entry);
/* Removes every entry for which drop says true: a full pass, in place (tombstones). */
void fg_pack_sweep(fg_pack_t *p, bool (*drop)(uint64_t entry, void *ctx), void *ctx);

#endif
