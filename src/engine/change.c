/*
 * change.c — releasing what a change record or a product owns; see types.h.
 */
#include <stdlib.h>

#include "engine/types.h"

void fg_product_free(fg_product_t *p) {
    if (p == NULL) return;
    for (int i = 0; i < p->sku_count; i++)
        free(p->skus[i].attributes_json);
    free(p->skus);
    free(p->specs_json);
    p->skus = NULL;
    p->specs_json = NULL;
    p->sku_count = 0;
}

void fg_change_release(fg_change_t *c) {
    switch ((fg_change_kind_t)c->kind) {
    case FG_CH_SALE:
        free(c->u.sale);
        c->u.sale = NULL;
        break;
    case FG_CH_BUYER:
        free(c->u.buyer);
        c->u.buyer = NULL;
        break;
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
