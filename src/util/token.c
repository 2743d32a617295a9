/*
 * token.c — see token.h.
 */
#include "util/token.h"

#include <string.h>
#include <strings.h>

bool fg_token_list_has(const char *list, const char *token) {
    size_t tlen = strlen(token);
    const char *s = list;
    while (s != NULL && *s != '\0') {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e != '\0' && *e != ',')
            e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - s) == tlen && strncasecmp(s, token, tlen) == 0) return true;
        s = e;
    }
    return false;
}
