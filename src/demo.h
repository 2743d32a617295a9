/*
 * demo.h — the demo catalog: a phone launch in eight markets, blocked in the US.
 */
#ifndef FG_DEMO_H
#define FG_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "ledger/ledger.h"

#define FG_DEMO_SALE_ID     "nova-launch"
#define FG_DEMO_OPENS_IN_MS 60000

/* Writes the demo catalog and a sale opening FG_DEMO_OPENS_IN_MS after now, once per ledger
 * (meta key demo_seeded). 0, or -1 with a message. */
int fg_demo_seed(fg_ledger_t *l, int64_t now_ms, char *err, size_t errlen);

#endif
