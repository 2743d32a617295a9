/*
 * ids.c — see ids.h. base64url is RFC 4648 §5 without padding.
 */
#include "crowd/ids.h"

#include <stdio.h>
#include <string.h>

#include "util/check.h"

#define SECRET_TEXT_BYTES 43 /* base64 of 32 bytes, unpadded */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c) {
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

bool fgc_id_parse(const char *s, char prefix, uint32_t *out) {
    if (s == NULL || s[0] != prefix || s[1] != '_' || s[2] < '1' || s[2] > '9') return false;
    uint64_t v = 0;
    for (const char *p = s + 2; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) return false;
    }
    *out = (uint32_t)v;
    return true;
}

bool fgc_token_parse(const char *token, uint32_t *buyer_id,
                     uint8_t secret[FGC_TOKEN_SECRET_BYTES]) {
    if (token == NULL || strncmp(token, "fgb_", 4) != 0) return false;
    const char *sep = strchr(token + 4, '_');
    if (sep == NULL || sep - token - 4 < 1 || sep - token - 4 > 10) return false;
    char idtext[16] = "b_";
    memcpy(idtext + 2, token + 4, (size_t)(sep - token - 4));
    idtext[2 + (sep - token - 4)] = '\0';
    if (!fgc_id_parse(idtext, 'b', buyer_id)) return false;
    const char *s = sep + 1;
    if (strlen(s) != SECRET_TEXT_BYTES) return false;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (const char *p = s; *p; p++) {
        int v = b64_value(*p);
        if (v < 0) return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            FG_ASSERT(n < FGC_TOKEN_SECRET_BYTES);
            secret[n++] = (uint8_t)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    return n == FGC_TOKEN_SECRET_BYTES && acc == 0; /* canonical: no stray low bits */
}

void fgc_token_format(uint32_t buyer_id, const uint8_t secret[FGC_TOKEN_SECRET_BYTES], char *out,
                      size_t cap) {
    FG_ASSERT(cap >= FGC_TOKEN_TEXT_BYTES_MAX);
    int k = snprintf(out, cap, "fgb_%u_", (unsigned)buyer_id);
    FG_ASSERT(k > 0 && (size_t)k + SECRET_TEXT_BYTES < cap);
    char *o = out + k;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < FGC_TOKEN_SECRET_BYTES; i++) {
        acc = (acc << 8) | secret[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *o++ = b64[(acc >> bits) & 63];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0) *o++ = b64[(acc << (6 - bits)) & 63];
    *o = '\0';
}
