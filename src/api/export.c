/*
 * export.c — a sale's orders as NDJSON or CSV, streamed from the ledger.
 *
 * Reads on its own read-only connection (fg_ledger_export_*), so an export of a large sale
 * neither blocks the writer nor holds its orders in memory: rows are formatted one at a time
 * into a small buffer that the HTTP layer drains.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "engine/payment.h"
#include "ledger/ledger.h"
#include "util/clock.h"

typedef struct {
    fg_api_stream_t base;
    fg_ledger_export_t *x;
    bool csv;
    bool header_done;
    bool ended;
    fg_buf_t pending;
    size_t off;
} export_t;

static const char csv_header[] =
    "order_id,hold_id,buyer_id,email,sale_id,sku,market,quantity,state,payment_method,"
    "total_minor,currency,created_at,updated_at,ship_name,ship_line1,ship_line2,ship_city,"
    "ship_postal_code,ship_country\r\n";

static void csv_row(fg_buf_t *b, const fg_export_row_t *r) {
    static const char *const states[] = {"pending_payment", "paid", "cancelled"};
    static const char *const ship_keys[] = {"name", "line1",       "line2",
                                            "city", "postal_code", "country"};
    const fg_order_row_t *o = &r->order;
    char market[3], t1[40], t2[40];
    fg_mcode_str(o->market, market);
    fg_clock_format_rfc3339(o->created_at_ms, t1, sizeof t1);
    fg_clock_format_rfc3339(o->updated_at_ms, t2, sizeof t2);
    fg_buf_printf(b, "o_%llu,h_%llu,b_%llu,", (unsigned long long)o->id,
                  (unsigned long long)o->hold_id, (unsigned long long)o->buyer_id);
    fg_buf_csv_field(b, r->email);
    fg_buf_str(b, ",");
    fg_buf_csv_field(b, o->sale_id);
    fg_buf_str(b, ",");
    fg_buf_csv_field(b, o->sku);
    fg_buf_printf(b, ",%s,%d,%s,%s,%lld,%s,%s,%s", market, o->quantity,
                  states[o->state < 3 ? o->state : 2],
                  fg_payment_provider_of((fg_pay_method_t)o->method)->name,
                  (long long)o->total_minor, o->currency, t1, t2);
    json_t *ship = json_loads(o->shipping_json ? o->shipping_json : "{}", 0, NULL);
    for (size_t i = 0; i < sizeof ship_keys / sizeof ship_keys[0]; i++) {
        const char *v = json_string_value(json_object_get(ship, ship_keys[i]));
        fg_buf_str(b, ",");
        fg_buf_csv_field(b, v ? v : "");
    }
    json_decref(ship);
    fg_buf_str(b, "\r\n");
}

static ssize_t export_read(fg_api_stream_t *base, char *buf, size_t max, fg_stream_park_fn park,
                           fg_stream_park_fn unpark, void *ctx) {
    export_t *x = (export_t *)base;
    while (x->pending.len == x->off) {
        fg_buf_reset(&x->pending);
        x->off = 0;
        if (x->ended) return -1;
        if (x->csv && !x->header_done) {
            fg_buf_str(&x->pending, csv_header);
            x->header_done = true;
            continue;
        }
        fg_export_row_t row;
        int rc = fg_ledger_export_next(x->x, &row);
        if (rc <= 0) {
            x->ended = true; /* an error mid-stream ends it: the client sees a short body */
            continue;
        }
        if (x->csv) {
            csv_row(&x->pending, &row);
        } else {
            fg__render_order(&x->pending, &row.order, true, row.email);
            fg_buf_str(&x->pending, "\n");
        }
    }
    size_t left = x->pending.len - x->off;
    size_t n = left < max ? left : max;
    memcpy(buf, x->pending.data + x->off, n);
    x->off += n;
    return (ssize_t)n;
}

static void export_free(fg_api_stream_t *base) {
    export_t *x = (export_t *)base;
    fg_ledger_export_close(x->x);
    fg_buf_free(&x->pending);
    free(x);
}

fg_api_stream_t *fg_export_open(const char *data_dir, const char *sale_id, bool csv,
                                bool *no_such_sale) {
    *no_such_sale = false;
    export_t *x = calloc(1, sizeof *x);
    if (x == NULL) return NULL;
    int rc = fg_ledger_export_open(data_dir, sale_id, &x->x);
    if (rc != 0) {
        *no_such_sale = rc == -2;
        free(x);
        return NULL;
    }
    x->base.read = export_read;
    x->base.free = export_free;
    x->csv = csv;
    fg_buf_init(&x->pending, 1 << 20);
    return &x->base;
}
