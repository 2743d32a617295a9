/*
 * log.c — see log.h. One write(2) per line so lines from threads never interleave.
 */
#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "util/clock.h"

static atomic_bool quiet_flag;

void fg_log_set_quiet(bool quiet) {
    atomic_store(&quiet_flag, quiet);
}
bool fg_log_quiet(void) {
    return atomic_load(&quiet_flag);
}

void fg_log(const char *level, const char *fmt, ...) {
    char line[1024];
    char ts[40];
    fg_clock_format_rfc3339(fg_clock_now_ms(), ts, sizeof ts);
    int n = snprintf(line, sizeof line, "ts=%s level=%s ", ts, level);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
