/*
 * fuzz_fail.c — see fuzz_fail.h.
 */
#include "fuzz_fail.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void fz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("floodgate fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}
