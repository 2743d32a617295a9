/*
 * criterion.h — the plain runner: the part of Criterion's API that floodgate's unit tests use,
 * for builds where Criterion itself cannot run.
 *
 * Criterion does not start under ThreadSanitizer: its runner maps an inheritable arena at an
 * address TSan keeps for its shadow memory, and aborts ("Could not initialize inheritable
 * arena") or crashes before the first test. With this directory first on the include path the
 * same test sources build against this header and tests/unit/plain/runner.c instead.
 *
 * What differs from Criterion, on purpose: tests run one after another in one process (TSan
 * sees every thread of every test), in the order they are written; there is no per-test
 * process, so a test that crashes or trips an engine assertion ends the whole run, and a
 * failing test's leaks and globals stay for the tests after it. A fatal assertion leaves the
 * test with longjmp, which is only sound on the thread that runs the test: on any other thread
 * it aborts the process, as the tests already require. Timeouts (.timeout, in seconds) end the
 * run with a message. Suite .init runs before the test's own .init, its .fini after the
 * test's own .fini; both finis run after a failed assertion too. A ThreadSanitizer report does
 * not fail the test it happens in, but makes the process exit 66 at the end, which fails the run.
 */
#ifndef FG_PLAIN_CRITERION_H
#define FG_PLAIN_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h> /* Criterion's header brings these two; tests may rely on it */
#include <string.h>

/* ---------------------------------------------------------------- registration */

struct criterion_test_params {
    size_t size;  /* bytes of one parameter */
    void *params; /* `length` parameters, `size` bytes apart; owned by the test file */
    size_t length;
    void (*cleanup)(struct criterion_test_params *);
};

struct cr_plain_test {
    const char *suite;
    const char *name;
    void (*fn)(void);                             /* a plain test */
    void (*pfn)(void *param);                     /* a parameterized test */
    struct criterion_test_params (*params)(void); /* its parameters */
    void (*init)(void);
    void (*fini)(void);
    double timeout; /* seconds; 0: the suite's, or none */
    bool disabled;
    const char *description;
    int cr_plain_sentinel_; /* ends every option list, so an empty one is valid C11 */
    struct cr_plain_test *next;
};

struct cr_plain_suite {
    const char *name;
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    bool disabled;
    const char *description;
    int cr_plain_sentinel_;
    struct cr_plain_suite *next;
};

void cr_plain_register_test(struct cr_plain_test *t);
void cr_plain_register_suite(struct cr_plain_suite *s);

#define CR_PLAIN_ID_(Suite, Name, what) cr_plain_##what##_##Suite##_##Name

#define Test(...) CR_PLAIN_TEST_(__VA_ARGS__, .cr_plain_sentinel_ = 0)
#define CR_PLAIN_TEST_(Suite, Name, ...)                                                           \
    static void CR_PLAIN_ID_(Suite, Name, fn)(void);                                               \
    static struct cr_plain_test CR_PLAIN_ID_(Suite, Name, desc) = {                                \
        .suite = #Suite, .name = #Name, .fn = CR_PLAIN_ID_(Suite, Name, fn), __VA_ARGS__};         \
    __attribute__((constructor)) static void CR_PLAIN_ID_(Suite, Name, reg)(void) {                \
        cr_plain_register_test(&CR_PLAIN_ID_(Suite, Name, desc));                                  \
    }                                                                                              \
    static void CR_PLAIN_ID_(Suite, Name, fn)(void)

#define TestSuite(...) CR_PLAIN_SUITE_(__VA_ARGS__, .cr_plain_sentinel_ = 0)
#define CR_PLAIN_SUITE_(Suite, ...)                                                                \
    static struct cr_plain_suite cr_plain_suite_##Suite = {.name = #Suite, __VA_ARGS__};           \
    __attribute__((constructor)) static void cr_plain_suite_reg_##Suite(void) {                    \
        cr_plain_register_suite(&cr_plain_suite_##Suite);                                          \
    }                                                                                              \
    struct cr_plain_suite_end_##Suite /* eats the caller's semicolon */

/* ---------------------------------------------------------------- assertions */

/* Records a failure and goes on (fatal == 0), or ends the test (fatal != 0). `text` is the
 * assertion as written; it is printed when the caller gave no message (fmt == ""). A format may
 * be followed by one spare "" argument, which the assertion macros add so that a message is
 * optional; that is why these are not declared with the printf format attribute. */
void cr_plain_expect_failed(const char *file, int line, const char *text, const char *fmt, ...);
__attribute__((noreturn)) void cr_plain_assert_failed(const char *file, int line, const char *text,
                                                      const char *fmt, ...);
/* Forgets the values the last eq()/ne()/... compared; see new/assert.h. */
void cr_plain_detail_reset(void);

#define CR_PLAIN_CHECK_(fatal, text, cond, ...)                                                    \
    do {                                                                                           \
        cr_plain_detail_reset();                                                                   \
        if (!(cond)) {                                                                             \
            if (fatal) cr_plain_assert_failed(__FILE__, __LINE__, text, __VA_ARGS__);              \
            cr_plain_expect_failed(__FILE__, __LINE__, text, __VA_ARGS__);                         \
        }                                                                                          \
    } while (0)

#define CR_PLAIN_BIN_(fatal, text, op, a, b, ...)                                                  \
    CR_PLAIN_CHECK_(fatal, text, ((a)op(b)), __VA_ARGS__)
#define CR_PLAIN_STR_(fatal, text, want_equal, a, b, ...)                                          \
    CR_PLAIN_CHECK_(fatal, text, ((strcmp((a), (b)) == 0) == (want_equal)), __VA_ARGS__)
#define CR_PLAIN_NULL_(fatal, text, want_null, p, ...)                                             \
    CR_PLAIN_CHECK_(fatal, text, (((p) == NULL) == (want_null)), __VA_ARGS__)

#define cr_assert(...) CR_PLAIN_CHECK_(1, #__VA_ARGS__, __VA_ARGS__, "")
#define cr_expect(...) CR_PLAIN_CHECK_(0, #__VA_ARGS__, __VA_ARGS__, "")

#define cr_assert_eq(...)  CR_PLAIN_BIN_(1, #__VA_ARGS__, ==, __VA_ARGS__, "")
#define cr_assert_neq(...) CR_PLAIN_BIN_(1, #__VA_ARGS__, !=, __VA_ARGS__, "")
#define cr_assert_lt(...)  CR_PLAIN_BIN_(1, #__VA_ARGS__, <, __VA_ARGS__, "")
#define cr_assert_leq(...) CR_PLAIN_BIN_(1, #__VA_ARGS__, <=, __VA_ARGS__, "")
#define cr_assert_gt(...)  CR_PLAIN_BIN_(1, #__VA_ARGS__, >, __VA_ARGS__, "")
#define cr_assert_geq(...) CR_PLAIN_BIN_(1, #__VA_ARGS__, >=, __VA_ARGS__, "")
#define cr_expect_eq(...)  CR_PLAIN_BIN_(0, #__VA_ARGS__, ==, __VA_ARGS__, "")
#define cr_expect_neq(...) CR_PLAIN_BIN_(0, #__VA_ARGS__, !=, __VA_ARGS__, "")
#define cr_expect_lt(...)  CR_PLAIN_BIN_(0, #__VA_ARGS__, <, __VA_ARGS__, "")
#define cr_expect_leq(...) CR_PLAIN_BIN_(0, #__VA_ARGS__, <=, __VA_ARGS__, "")
#define cr_expect_gt(...)  CR_PLAIN_BIN_(0, #__VA_ARGS__, >, __VA_ARGS__, "")
#define cr_expect_geq(...) CR_PLAIN_BIN_(0, #__VA_ARGS__, >=, __VA_ARGS__, "")

#define cr_assert_null(...)     CR_PLAIN_NULL_(1, #__VA_ARGS__, true, __VA_ARGS__, "")
#define cr_assert_not_null(...) CR_PLAIN_NULL_(1, #__VA_ARGS__, false, __VA_ARGS__, "")
#define cr_expect_null(...)     CR_PLAIN_NULL_(0, #__VA_ARGS__, true, __VA_ARGS__, "")
#define cr_expect_not_null(...) CR_PLAIN_NULL_(0, #__VA_ARGS__, false, __VA_ARGS__, "")

#define cr_assert_str_eq(...)  CR_PLAIN_STR_(1, #__VA_ARGS__, true, __VA_ARGS__, "")
#define cr_assert_str_neq(...) CR_PLAIN_STR_(1, #__VA_ARGS__, false, __VA_ARGS__, "")
#define cr_expect_str_eq(...)  CR_PLAIN_STR_(0, #__VA_ARGS__, true, __VA_ARGS__, "")
#define cr_expect_str_neq(...) CR_PLAIN_STR_(0, #__VA_ARGS__, false, __VA_ARGS__, "")

/* The message, when there is one, is a string literal: "" before it makes an empty call valid. */
#define cr_assert_fail(...)                                                                        \
    cr_plain_assert_failed(__FILE__, __LINE__, "cr_assert_fail()", "" __VA_ARGS__, "")
#define cr_expect_fail(...)                                                                        \
    cr_plain_expect_failed(__FILE__, __LINE__, "cr_expect_fail()", "" __VA_ARGS__, "")

/* ---------------------------------------------------------------- logging */

void cr_plain_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cr_log_info(...)  cr_plain_log("info", __VA_ARGS__)
#define cr_log_warn(...)  cr_plain_log("warn", __VA_ARGS__)
#define cr_log_error(...) cr_plain_log("error", __VA_ARGS__)

#endif
