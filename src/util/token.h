/*
 * token.h — comma-separated header lists (RFC 9110 5.6.1), as in Connection and
 * Transfer-Encoding: "keep-alive, Upgrade".
 */
#ifndef FG_TOKEN_H
#define FG_TOKEN_H

#include <stdbool.h>

/* True when the list has `token` as one of its members (case-insensitive; spaces and tabs
 * around members and empty members are skipped). A NULL list has none. */
bool fg_token_list_has(const char *list, const char *token);

#endif
