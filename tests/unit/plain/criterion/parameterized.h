/*
 * parameterized.h — the plain runner's parameterized tests: ParameterizedTestParameters(suite,
 * name) returns cr_make_param_array(type, array, length[, cleanup]); ParameterizedTest(type
 * *param, suite, name, options...) runs once per element, each reported as name[i].
 */
#ifndef FG_PLAIN_CRITERION_PARAMETERIZED_H
#define FG_PLAIN_CRITERION_PARAMETERIZED_H

#include "criterion/criterion.h"

#define ParameterizedTestParameters(Suite, Name)                                                   \
    static struct criterion_test_params CR_PLAIN_ID_(Suite, Name, params)(void)

#define cr_make_param_array(...) CR_PLAIN_PARAM_ARRAY_(__VA_ARGS__, NULL, 0)
#define CR_PLAIN_PARAM_ARRAY_(type, arr, len, cleanup_fn, ...)                                     \
    ((struct criterion_test_params){                                                               \
        .size = sizeof(type), .params = (arr), .length = (len), .cleanup = (cleanup_fn)})

/* The body takes the declared parameter; a wrapper of the runner's type hands it over. */
#define ParameterizedTest(...) CR_PLAIN_PTEST_(__VA_ARGS__, .cr_plain_sentinel_ = 0)
#define CR_PLAIN_PTEST_(Param, Suite, Name, ...)                                                   \
    static struct criterion_test_params CR_PLAIN_ID_(Suite, Name, params)(void);                   \
    static void CR_PLAIN_ID_(Suite, Name, fn)(Param);                                              \
    static void CR_PLAIN_ID_(Suite, Name, wrap)(void *p) {                                         \
        CR_PLAIN_ID_(Suite, Name, fn)(p);                                                          \
    }                                                                                              \
    static struct cr_plain_test CR_PLAIN_ID_(Suite, Name,                                          \
                                             desc) = {.suite = #Suite,                             \
                                                      .name = #Name,                               \
                                                      .pfn = CR_PLAIN_ID_(Suite, Name, wrap),      \
                                                      .params = CR_PLAIN_ID_(Suite, Name, params), \
                                                      __VA_ARGS__};                                \
    __attribute__((constructor)) static void CR_PLAIN_ID_(Suite, Name, reg)(void) {                \
        cr_plain_register_test(&CR_PLAIN_ID_(Suite, Name, desc));                                  \
    }                                                                                              \
    static void CR_PLAIN_ID_(Suite, Name, fn)(Param)

#endif
