/*
 * change.c — releasing what a change record owns; see types.h.
 */
#include <stdlib.h>

#include "engine/types.h"

void fg_change_release(fg_change_t *c) {
    switch ((fg_change_kind_t)c->kind) {
    case FG_CH_SALE: free(c->u.sale); c->u.sale = NULL; break;
    case FG_CH_BUYER: free(c->u.buyer); c->u.buyer = NULL; break;
    case FG_CH_MARKET:
    case FG_CH_PRODUCT:
    case FG_CH_OFFER:
    case FG_CH_HOLD:
    case FG_CH_ORDER:
    case FG_CH_IDEM:
    case FG_CH_WEBHOOK:
    case FG_CH_PRUNE: break;
    }
}
