/*
 * new/assert.h — the plain runner's take on Criterion's typed comparisons: cr_assert(eq(int, a,
 * b)), ne, lt, le, gt, ge over int, i8…i64, u8…u64, sz, ptr, str and mem. A comparison is an
 * expression that is true when it holds; when it does not, it notes both operands and their
 * values, and the failing assertion prints that note under its message.
 */
#ifndef FG_PLAIN_CRITERION_NEW_ASSERT_H
#define FG_PLAIN_CRITERION_NEW_ASSERT_H

#include <stdint.h>

#include "criterion/criterion.h"

struct cr_mem {
    const void *data;
    size_t size;
};

enum { CR_PLAIN_EQ, CR_PLAIN_NE, CR_PLAIN_LT, CR_PLAIN_LE, CR_PLAIN_GT, CR_PLAIN_GE };

/* Each compares a and b under op; on false it notes "text_a (value) op text_b (value)". */
bool cr_plain_rel_signed(int op, long long a, long long b, const char *ta, const char *tb);
bool cr_plain_rel_unsigned(int op, unsigned long long a, unsigned long long b, const char *ta,
                           const char *tb);
bool cr_plain_rel_ptr(int op, const void *a, const void *b, const char *ta, const char *tb);
bool cr_plain_rel_str(int op, const char *a, const char *b, const char *ta, const char *tb);
bool cr_plain_rel_mem(int op, struct cr_mem a, struct cr_mem b, const char *ta, const char *tb);

/* The operands are first converted to the named type, as Criterion does, then widened. */
#define CR_PLAIN_SIGNED_(C, op, a, b, ta, tb)                                                      \
    cr_plain_rel_signed(op, (long long)(C)(a), (long long)(C)(b), ta, tb)
#define CR_PLAIN_UNSIGNED_(C, op, a, b, ta, tb)                                                    \
    cr_plain_rel_unsigned(op, (unsigned long long)(C)(a), (unsigned long long)(C)(b), ta, tb)
#define CR_PLAIN_REL_int(...)              CR_PLAIN_SIGNED_(int, __VA_ARGS__)
#define CR_PLAIN_REL_i8(...)               CR_PLAIN_SIGNED_(int8_t, __VA_ARGS__)
#define CR_PLAIN_REL_i16(...)              CR_PLAIN_SIGNED_(int16_t, __VA_ARGS__)
#define CR_PLAIN_REL_i32(...)              CR_PLAIN_SIGNED_(int32_t, __VA_ARGS__)
#define CR_PLAIN_REL_i64(...)              CR_PLAIN_SIGNED_(int64_t, __VA_ARGS__)
#define CR_PLAIN_REL_u8(...)               CR_PLAIN_UNSIGNED_(uint8_t, __VA_ARGS__)
#define CR_PLAIN_REL_u16(...)              CR_PLAIN_UNSIGNED_(uint16_t, __VA_ARGS__)
#define CR_PLAIN_REL_u32(...)              CR_PLAIN_UNSIGNED_(uint32_t, __VA_ARGS__)
#define CR_PLAIN_REL_u64(...)              CR_PLAIN_UNSIGNED_(uint64_t, __VA_ARGS__)
#define CR_PLAIN_REL_sz(...)               CR_PLAIN_UNSIGNED_(size_t, __VA_ARGS__)
#define CR_PLAIN_REL_ptr(op, a, b, ta, tb) cr_plain_rel_ptr(op, (a), (b), ta, tb)
#define CR_PLAIN_REL_str(op, a, b, ta, tb) cr_plain_rel_str(op, (a), (b), ta, tb)
#define CR_PLAIN_REL_mem(op, a, b, ta, tb) cr_plain_rel_mem(op, (a), (b), ta, tb)

#define eq(T, a, b) CR_PLAIN_REL_##T(CR_PLAIN_EQ, a, b, #a, #b)
#define ne(T, a, b) CR_PLAIN_REL_##T(CR_PLAIN_NE, a, b, #a, #b)
#define lt(T, a, b) CR_PLAIN_REL_##T(CR_PLAIN_LT, a, b, #a, #b)
#define le(T, a, b) CR_PLAIN_REL_##T(CR_PLAIN_LE, a, b, #a, #b)
#define gt(T, a, b) CR_PLAIN_REL_##T(CR_PLAIN_GT, a, b, #a, #b)
#define ge(T, a, b) CR_PLAIN_REL_##T(CR_PLAIN_GE, a, b, #a, #b)

#endif
