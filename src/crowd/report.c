/*
 * report.c — tallies, progress, the timeline and number formatting; see report.h.
 */
#include "crowd/report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/check.h"

static const char *const step_names[FGC_STEP_COUNT] = {"register", "hold",  "order",
                                                       "replay",   "extra", "check"};

const char *fgc_step_name(fgc_step_t s) {
    FG_ASSERT(s < FGC_STEP_COUNT);
    return step_names[s];
}

void fgc_tally_init(fgc_tally_t *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < FGC_STEP_COUNT; i++)
        fgc_latency_init(&t->latency[i]);
}

void fgc_tally_add(fgc_tally_t *t, fgc_step_t step, int status, const char *code,
                   int64_t latency_ns) {
    FG_ASSERT(step < FGC_STEP_COUNT);
    fgc_latency_add(&t->latency[step], latency_ns / 1000);
    if (t->timeline.f != NULL && step == FGC_STEP_HOLD)
        fgc_latency_add(&t->timeline.hold, latency_ns / 1000);
    for (size_t i = 0; i < t->row_count; i++) {
        fgc_tally_row_t *r = &t->rows[i];
        if (r->step == step && r->status == status && strcmp(r->code, code) == 0) {
            r->count++;
            return;
        }
    }
    if (t->row_count == FGC_TALLY_ROWS_MAX) {
        t->rows_dropped++;
        return;
    }
    fgc_tally_row_t *r = &t->rows[t->row_count++];
    r->step = (uint8_t)step;
    r->status = status;
    snprintf(r->code, sizeof r->code, "%s", code);
    r->count = 1;
}

static int row_cmp(const void *a, const void *b) {
    const fgc_tally_row_t *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    if (x->status != y->status) return x->status < y->status ? -1 : 1;
    return strcmp(x->code, y->code);
}

static void ms(char *out, size_t cap, int64_t us) {
    snprintf(out, cap, "%.2f", (double)us / 1000);
}

static void latency_print(const fgc_tally_t *t, FILE *out) {
    static const double qs[] = {0.50, 0.90, 0.99, 0.999};
    fprintf(out, "latency (ms)        count       p50       p90       p99     p99.9       max\n");
    for (int s = 0; s < FGC_STEP_COUNT; s++) {
        const fgc_latency_t *h = &t->latency[s];
        if (h->total == 0 && s > FGC_STEP_ORDER) continue; /* the three main steps always */
        char n[32], v[5][24];
        for (int k = 0; k < 4; k++)
            ms(v[k], sizeof v[k], fgc_latency_quantile(h, qs[k]));
        ms(v[4], sizeof v[4], h->max_us);
        fprintf(out, "  %-10s %12s %9s %9s %9s %9s %9s\n", step_names[s],
                fgc_fmt_count(h->total, n), v[0], v[1], v[2], v[3], v[4]);
    }
}

void fgc_tally_print(const fgc_tally_t *t, FILE *out) {
    latency_print(t, out);
    fgc_tally_row_t rows[FGC_TALLY_ROWS_MAX];
    memcpy(rows, t->rows, t->row_count * sizeof rows[0]);
    qsort(rows, t->row_count, sizeof rows[0], row_cmp);
    fprintf(out, "answers (step, status, code)\n");
    for (size_t i = 0; i < t->row_count; i++) {
        char n[32], label[96];
        if (rows[i].status == 0)
            snprintf(label, sizeof label, "%s no answer (%s)", step_names[rows[i].step],
                     rows[i].code);
        else
            snprintf(label, sizeof label, "%s %d%s%s", step_names[rows[i].step], rows[i].status,
                     rows[i].code[0] ? " " : "", rows[i].code);
        fprintf(out, "  %-48s %12s\n", label, fgc_fmt_count(rows[i].count, n));
    }
    if (t->rows_dropped > 0)
        fprintf(out, "  (%llu answers of further kinds not itemised)\n",
                (unsigned long long)t->rows_dropped);
}

int fgc_timeline_open(fgc_timeline_t *t, const char *path, char *err, size_t cap) {
    FG_ASSERT(t->f == NULL);
    t->f = fopen(path, "w");
    if (t->f == NULL) {
        snprintf(err, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    t->path = path;
    t->last_ns = 0;
    t->last_holds = 0;
    t->rows = 0;
    fgc_latency_init(&t->hold);
    fprintf(t->f, "# elapsed_s units_held units_sold holds_per_s hold_p50_ms hold_p99_ms "
                  "hold_answers\n");
    return 0;
}

void fgc_timeline_tick(fgc_timeline_t *t, int64_t open_ns, int64_t now_ns, uint64_t holds_ok,
                       uint64_t units_held, uint64_t units_sold, bool force) {
    if (t->f == NULL || now_ns < open_ns) return;
    int64_t since = t->last_ns > open_ns ? t->last_ns : open_ns;
    int64_t dt_ns = now_ns - since;
    if (!force && dt_ns < (int64_t)FGC_TIMELINE_MS * 1000000) return;
    /* The rate is over the interval actually covered: loop steps do not land on the grid. */
    double rate = dt_ns > 0 ? (double)(holds_ok - t->last_holds) * 1e9 / (double)dt_ns : 0;
    fprintf(t->f, "%.3f %llu %llu %.0f %.3f %.3f %llu\n", (double)(now_ns - open_ns) / 1e9,
            (unsigned long long)units_held, (unsigned long long)units_sold, rate,
            (double)fgc_latency_quantile(&t->hold, 0.50) / 1000,
            (double)fgc_latency_quantile(&t->hold, 0.99) / 1000, (unsigned long long)t->hold.total);
    t->rows++;
    t->last_ns = now_ns;
    t->last_holds = holds_ok;
    fgc_latency_init(&t->hold);
}

int fgc_timeline_close(fgc_timeline_t *t) {
    if (t->f == NULL) return 0;
    bool failed = ferror(t->f) != 0;
    failed |= fclose(t->f) != 0;
    t->f = NULL;
    if (!failed) return 0;
    fprintf(stderr, "floodgate-crowd: --timeline %s: a write failed\n", t->path);
    return -1;
}

void fgc_progress_init(fgc_progress_t *p) {
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO) == 1;
    p->period_ns = (int64_t)(p->tty ? FGC_PROGRESS_TTY_MS : FGC_PROGRESS_LOG_MS) * 1000000;
}

bool fgc_progress_due(fgc_progress_t *p, int64_t now_ns) {
    if (now_ns < p->next_ns) return false;
    p->next_ns = now_ns + p->period_ns;
    return true;
}

void fgc_progress_show(fgc_progress_t *p, const char *line) {
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s", line);
        p->drawn = true;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void fgc_progress_end(fgc_progress_t *p) {
    if (p->drawn) fputc('\n', stderr);
    p->drawn = false;
    p->next_ns = 0;
}

void fgc_progress_bar(char *out, size_t cap, uint64_t done, uint64_t total, int width) {
    FG_ASSERT(width > 0 && cap >= (size_t)width + 3);
    int full = total == 0 ? width : (int)((done >= total ? total : done) * (uint64_t)width / total);
    out[0] = '[';
    for (int i = 0; i < width; i++)
        out[1 + i] = i < full ? '#' : '.';
    out[width + 1] = ']';
    out[width + 2] = '\0';
}

const char *fgc_fmt_count(uint64_t v, char *out) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    int o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) out[o++] = ',';
        out[o++] = tmp[i];
    }
    out[o] = '\0';
    return out;
}
