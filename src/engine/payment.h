/*
 * payment.h — payment providers: how an order gets paid.
 *
 * A provider says what state a new order starts in. `instant` pays at once (for demos and
 * tests). `webhook` leaves the order pending_payment, its unit still held, until the provider's
 * signed callback (POST /v1/payments/webhook) says succeeded or failed, or the hold expires.
 * Adding a provider is adding a row here and, if it calls back, a verifier in the API.
 */
#ifndef FG_PAYMENT_H
#define FG_PAYMENT_H

#include <stdbool.h>

#include "engine/types.h"

typedef struct {
    const char *name;
    fg_pay_method_t method;
    fg_order_state_t initial_state; /* FG_ORDER_PAID: units sold at once */
    bool calls_back;                /* a later callback settles the order */
} fg_payment_provider_t;

/* The provider by name, or NULL. */
const fg_payment_provider_t *fg_payment_provider_named(const char *name);
/* The provider of a method (always one). */
const fg_payment_provider_t *fg_payment_provider_of(fg_pay_method_t method);
/* "instant or webhook": the names, for error messages. */
const char *fg_payment_provider_names(void);

#endif
