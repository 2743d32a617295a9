/*
 * asserts.h — assertions the unit tests share: each names the expression and both values.
 */
#ifndef FG_TEST_ASSERTS_H
#define FG_TEST_ASSERTS_H

#include <criterion/criterion.h>
#include <string.h>

#define EQ(got, want)                                                                         \
    do {                                                                                      \
        long long g_ = (long long)(got), w_ = (long long)(want);                              \
        cr_assert_eq(g_, w_, "%s: got %lld, want %lld", #got, g_, w_);                        \
    } while (0)

#define STREQ(got, want)                                                                      \
    do {                                                                                      \
        const char *g_ = (got), *w_ = (want);                                                 \
        cr_assert(g_ != NULL && strcmp(g_, w_) == 0, "%s: got \"%s\", want \"%s\"", #got,      \
                  g_ ? g_ : "(null)", w_);                                                    \
    } while (0)

#endif
