/*
 * check.h — assertions that stay on in every build.
 *
 * FG_ASSERT is for programmer errors and invariants (I1–I6): a false one means floodgate's own
 * state is wrong, and continuing could sell a unit twice, so it prints where and aborts.
 * Expected failures (bad input, sold out, disk full) are return values, never assertions.
 */
#ifndef FG_CHECK_H
#define FG_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FG_ASSERT(expr)                                                                            \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "floodgate: assertion failed: %s (%s:%d)\n", #expr, __FILE__,          \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* An invariant from DESIGN.md, named by its label so a failure says which promise broke. */
#define FG_INVARIANT(label, expr)                                                                  \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "floodgate: invariant %s violated: %s (%s:%d)\n", label, #expr,        \
                    __FILE__, __LINE__);                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FG_MUST_USE __attribute__((warn_unused_result))

/* Turns one check of gcc's static analyzer (scripts/analyze.sh) off from FG_ANALYZER_OFF to
 * FG_ANALYZER_ON, for a false positive the code cannot reasonably be reshaped to avoid. Wrap
 * the least code that carries the report, and say at the site why it is false. No effect with
 * other compilers, which do not know the check's name. */
#if defined(__GNUC__) && !defined(__clang__)
#define FG_PRAGMA_(text) _Pragma(#text)
#define FG_ANALYZER_OFF(check)                                                                     \
    _Pragma("GCC diagnostic push") FG_PRAGMA_(GCC diagnostic ignored check)
#define FG_ANALYZER_ON _Pragma("GCC diagnostic pop")
#else
#define FG_ANALYZER_OFF(check)
#define FG_ANALYZER_ON
#endif

#endif
