/*
 * run.c — the holds phases of floodgate-load, its per-second lines and its summary; see load.h.
 *
 * Open loop: arrival k of a phase is due at t0 + k / rate. Each pass of the loop handles every
 * arrival due by now: it goes out on an idle connection with its due time as its latency origin,
 * or, when none is idle, it is counted as not sent in time and dropped. Nothing waits for an
 * answer, so the offered rate is the rate asked for, whatever the server does. The generator's
 * own lateness (now - due when it handles an arrival) is recorded too: when it is large, the
 * generator, not the server, is the bottleneck and the run says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "load/load.h"
#include "util/clock.h"

#define NS_PER_S          1000000000LL
#define SUMMARY_BYTES_MAX (8 * 1024 * 1024)
#define PROBES_SHOWN_MAX  40 /* after-phase answers listed one by one in the summary */

typedef struct {
    int64_t t0_ns, end_ns;
    double rate_per_s; /* 0: closed loop */
    uint8_t kind;
    fgl_tally_t *tally;
    char path[FGL_ID_BYTES_MAX + 32];
} phase_t;

/* ---------------------------------------------------------------- server and self */

void fgl_server_sample(int pid, long *rss_kb, double *cpu_s) {
    *rss_kb = -1;
    *cpu_s = -1;
    if (pid <= 0) return;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        while (fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "VmRSS: %ld kB", rss_kb) == 1) break;
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) return;
    char stat[1024];
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *p = strrchr(stat, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (p != NULL &&
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        *cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---------------------------------------------------------------- answers, seconds */

void fgl_run_answer(fgl_run_t *r, const fgl_answer_t *a) {
    FG_ASSERT(a->kind == FGL_K_HOLD || a->kind == FGL_K_AFTER);
    fgl_tally_answer(r->second, a);
    if (a->kind == FGL_K_HOLD) {
        fgl_tally_answer(r->total, a);
        return;
    }
    fgl_tally_answer(r->after, a);
    if (r->probes_len == FGL_PROBES_MAX) {
        r->probes_dropped++;
        return;
    }
    r->probes[r->probes_len++] = (fgl_probe_t){
        .offset_us = (a->start_ns - r->main_end_ns) / 1000,
        .latency_us = (a->end_ns - a->start_ns) / 1000,
        .status = a->status,
    };
}

static void print_second(const fgl_second_t *s) {
    printf("t=%3d offered=%7llu sent=%7llu not_sent=%7llu 2xx=%7llu shed=%7llu other=%llu "
           "none=%llu no_retry_after=%llu acc_p50=%.2fms acc_p99=%.2fms shed_p50=%.3fms "
           "shed_p99=%.3fms",
           s->t_s, (unsigned long long)s->offered, (unsigned long long)s->sent,
           (unsigned long long)s->not_sent, (unsigned long long)s->ok, (unsigned long long)s->shed,
           (unsigned long long)s->other, (unsigned long long)s->no_answer,
           (unsigned long long)s->shed_without_retry_after, (double)s->accepted_p50_us / 1e3,
           (double)s->accepted_p99_us / 1e3, (double)s->shed_p50_us / 1e3,
           (double)s->shed_p99_us / 1e3);
    if (s->rss_kb >= 0) printf(" rss=%.1fMiB cpu=%.2fs", (double)s->rss_kb / 1024.0, s->cpu_s);
    printf("\n");
    fflush(stdout);
}

/* Ends the current second: its record, its line, a fresh tally. */
static void close_second(fgl_run_t *r) {
    const fgl_tally_t *t = r->second;
    fgl_second_t s = {
        .t_s = (int)((r->second_start_ns - r->main_start_ns) / NS_PER_S),
        .offered = t->offered,
        .sent = t->sent,
        .not_sent = t->not_sent,
        .ok = fgl_tally_count(t, 200, 300),
        .shed = t->status[429] + t->status[503],
        .no_answer = t->status[0],
        .shed_without_retry_after = t->shed_without_retry_after,
        .accepted_p50_us = fgc_latency_quantile(&t->accepted, 0.50),
        .accepted_p99_us = fgc_latency_quantile(&t->accepted, 0.99),
        .shed_p50_us = fgc_latency_quantile(&t->shed, 0.50),
        .shed_p99_us = fgc_latency_quantile(&t->shed, 0.99),
    };
    s.other = fgl_tally_count(t, 1, FGL_STATUS_SLOTS) - s.ok - s.shed;
    double cpu = -1;
    fgl_server_sample(r->o.server_pid, &s.rss_kb, &cpu);
    s.cpu_s = cpu >= 0 ? cpu - r->cpu_prev_s : 0;
    if (cpu >= 0) r->cpu_prev_s = cpu;
    if (s.rss_kb > r->rss_max_kb) r->rss_max_kb = s.rss_kb;
    if (!r->o.quiet) print_second(&s);
    if (r->seconds_len < r->seconds_cap) r->seconds[r->seconds_len++] = s;
    fgl_tally_reset(r->second);
    r->second_start_ns += NS_PER_S;
}

static void tick(fgl_run_t *r, int64_t now_ns) {
    while (now_ns >= r->second_start_ns + NS_PER_S)
        close_second(r);
}

/* ---------------------------------------------------------------- phases */

static bool send_hold(fgl_run_t *r, const phase_t *ph, int64_t start_ns) {
    static const char body[] = "{\"sku\":\"" FGL_SKU_ID "\",\"market\":\"" FGL_MARKET "\"}";
    char idem[FGL_IDEM_KEY_BYTES_MAX];
    uint64_t seq = r->hold_seq;
    snprintf(idem, sizeof idem, "h%s-%llu", r->run_id, (unsigned long long)seq);
    fgl_request_t rq = {.method = "POST",
                        .path = ph->path,
                        .token = r->tokens[seq % (uint64_t)r->o.buyers],
                        .idem = idem,
                        .body = body,
                        .kind = ph->kind,
                        .start_ns = start_ns};
    if (!fgl_pool_send(r->pool, &rq)) return false;
    r->hold_seq++;
    return true;
}

static void count_arrival(fgl_run_t *r, const phase_t *ph, bool sent) {
    ph->tally->offered++;
    r->second->offered++;
    *(sent ? &ph->tally->sent : &ph->tally->not_sent) += 1;
    *(sent ? &r->second->sent : &r->second->not_sent) += 1;
}

/* Runs one phase until its end; every pass is bounded by the arrivals due so far. */
static void run_phase(fgl_run_t *r, const phase_t *ph) {
    uint64_t k = 0;
    for (;;) {
        int64_t now = fg_clock_mono_ns();
        tick(r, now);
        if (now >= ph->end_ns) break;
        int64_t next = ph->end_ns;
        if (ph->rate_per_s == 0) {
            while (fgl_pool_idle(r->pool) > 0) {
                bool sent = send_hold(r, ph, now);
                count_arrival(r, ph, sent);
                if (!sent) break;
            }
        } else {
            for (;;) {
                int64_t due = ph->t0_ns + (int64_t)((double)k * 1e9 / ph->rate_per_s);
                if (due >= ph->end_ns) break;
                if (due > now) {
                    next = due;
                    break;
                }
                k++;
                fgc_latency_add(&r->lag, (now - due) / 1000);
                count_arrival(r, ph, send_hold(r, ph, due));
            }
        }
        if (next > r->second_start_ns + NS_PER_S) next = r->second_start_ns + NS_PER_S;
        fgl_pool_poll(r->pool, next);
    }
}

/* Waits for the answers still in flight (bounded), then gives up the rest. */
static void drain(fgl_run_t *r) {
    int64_t deadline = fg_clock_mono_ns() + (int64_t)FGL_DRAIN_MS_MAX * 1000000;
    for (;;) {
        int64_t now = fg_clock_mono_ns();
        tick(r, now);
        if (fgl_pool_busy(r->pool) == 0 || now >= deadline) break;
        int64_t next = r->second_start_ns + NS_PER_S;
        fgl_pool_poll(r->pool, next < deadline ? next : deadline);
    }
    fgl_pool_cut(r->pool);
    close_second(r); /* the partial last one */
}

int fgl_run_holds(fgl_run_t *r) {
    double cpu0 = -1;
    fgl_server_sample(r->o.server_pid, &r->rss_start_kb, &cpu0);
    r->cpu_start_s = r->cpu_prev_s = cpu0;
    r->rss_max_kb = r->rss_start_kb;
    double gen0 = self_cpu_s();
    phase_t ph = {.t0_ns = fg_clock_mono_ns(),
                  .rate_per_s = r->o.closed ? 0 : r->o.rate_per_s,
                  .kind = FGL_K_HOLD,
                  .tally = r->total};
    ph.end_ns = ph.t0_ns + (int64_t)r->o.duration_s * NS_PER_S;
    snprintf(ph.path, sizeof ph.path, "/v1/sales/%s/holds", r->o.sale_id);
    r->main_start_ns = r->second_start_ns = ph.t0_ns;
    r->main_end_ns = ph.end_ns;
    run_phase(r, &ph);
    r->gen_cpu_s = self_cpu_s() - gen0;
    long rss;
    double cpu1;
    fgl_server_sample(r->o.server_pid, &rss, &cpu1);
    r->cpu_main_s = cpu1 >= 0 && cpu0 >= 0 ? cpu1 - cpu0 : -1;
    if (r->o.after_s > 0) {
        phase_t after = ph;
        after.t0_ns = r->main_end_ns;
        after.end_ns = after.t0_ns + (int64_t)r->o.after_s * NS_PER_S;
        after.rate_per_s = r->o.after_rate_per_s;
        after.kind = FGL_K_AFTER;
        after.tally = r->after;
        run_phase(r, &after);
    }
    drain(r);
    fgl_server_sample(r->o.server_pid, &r->rss_end_kb, &cpu1);
    return 0;
}

/* ---------------------------------------------------------------- summary */

static int by_offset(const void *a, const void *b) {
    int64_t x = ((const fgl_probe_t *)a)->offset_us, y = ((const fgl_probe_t *)b)->offset_us;
    return (x > y) - (x < y);
}

/* The median latency of probes [from, to) (sorted by offset), or -1 when one of them was not
 * a 2xx. */
static int64_t window_median_us(const fgl_run_t *r, int from, int to) {
    int64_t lat[FGL_PROBES_MAX];
    int n = 0;
    for (int i = from; i < to; i++) {
        const fgl_probe_t *p = &r->probes[i];
        if (p->status < 200 || p->status >= 300) return -1;
        int k = n++;
        while (k > 0 && lat[k - 1] > p->latency_us) { /* insertion: windows are small */
            lat[k] = lat[k - 1];
            k--;
        }
        lat[k] = p->latency_us;
    }
    return n > 0 ? lat[n / 2] : 0;
}

/* From the end of the main phase, when the server was back to normal: the start of the first
 * FGL_RECOVERY_WINDOW_MS window of the after phase from which every window has only 2xx answers
 * and a median latency within normal_us (0: any). A median, not a maximum: a normal server
 * has its slow outliers too. -1 when the last window was not normal. */
static double recovered_ms(fgl_run_t *r, int64_t normal_us) {
    if (r->probes_len == 0) return -1;
    qsort(r->probes, (size_t)r->probes_len, sizeof *r->probes, by_offset);
    const int64_t win_us = (int64_t)FGL_RECOVERY_WINDOW_MS * 1000;
    double recovered = -1;
    for (int i = 0; i < r->probes_len;) {
        int64_t w = r->probes[i].offset_us < 0 ? 0 : r->probes[i].offset_us / win_us;
        int j = i;
        while (j < r->probes_len && r->probes[j].offset_us / win_us <= w)
            j++;
        int64_t med = window_median_us(r, i, j);
        bool normal = med >= 0 && (normal_us == 0 || med <= normal_us);
        if (!normal)
            recovered = -1;
        else if (recovered < 0)
            recovered = (double)(w * win_us) / 1e3;
        i = j;
    }
    return recovered;
}

static void summary_after(fgl_run_t *r, fg_buf_t *b) {
    fg_buf_str(b, ",\"after\":{\"duration_s\":");
    /* all_2xx_ms: the same without the latency criterion, from when nothing was shed any more */
    fg_buf_printf(b,
                  "%d,\"rate_per_s\":%.0f,\"normal_us\":%lld,\"recovered_ms\":%.1f,"
                  "\"all_2xx_ms\":%.1f,\"tally\":",
                  r->o.after_s, r->o.after_s ? r->o.after_rate_per_s : 0, (long long)r->o.normal_us,
                  recovered_ms(r, r->o.normal_us), recovered_ms(r, 0));
    fgl_tally_json(r->after, b);
    fg_buf_printf(b, ",\"probes_dropped\":%llu,\"first_probes\":[",
                  (unsigned long long)r->probes_dropped);
    for (int i = 0; i < r->probes_len && i < PROBES_SHOWN_MAX; i++)
        fg_buf_printf(b, "%s[%.1f,%d,%lld]", i ? "," : "", (double)r->probes[i].offset_us / 1e3,
                      r->probes[i].status, (long long)r->probes[i].latency_us);
    fg_buf_str(b, "]}");
}

static void summary_seconds(const fgl_run_t *r, fg_buf_t *b) {
    fg_buf_str(b, ",\"seconds\":[");
    for (int i = 0; i < r->seconds_len; i++) {
        const fgl_second_t *s = &r->seconds[i];
        fg_buf_printf(b,
                      "%s{\"t\":%d,\"offered\":%llu,\"sent\":%llu,\"not_sent\":%llu,\"ok\":%llu,"
                      "\"shed\":%llu,\"other\":%llu,\"no_answer\":%llu,"
                      "\"shed_without_retry_after\":%llu,\"accepted_p50_us\":%lld,"
                      "\"accepted_p99_us\":%lld,\"shed_p50_us\":%lld,\"shed_p99_us\":%lld,"
                      "\"rss_kb\":%ld,\"cpu_s\":%.3f}",
                      i ? "," : "", s->t_s, (unsigned long long)s->offered,
                      (unsigned long long)s->sent, (unsigned long long)s->not_sent,
                      (unsigned long long)s->ok, (unsigned long long)s->shed,
                      (unsigned long long)s->other, (unsigned long long)s->no_answer,
                      (unsigned long long)s->shed_without_retry_after,
                      (long long)s->accepted_p50_us, (long long)s->accepted_p99_us,
                      (long long)s->shed_p50_us, (long long)s->shed_p99_us, s->rss_kb, s->cpu_s);
    }
    fg_buf_str(b, "]");
}

void fgl_run_summary(fgl_run_t *r) {
    fg_buf_t b;
    fg_buf_init(&b, SUMMARY_BYTES_MAX);
    const fgl_tally_t *t = r->total;
    double d = (double)r->o.duration_s;
    uint64_t answered = fgl_tally_count(t, 1, FGL_STATUS_SLOTS);
    fg_buf_printf(&b,
                  "{\"mode\":\"%s\",\"rate_per_s\":%.0f,\"duration_s\":%d,\"connections\":%d,"
                  "\"buyers\":%d,\"sale_id\":\"%s\",\"offered_per_s\":%.0f,\"accepted_per_s\":%.0f,"
                  "\"shed_per_s\":%.0f,\"main\":",
                  r->o.closed ? "closed" : "open", r->o.rate_per_s, r->o.duration_s,
                  r->o.connections, r->o.buyers, r->o.sale_id, (double)t->offered / d,
                  (double)fgl_tally_count(t, 200, 300) / d,
                  (double)(t->status[429] + t->status[503]) / d);
    fgl_tally_json(t, &b);
    const fgl_pool_stats_t *ps = fgl_pool_stats(r->pool);
    fg_buf_printf(&b,
                  ",\"generator\":{\"lag_p99_us\":%lld,\"lag_max_us\":%lld,\"cpu_s\":%.2f},"
                  "\"pool\":{\"connects\":%llu,\"connect_failures\":%llu,\"server_closes\":%llu,"
                  "\"timeouts\":%llu,\"transport_errors\":%llu}",
                  (long long)fgc_latency_quantile(&r->lag, 0.99), (long long)r->lag.max_us,
                  r->gen_cpu_s, (unsigned long long)ps->connects,
                  (unsigned long long)ps->connect_failures, (unsigned long long)ps->server_closes,
                  (unsigned long long)ps->timeouts, (unsigned long long)ps->transport_errors);
    fg_buf_printf(&b,
                  ",\"server\":{\"rss_start_kb\":%ld,\"rss_max_kb\":%ld,\"rss_end_kb\":%ld,"
                  "\"cpu_s\":%.2f,\"cpu_us_per_answer\":%.1f}",
                  r->rss_start_kb, r->rss_max_kb, r->rss_end_kb, r->cpu_main_s,
                  r->cpu_main_s >= 0 && answered ? r->cpu_main_s * 1e6 / (double)answered : -1.0);
    summary_after(r, &b);
    summary_seconds(r, &b);
    fg_buf_str(&b, "}");
    FG_ASSERT(!b.overflow); /* bounded by FGL_DURATION_S_MAX seconds of records */
    printf("%s\n", b.data);
    fflush(stdout);
    fg_buf_free(&b);
}
