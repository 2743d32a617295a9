/*
 * pack.c — see pack.h.
 */
#include "util/pack.h"

#include <stdlib.h>
#include <string.h>

#define PACK_CAP_MAX ((size_t)1 << FG_PACK_TAG_BITS)

static size_t home(const fg_pack_t *p, uint64_t tag) {
    return (size_t)tag & (p->cap - 1);
}

void fg_pack_free(fg_pack_t *p) {
    free(p->slots);
    memset(p, 0, sizeof *p);
}

/* Places an entry in slots of cap (a fresh table: no tombstones, room guaranteed). */
static void place(uint64_t *slots, size_t cap, uint64_t entry) {
    size_t j = (size_t)fg_pack_tag(entry) & (cap - 1);
    while (slots[j] != 0)
        j = (j + 1) & (cap - 1);
    slots[j] = entry;
}

/* Rebuilds into a table of cap slots, leaving out tombstones. */
static int rebuild(fg_pack_t *p, size_t cap) {
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return -1;
    size_t count = 0;
    for (size_t i = 0; i < p->cap; i++) {
        uint64_t e = p->slots[i];
        if (e == 0 || e == FG_PACK_TOMB) continue;
        place(slots, cap, e);
        count++;
    }
    free(p->slots);
    p->slots = slots;
    p->cap = cap;
    p->count = count;
    p->tombs = 0;
    return 0;
}

int fg_pack_add(fg_pack_t *p, uint64_t entry) {
    FG_ASSERT(entry != 0 && entry != FG_PACK_TOMB);
    if ((p->count + p->tombs + 1) * 4 > p->cap * 3) {
        /* Mostly tombstones: clean at the same size; otherwise double. */
        size_t cap = p->cap == 0 ? 16 : p->tombs > p->count / 2 ? p->cap : p->cap * 2;
        if (cap > PACK_CAP_MAX || rebuild(p, cap) != 0) return -1;
    }
    size_t j = home(p, fg_pack_tag(entry));
    while (p->slots[j] != 0 && p->slots[j] != FG_PACK_TOMB)
        j = (j + 1) & (p->cap - 1);
    if (p->slots[j] == FG_PACK_TOMB) p->tombs--;
    p->slots[j] = entry;
    p->count++;
    return 0;
}

bool fg_pack_next(const fg_pack_t *p, uint64_t tag, size_t *cursor, uint64_t *entry) {
    if (p->cap == 0) return false;
    size_t j = *cursor == FG_PACK_START ? home(p, tag) : ((*cursor + 1) & (p->cap - 1));
    /* At most cap steps: the load bound keeps an empty slot in every table. */
    for (size_t n = 0; n < p->cap && p->slots[j] != 0; n++, j = (j + 1) & (p->cap - 1)) {
        uint64_t e = p->slots[j];
        if (e != FG_PACK_TOMB && fg_pack_tag(e) == tag) {
            *cursor = j;
            *entry = e;
            return true;
        }
    }
    return false;
}

void fg_pack_replace(fg_pack_t *p, size_t cursor, uint64_t entry) {
    FG_ASSERT(cursor < p->cap && p->slots[cursor] != 0 && p->slots[cursor] != FG_PACK_TOMB);
    FG_ASSERT(fg_pack_tag(entry) == fg_pack_tag(p->slots[cursor]) && entry != FG_PACK_TOMB);
    p->slots[cursor] = entry;
}

void fg_pack_remove(fg_pack_t *p, size_t cursor) {
    FG_ASSERT(cursor < p->cap && p->slots[cursor] != 0 && p->slots[cursor] != FG_PACK_TOMB);
    /* The end of a probe run can simply become empty; inside one it must stay a tombstone. */
    if (p->slots[(cursor + 1) & (p->cap - 1)] == 0) {
        p->slots[cursor] = 0;
    } else {
        p->slots[cursor] = FG_PACK_TOMB;
        p->tombs++;
    }
    p->count--;
}

bool fg_pack_has(const fg_pack_t *p, uint64_t entry) {
    size_t cursor = FG_PACK_START;
    uint64_t e;
    while (fg_pack_next(p, fg_pack_tag(entry), &cursor, &e))
        if (e == entry) return true;
    return false;
}

void fg_pack_sweep(fg_pack_t *p, bool (*drop)(uint64_t entry, void *ctx), void *ctx) {
    /* In place: a fresh table would double the memory for a moment; fg_pack_add cleans the
     * tombstones when they crowd the table. */
    for (size_t i = 0; i < p->cap; i++) {
        uint64_t e = p->slots[i];
        if (e != 0 && e != FG_PACK_TOMB && drop(e, ctx)) {
            p->slots[i] = FG_PACK_TOMB;
            p->count--;
            p->tombs++;
        }
    }
}
