/*
 * log.h — one line per event on stderr, logfmt style (key=value), safe from any thread.
 *
 * Secrets never reach a log line: callers pass ids, never tokens or signatures.
 */
#ifndef FG_LOG_H
#define FG_LOG_H

#include <stdbool.h>

void fg_log_set_quiet(bool quiet); /* drops per-request lines; errors still print */
bool fg_log_quiet(void);
void fg_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define FG_LOG_INFO(...)  fg_log("info", __VA_ARGS__)
#define FG_LOG_WARN(...)  fg_log("warn", __VA_ARGS__)
#define FG_LOG_ERROR(...) fg_log("error", __VA_ARGS__)

#endif
