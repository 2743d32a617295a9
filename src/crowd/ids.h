/*
 * ids.h — floodgate's object ids and buyer tokens in the compact forms the crowd keeps.
 *
 * Buyer, hold and order ids are "b_12", "h_345", "o_67": the crowd keeps the number only. A
 * buyer token is "fgb_<id>_<secret>" with a secret of 32 bytes in base64url (43 characters,
 * no padding): the crowd keeps the 32 bytes and rebuilds the text for each request, so a
 * million buyers cost 32 bytes of token each instead of a 60-byte string and a pointer.
 */
#ifndef FGC_IDS_H
#define FGC_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crowd/limits.h"

/* "<prefix>_<decimal>" with a value 1..UINT32_MAX. False on anything else. */
bool fgc_id_parse(const char *s, char prefix, uint32_t *out);

/* Splits a token into its buyer id and secret. False when it is not in the documented form. */
bool fgc_token_parse(const char *token, uint32_t *buyer_id, uint8_t secret[FGC_TOKEN_SECRET_BYTES]);

/* Writes the token's text into out (cap at least FGC_TOKEN_TEXT_BYTES_MAX). */
void fgc_token_format(uint32_t buyer_id, const uint8_t secret[FGC_TOKEN_SECRET_BYTES], char *out,
                      size_t cap);

#endif
