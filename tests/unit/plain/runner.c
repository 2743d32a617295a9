/*
 * runner.c — the plain runner's main: runs the tests that criterion.h registered, one after
 * another in this process, prints each one's name and result, and exits 1 when any failed (or
 * when none ran, so an empty or mistyped filter cannot pass). See criterion/criterion.h for what
 * it does and does not share with Criterion.
 *
 * Usage: test_x [--list] [--filter GLOB]   GLOB matches "suite/name", as Criterion's does.
 */
#include <fnmatch.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"
#include "criterion/new/assert.h"

#define DETAIL_BYTES    512 /* the note of a failed comparison */
#define SHOWN_BYTES     160 /* of a string operand in that note */
#define TEST_NAME_BYTES 256 /* "suite::name[index]" */

/* Registered by constructors before main, read only after: no lock needed. */
static struct cr_plain_test *g_tests, **g_tests_tail = &g_tests;
static struct cr_plain_suite *g_suites;

/* The test being run. Only the runner thread jumps back to g_jump (longjmp may not cross
 * threads); g_failed is set by expectations on any thread. */
static pthread_t g_runner;
static jmp_buf g_jump;
static bool g_jump_armed;
static atomic_bool g_failed;
static char g_current[TEST_NAME_BYTES];
static _Thread_local char g_detail[DETAIL_BYTES];

void cr_plain_register_test(struct cr_plain_test *t) {
    t->next = NULL;
    *g_tests_tail = t;
    g_tests_tail = &t->next;
}

void cr_plain_register_suite(struct cr_plain_suite *s) {
    s->next = g_suites;
    g_suites = s;
}

static const struct cr_plain_suite *suite_of(const struct cr_plain_test *t) {
    for (const struct cr_plain_suite *s = g_suites; s != NULL; s = s->next)
        if (strcmp(s->name, t->suite) == 0) return s;
    return NULL;
}

/* ---------------------------------------------------------------- assertions */

void cr_plain_detail_reset(void) {
    g_detail[0] = '\0';
}

static void report(const char *kind, const char *file, int line, const char *text, const char *fmt,
                   va_list ap) {
    /* One buffer, one write: lines from other threads do not split the report. */
    char msg[4096];
    int n = snprintf(msg, sizeof msg, "  %s:%d: %s: ", file, line, kind);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof msg) {
        if (fmt[0] == '\0')
            snprintf(msg + n, sizeof msg - (size_t)n, "%s", text);
        else
            vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    }
    fprintf(stderr, "%s\n", msg);
    if (g_detail[0] != '\0') fprintf(stderr, "    %s\n", g_detail);
}

void cr_plain_expect_failed(const char *file, int line, const char *text, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report("expectation failed", file, line, text, fmt, ap);
    va_end(ap);
    atomic_store(&g_failed, true);
}

void cr_plain_assert_failed(const char *file, int line, const char *text, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report("assertion failed", file, line, text, fmt, ap);
    va_end(ap);
    atomic_store(&g_failed, true);
    /* Another thread must not even read g_jump_armed: the runner thread writes it unlocked. */
    if (pthread_equal(pthread_self(), g_runner) && g_jump_armed) longjmp(g_jump, 1);
    fprintf(stderr, "  (outside the test's own thread or body: the run stops here)\n");
    abort();
}

void cr_plain_log(const char *level, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "  [%s] %s\n", level, msg);
}

/* ---------------------------------------------------------------- comparisons */

static const char *const OP_TEXT[] = {"==", "!=", "<", "<=", ">", ">="};

static bool holds(int op, int cmp) {
    switch (op) {
    case CR_PLAIN_EQ: return cmp == 0;
    case CR_PLAIN_NE: return cmp != 0;
    case CR_PLAIN_LT: return cmp < 0;
    case CR_PLAIN_LE: return cmp <= 0;
    case CR_PLAIN_GT: return cmp > 0;
    case CR_PLAIN_GE: return cmp >= 0;
    default: abort(); /* the macros pass only the six above */
    }
}

bool cr_plain_rel_signed(int op, long long a, long long b, const char *ta, const char *tb) {
    if (holds(op, (a > b) - (a < b))) return true;
    snprintf(g_detail, sizeof g_detail, "%s %s %s: left %lld, right %lld", ta, OP_TEXT[op], tb, a,
             b);
    return false;
}

bool cr_plain_rel_unsigned(int op, unsigned long long a, unsigned long long b, const char *ta,
                           const char *tb) {
    if (holds(op, (a > b) - (a < b))) return true;
    snprintf(g_detail, sizeof g_detail, "%s %s %s: left %llu, right %llu", ta, OP_TEXT[op], tb, a,
             b);
    return false;
}

bool cr_plain_rel_ptr(int op, const void *a, const void *b, const char *ta, const char *tb) {
    /* Converted to integers: < and > on unrelated pointers are undefined in C. */
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    if (holds(op, (x > y) - (x < y))) return true;
    snprintf(g_detail, sizeof g_detail, "%s %s %s: left %p, right %p", ta, OP_TEXT[op], tb, a, b);
    return false;
}

bool cr_plain_rel_str(int op, const char *a, const char *b, const char *ta, const char *tb) {
    int cmp = a == NULL || b == NULL ? (a != NULL) - (b != NULL) : strcmp(a, b);
    if (holds(op, cmp)) return true;
    snprintf(g_detail, sizeof g_detail, "%s %s %s: left \"%.*s\", right \"%.*s\"", ta, OP_TEXT[op],
             tb, SHOWN_BYTES, a != NULL ? a : "(null)", SHOWN_BYTES, b != NULL ? b : "(null)");
    return false;
}

bool cr_plain_rel_mem(int op, struct cr_mem a, struct cr_mem b, const char *ta, const char *tb) {
    size_t n = a.size < b.size ? a.size : b.size;
    int cmp = n == 0 ? 0 : memcmp(a.data, b.data, n);
    if (cmp == 0) cmp = (a.size > b.size) - (a.size < b.size);
    if (holds(op, cmp)) return true;
    size_t at = 0;
    const unsigned char *x = a.data, *y = b.data;
    while (at < n && x[at] == y[at])
        at++;
    snprintf(g_detail, sizeof g_detail, "%s %s %s: %zu and %zu bytes, first difference at %zu", ta,
             OP_TEXT[op], tb, a.size, b.size, at);
    return false;
}

/* ---------------------------------------------------------------- running */

static void on_timeout(int sig) {
    (void)sig;
    /* Only async-signal-safe calls here. */
    static const char head[] = "\n[TIMEOUT] ";
    static const char tail[] = ": the run stops here\n";
    ssize_t ignored = write(STDERR_FILENO, head, sizeof head - 1);
    ignored = write(STDERR_FILENO, g_current, strnlen(g_current, sizeof g_current));
    ignored = write(STDERR_FILENO, tail, sizeof tail - 1);
    (void)ignored;
    _exit(124);
}

static void (*g_phase_fn)(void);
static void (*g_phase_pfn)(void *);
static void *g_phase_param;

/* Runs one part of a test (an init, the body, a fini); a fatal assertion in it returns here. */
static void phase(void (*fn)(void), void (*pfn)(void *), void *param) {
    if (fn == NULL && pfn == NULL) return;
    g_phase_fn = fn;
    g_phase_pfn = pfn;
    g_phase_param = param;
    if (setjmp(g_jump) == 0) {
        g_jump_armed = true;
        if (g_phase_fn != NULL)
            g_phase_fn();
        else
            g_phase_pfn(g_phase_param);
    }
    g_jump_armed = false;
}

static double mono_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs one test, or one parameter of a parameterized one; returns whether it passed. */
static bool run_one(const struct cr_plain_test *t, const struct cr_plain_suite *s, void *param,
                    long index) {
    if (index < 0)
        snprintf(g_current, sizeof g_current, "%s::%s", t->suite, t->name);
    else
        snprintf(g_current, sizeof g_current, "%s::%s[%ld]", t->suite, t->name, index);
    fprintf(stderr, "[ RUN  ] %s\n", g_current);
    double timeout_s = t->timeout > 0 ? t->timeout : s != NULL ? s->timeout : 0;
    atomic_store(&g_failed, false);
    double t0 = mono_seconds();
    if (timeout_s > 0) alarm((unsigned)timeout_s + 1);
    phase(s != NULL ? s->init : NULL, NULL, NULL);
    if (!atomic_load(&g_failed)) phase(t->init, NULL, NULL);
    if (!atomic_load(&g_failed)) phase(t->fn, t->pfn, param);
    phase(t->fini, NULL, NULL);
    phase(s != NULL ? s->fini : NULL, NULL, NULL);
    alarm(0);
    bool ok = !atomic_load(&g_failed);
    fprintf(stderr, "[ %s ] %s (%.2f s)\n", ok ? "PASS" : "FAIL", g_current, mono_seconds() - t0);
    return ok;
}

static bool selected(const struct cr_plain_test *t, const char *filter) {
    if (filter == NULL) return true;
    char id[TEST_NAME_BYTES];
    snprintf(id, sizeof id, "%s/%s", t->suite, t->name);
    return fnmatch(filter, id, 0) == 0;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--list] [--filter GLOB]  (GLOB matches suite/name)\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *filter = NULL;
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0 || strcmp(argv[i], "-l") == 0)
            list = true;
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
        else
            return usage(argv[0]);
    }
    g_runner = pthread_self();
    signal(SIGALRM, on_timeout);
    long ran = 0, failed = 0, skipped = 0;
    for (struct cr_plain_test *t = g_tests; t != NULL; t = t->next) {
        if (!selected(t, filter)) continue;
        if (list) {
            printf("%s/%s\n", t->suite, t->name);
            continue;
        }
        const struct cr_plain_suite *s = suite_of(t);
        if (t->disabled || (s != NULL && s->disabled)) {
            fprintf(stderr, "[ SKIP ] %s::%s (disabled)\n", t->suite, t->name);
            skipped++;
            continue;
        }
        if (t->params == NULL) {
            ran++;
            failed += !run_one(t, s, NULL, -1);
            continue;
        }
        struct criterion_test_params p = t->params();
        for (size_t k = 0; k < p.length; k++) {
            ran++;
            failed += !run_one(t, s, (char *)p.params + k * p.size, (long)k);
        }
        if (p.cleanup != NULL) p.cleanup(&p);
    }
    if (list) return 0;
    /* Criterion's summary line, which scripts/count_tests.py reads. Crashing stays 0: a crash
     * ends this process before the line, and its exit status tells. */
    fprintf(stderr, "Synthesis: Tested: %ld | Passing: %ld | Failing: %ld | Crashing: 0\n", ran,
            ran - failed, failed);
    if (skipped > 0) fprintf(stderr, "Skipped (disabled): %ld\n", skipped);
    if (ran == 0)
        fprintf(stderr, "no test ran%s%s\n", filter ? " for filter " : "", filter ? filter : "");
    return failed == 0 && ran > 0 ? 0 : 1;
}
