/*
 * record.c — the crowd's record and its file form; see record.h.
 */
#include "crowd/record.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crowd/ids.h"

#define RECORD_LINE_BYTES_MAX 512
#define RECORD_HEADER         "floodgate-crowd record 1"

void fgc_record_init(fgc_record_t *r) {
    memset(r, 0, sizeof *r);
}

void fgc_record_free(fgc_record_t *r) {
    free(r->orders);
    free(r->abandoned);
    free(r->unordered);
    for (size_t i = 0; i < r->observed_count; i++)
        free(r->observed[i]);
    free(r->observed);
    memset(r, 0, sizeof *r);
}

/* Grows an array of `size`-byte items to hold one more; false when memory runs out. */
static bool grow(void **items, size_t *cap, size_t count, size_t size) {
    if (count < *cap) return true;
    size_t n = *cap ? *cap * 2 : 1024;
    void *p = realloc(*items, n * size);
    if (p == NULL) return false;
    *items = p;
    *cap = n;
    return true;
}

int fgc_record_order(fgc_record_t *r, const fgc_told_order_t *o) {
    if (!grow((void **)&r->orders, &r->order_cap, r->order_count, sizeof *o)) return -1;
    r->orders[r->order_count++] = *o;
    return 0;
}

int fgc_record_abandoned(fgc_record_t *r, const fgc_told_hold_t *h) {
    if (!grow((void **)&r->abandoned, &r->abandoned_cap, r->abandoned_count, sizeof *h)) return -1;
    r->abandoned[r->abandoned_count++] = *h;
    return 0;
}

int fgc_record_unordered(fgc_record_t *r, const fgc_told_hold_t *h) {
    if (!grow((void **)&r->unordered, &r->unordered_cap, r->unordered_count, sizeof *h)) return -1;
    r->unordered[r->unordered_count++] = *h;
    return 0;
}

void fgc_record_observe(fgc_record_t *r, const char *fmt, ...) {
    r->observed_total++;
    if (r->observed_count >= FGC_VIOLATIONS_KEPT_MAX) return;
    if (r->observed == NULL) {
        r->observed = calloc(FGC_VIOLATIONS_KEPT_MAX, sizeof *r->observed);
        if (r->observed == NULL) return;
    }
    char *text = malloc(FGC_VIOLATION_BYTES_MAX);
    if (text == NULL) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, FGC_VIOLATION_BYTES_MAX, fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' '; /* one line each, in the file too */
    r->observed[r->observed_count++] = text;
}

static void write_holds(FILE *f, const char *kind, const fgc_told_hold_t *h, size_t n) {
    char token[FGC_TOKEN_TEXT_BYTES_MAX];
    for (size_t i = 0; i < n; i++) {
        fgc_token_format(h[i].buyer_id, h[i].secret, token, sizeof token);
        fprintf(f, "%s h_%u %s\n", kind, (unsigned)h[i].hold_id, token);
    }
}

int fgc_record_write(const fgc_record_t *r, const char *path, char *err, size_t cap) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        snprintf(err, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%s\nsale %s sku %s stock %lld limit %d blocked %s holds_end_ms %lld unknown %llu\n",
            RECORD_HEADER, r->sale_id, r->sku, (long long)r->stock, r->limit, r->blocked,
            (long long)r->holds_end_ms, (unsigned long long)r->unknown);
    for (size_t i = 0; i < r->order_count; i++) {
        const fgc_told_order_t *o = &r->orders[i];
        fprintf(f, "order o_%u h_%u b_%u %s %u\n", (unsigned)o->order_id, (unsigned)o->hold_id,
                (unsigned)o->buyer_id, o->market, (unsigned)o->quantity);
    }
    write_holds(f, "abandoned", r->abandoned, r->abandoned_count);
    write_holds(f, "unordered", r->unordered, r->unordered_count);
    for (size_t i = 0; i < r->observed_count; i++)
        fprintf(f, "observed %s\n", r->observed[i]);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        snprintf(err, cap, "%s: write failed", path);
        return -1;
    }
    return 0;
}

static int parse_sale(fgc_record_t *r, const char *line) {
    long long stock, end;
    unsigned long long unknown;
    int limit, used = 0;
    if (sscanf(line,
               "sale %64s sku %64s stock %lld limit %d blocked %2s holds_end_ms %lld "
               "unknown %llu%n",
               r->sale_id, r->sku, &stock, &limit, r->blocked, &end, &unknown, &used) != 7 ||
        line[used] != '\0')
        return -1;
    r->stock = stock;
    r->limit = limit;
    r->holds_end_ms = end;
    r->unknown = unknown;
    return 0;
}

static int parse_order(fgc_record_t *r, const char *line) {
    char oid[24], hid[24], bid[24], market[3];
    unsigned q;
    int used = 0;
    fgc_told_order_t o = {0};
    if (sscanf(line, "order %23s %23s %23s %2s %u%n", oid, hid, bid, market, &q, &used) != 5 ||
        line[used] != '\0' || !fgc_id_parse(oid, 'o', &o.order_id) ||
        !fgc_id_parse(hid, 'h', &o.hold_id) || !fgc_id_parse(bid, 'b', &o.buyer_id) || q < 1 ||
        q > FGC_LIMIT_PER_BUYER_MAX)
        return -1;
    o.quantity = (uint16_t)q;
    memcpy(o.market, market, sizeof o.market);
    return fgc_record_order(r, &o);
}

/* "abandoned h_N TOKEN" or "unordered h_N TOKEN": `line` after the word and its space. */
static int parse_hold(const char *line, fgc_told_hold_t *h) {
    char hid[24], token[FGC_TOKEN_TEXT_BYTES_MAX];
    int used = 0;
    memset(h, 0, sizeof *h);
    if (sscanf(line, "%23s %95s%n", hid, token, &used) != 2 || line[used] != '\0' ||
        !fgc_id_parse(hid, 'h', &h->hold_id) || !fgc_token_parse(token, &h->buyer_id, h->secret))
        return -1;
    return 0;
}

static int parse_line(fgc_record_t *r, const char *line, bool *have_sale) {
    if (strncmp(line, "sale ", 5) == 0) {
        *have_sale = true;
        return parse_sale(r, line);
    }
    if (strncmp(line, "order ", 6) == 0) return parse_order(r, line);
    fgc_told_hold_t h;
    if (strncmp(line, "abandoned ", 10) == 0)
        return parse_hold(line + 10, &h) == 0 ? fgc_record_abandoned(r, &h) : -1;
    if (strncmp(line, "unordered ", 10) == 0)
        return parse_hold(line + 10, &h) == 0 ? fgc_record_unordered(r, &h) : -1;
    if (strncmp(line, "observed ", 9) == 0) {
        fgc_record_observe(r, "%s", line + 9);
        return 0;
    }
    return line[0] == '\0' || line[0] == '#' ? 0 : -1;
}

int fgc_record_read(fgc_record_t *r, const char *path, char *err, size_t cap) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[RECORD_LINE_BYTES_MAX];
    bool have_sale = false;
    int rc = 0;
    for (long n = 1; rc == 0 && fgets(line, sizeof line, f) != NULL; n++) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf(err, cap, "%s:%ld: line too long", path, n);
            rc = -1;
            break;
        }
        if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
        bool header = n == 1;
        if ((header && strcmp(line, RECORD_HEADER) != 0) ||
            (!header && parse_line(r, line, &have_sale) != 0)) {
            snprintf(err, cap, "%s:%ld: not a floodgate-crowd record line: %.80s", path, n, line);
            rc = -1;
        }
    }
    if (rc == 0 && !have_sale) {
        snprintf(err, cap, "%s: no sale line", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}
