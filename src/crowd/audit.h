/*
 * audit.h — checks what the crowd was told (its record) against the server's own record of the
 * sale: the order export (GET /admin/v1/sales/{id}/orders?format=ndjson), the stats, and each
 * acknowledged hold without an acknowledged order (GET /v1/holds/{id} with its buyer's token).
 *
 * Checks, each violation printed on its own line as "audit: violation: ...":
 *  - every order acknowledged with 201 is in the export with the same id, hold, buyer, SKU,
 *    market and quantity, and is paid; no order id twice;
 *  - orders in the export the crowd was never told about are at most the requests whose
 *    answer never came (the server may have done those);
 *  - nothing sold past stock: paid units <= stock, and stats sold + held + available == stock,
 *    and stats sold == paid units in the export, and the export has stats' orders_total rows;
 *  - no buyer holds more than the limit in orders that are not cancelled;
 *  - no order ships to the market where the SKU is blocked, or to a country other than its
 *    market;
 *  - every other hold acknowledged with 201 and not covered by an acknowledged order exists
 *    (I3): expired, or ordered by an order whose answer was lost;
 *  - after every hold's TTL (plus a margin), each abandoned hold is expired, nothing is still
 *    held, and available == stock - sold - held: the units came back;
 *  - contract breaks the crowd saw live (a 201 where a refusal was due, a replay that differs).
 */
#ifndef FGC_AUDIT_H
#define FGC_AUDIT_H

#include <stdio.h>

#include "crowd/loop.h"
#include "crowd/record.h"

#define FGC_AUDIT_OK         0
#define FGC_AUDIT_VIOLATION  1
#define FGC_AUDIT_IMPOSSIBLE 3

/* Runs every check, printing progress and results to `out`, and ends with "audit: ok" or
 * "audit: N violations". Waits first until rec->holds_end_ms plus FGC_EXPIRY_MARGIN_MS.
 * A read the server answers with no answer, a 5xx or a 429 is tried again, up to `retries`
 * times (--retries), after its Retry-After or a backoff. The loop must be idle. Returns
 * FGC_AUDIT_OK, FGC_AUDIT_VIOLATION, or FGC_AUDIT_IMPOSSIBLE when the server's record could not
 * be read (the reason is printed). */
int fgc_audit_run(fgc_loop_t *l, const char *admin_token, int retries, fgc_record_t *rec,
                  FILE *out);

#endif
