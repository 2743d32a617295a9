/*
 * payment.c — the table of payment providers; see payment.h.
 */
#include "engine/payment.h"

#include <string.h>

#include "util/check.h"

static const fg_payment_provider_t providers[] = {
    {"instant", FG_PAY_INSTANT, FG_ORDER_PAID, false},
    {"webhook", FG_PAY_WEBHOOK, FG_ORDER_PENDING_PAYMENT, true},
};

const fg_payment_provider_t *fg_payment_provider_named(const char *name) {
    for (size_t i = 0; i < sizeof providers / sizeof providers[0]; i++)
        if (strcmp(providers[i].name, name) == 0) return &providers[i];
    return NULL;
}

const fg_payment_provider_t *fg_payment_provider_of(fg_pay_method_t method) {
    for (size_t i = 0; i < sizeof providers / sizeof providers[0]; i++)
        if (providers[i].method == method) return &providers[i];
    FG_ASSERT(!"every method has a provider");
    return NULL;
}

const char *fg_payment_provider_names(void) {
    return "instant or webhook";
}
