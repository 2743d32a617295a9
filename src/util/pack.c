/*
 * pack.c — see pack.h.
 */
#include "util/pack.h"

#include <stdlib.h>
#include <string.h>

#define PACK_CAP_MAX ((size_t)1 << FG_PACK_TAG_BITS)

/* Old slots looked at per add while a large set is rebuilt: the rebuild starts at 3/4 load and
 * the next one is due after at least 1/4 of the table in adds (a same-size clean starts with
 * under half of it live); at 32 slots an add the old table is done after 1/32 of it. */
#define STEP_SLOTS 32

void fg_pack_free(fg_pack_t *p) {
    free(p->slots);
    free(p->old);
    memset(p, 0, sizeof *p);
}

/* Places an entry in slots of cap (room guaranteed; a tombstone is not reused: callers that
 * count tombstones use fg_pack_add's own loop). */
static void place(uint64_t *slots, size_t cap, uint64_t entry) {
    size_t j = (size_t)fg_pack_tag(entry) & (cap - 1);
    while (slots[j] != 0)
        j = (j + 1) & (cap - 1);
    slots[j] = entry;
}

static bool live(uint64_t e) {
    return e != 0 && e != FG_PACK_TOMB;
}

/* Moves up to budget old slots' entries into the new table. A moved entry leaves a tombstone,
 * so the old table's later probe runs stay whole for walks until it is freed. */
static void step(fg_pack_t *p, size_t budget) {
    if (p->old == NULL) return;
    for (; budget > 0 && p->old_next < p->old_cap; budget--, p->old_next++) {
        uint64_t e = p->old[p->old_next];
        if (!live(e)) continue;
        place(p->slots, p->cap, e);
        p->old[p->old_next] = FG_PACK_TOMB;
    }
    if (p->old_next == p->old_cap) {
        free(p->old);
        p->old = NULL;
        p->old_cap = p->old_next = 0;
    }
}

/* Starts a rebuild into a table of cap slots, leaving out tombstones: all at once for a small
 * table, else a little at a time (step). */
static int rebuild(fg_pack_t *p, size_t cap) {
    step(p, SIZE_MAX); /* not reached in practice: STEP_SLOTS ends a rebuild first */
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return -1;
    if (p->cap < FG_PACK_STEP_MIN_CAP) {
        for (size_t i = 0; i < p->cap; i++)
            if (live(p->slots[i])) place(slots, cap, p->slots[i]);
        free(p->slots);
    } else {
        p->old = p->slots;
        p->old_cap = p->cap;
        p->old_next = 0;
    }
    p->slots = slots;
    p->cap = cap;
    p->tombs = 0;
    return 0;
}

int fg_pack_add(fg_pack_t *p, uint64_t entry) {
    FG_ASSERT(entry != 0 && entry != FG_PACK_TOMB);
    step(p, STEP_SLOTS);
    if ((p->count + p->tombs + 1) * 4 > p->cap * 3) {
        /* Mostly tombstones: clean at the same size; otherwise double. */
        size_t cap = p->cap == 0 ? 16 : p->tombs > p->count / 2 ? p->cap : p->cap * 2;
        if (cap > PACK_CAP_MAX || rebuild(p, cap) != 0) return -1;
    }
    size_t j = (size_t)fg_pack_tag(entry) & (p->cap - 1);
    while (live(p->slots[j]))
        j = (j + 1) & (p->cap - 1);
    if (p->slots[j] == FG_PACK_TOMB) p->tombs--;
    p->slots[j] = entry;
    p->count++;
    return 0;
}

/* The slot a cursor names: [0, cap) in the new table, [cap, cap + old_cap) in the old one. */
static uint64_t *at(const fg_pack_t *p, size_t cursor) {
    FG_ASSERT(cursor < p->cap + p->old_cap);
    return cursor < p->cap ? &p->slots[cursor] : &p->old[cursor - p->cap];
}

/* Walks one table's probe run for tag from slot j; true at the next entry with the tag. */
static bool walk(const uint64_t *slots, size_t cap, uint64_t tag, size_t *j, uint64_t *entry) {
    /* At most cap steps: the load bound keeps an empty slot in every table. */
    for (size_t n = 0; n < cap && slots[*j] != 0; n++, *j = (*j + 1) & (cap - 1)) {
        uint64_t e = slots[*j];
        if (e != FG_PACK_TOMB && fg_pack_tag(e) == tag) {
            *entry = e;
            return true;
        }
    }
    return false;
}

bool fg_pack_next(const fg_pack_t *p, uint64_t tag, size_t *cursor, uint64_t *entry) {
    size_t j;
    if (*cursor == FG_PACK_START || *cursor < p->cap) {
        if (p->cap == 0) return false;
        j = *cursor == FG_PACK_START ? (size_t)tag & (p->cap - 1) : (*cursor + 1) & (p->cap - 1);
        if (walk(p->slots, p->cap, tag, &j, entry)) {
            *cursor = j;
            return true;
        }
        if (p->old == NULL) return false;
        j = (size_t)tag & (p->old_cap - 1); /* the new table's run is done: the old one's */
    } else {
        j = (*cursor - p->cap + 1) & (p->old_cap - 1);
    }
    if (!walk(p->old, p->old_cap, tag, &j, entry)) return false;
    *cursor = p->cap + j;
    return true;
}

void fg_pack_replace(fg_pack_t *p, size_t cursor, uint64_t entry) {
    uint64_t *s = at(p, cursor);
    FG_ASSERT(live(*s) && fg_pack_tag(entry) == fg_pack_tag(*s) && entry != FG_PACK_TOMB);
    *s = entry;
}

void fg_pack_remove(fg_pack_t *p, size_t cursor) {
    uint64_t *s = at(p, cursor);
    FG_ASSERT(live(*s));
    p->count--;
    if (cursor >= p->cap) { /* the old table is going away: a tombstone, not counted */
        *s = FG_PACK_TOMB;
        return;
    }
    /* The end of a probe run can simply become empty; inside one it must stay a tombstone. */
    if (p->slots[(cursor + 1) & (p->cap - 1)] == 0) {
        *s = 0;
    } else {
        *s = FG_PACK_TOMB;
        p->tombs++;
    }
}

bool fg_pack_has(const fg_pack_t *p, uint64_t entry) {
    size_t cursor = FG_PACK_START;
    uint64_t e;
    while (fg_pack_next(p, fg_pack_tag(entry), &cursor, &e))
        if (e == entry) return true;
    return false;
}

bool fg_pack_scan(const fg_pack_t *p, size_t *it, uint64_t *entry) {
    while (*it < p->cap + p->old_cap) {
        uint64_t e = *at(p, (*it)++);
        if (!live(e)) continue;
        *entry = e;
        return true;
    }
    return false;
}

void fg_pack_sweep(fg_pack_t *p, bool (*drop)(uint64_t entry, void *ctx), void *ctx) {
    /* In place: a fresh table would double the memory for a moment; fg_pack_add cleans the
     * tombstones when they crowd the table. */
    for (size_t i = 0; i < p->cap + p->old_cap; i++) {
        uint64_t *s = at(p, i);
        if (live(*s) && drop(*s, ctx)) {
            *s = FG_PACK_TOMB;
            p->count--;
            if (i < p->cap) p->tombs++;
        }
    }
}
