/*
 * fuzz_fail.h — how every fuzz target reports a broken promise: a message on stderr, then
 * abort(), which libFuzzer records as a crash with the input that caused it.
 */
#ifndef FG_FUZZ_FAIL_H
#define FG_FUZZ_FAIL_H

void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
