/*
 * main.c — floodgate-crowd: a launch-day crowd against a running floodgate server, then an
 * audit of what it was told against the server's record. Thin: options, the loop, the crowd,
 * the audit. See docs/crowd.md.
 *
 * Exit status: 0 audit ok; 1 a violation; 2 bad options or setup failed; 3 the audit could
 * not be done.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "crowd/audit.h"
#include "crowd/crowd.h"
#include "crowd/opts.h"

#define EXIT_SETUP 2

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    interrupted = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

/* Each connection is a file descriptor: raise the soft limit as far as the hard one allows. */
static int raise_fd_limit(int connections) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    rlim_t want = (rlim_t)connections + 64;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        fprintf(stderr,
                "floodgate-crowd: %d connections need %llu file descriptors, the limit is "
                "%llu (ulimit -n)\n",
                connections, (unsigned long long)want, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int audit_only(const fgc_opts_t *o, fgc_loop_t *l) {
    fgc_record_t rec;
    fgc_record_init(&rec);
    char err[512];
    if (fgc_record_read(&rec, o->expect_path, err, sizeof err) != 0) {
        fprintf(stderr, "floodgate-crowd: --expect: %s\n", err);
        fgc_record_free(&rec);
        return EXIT_SETUP;
    }
    if (strcmp(rec.sale_id, o->audit_only) != 0) {
        fprintf(stderr, "floodgate-crowd: --expect: the record is of sale %s, not %s\n",
                rec.sale_id, o->audit_only);
        fgc_record_free(&rec);
        return EXIT_SETUP;
    }
    int rc = fgc_audit_run(l, o->admin_token, o->retries, &rec, stdout);
    fgc_record_free(&rec);
    return rc;
}

static int crowd(const fgc_opts_t *o, fgc_loop_t *l) {
    fgc_crowd_t *c = fgc_crowd_new(o, l, &interrupted);
    if (c == NULL) {
        fprintf(stderr, "floodgate-crowd: out of memory for %lld buyers\n", (long long)o->buyers);
        return EXIT_SETUP;
    }
    if (fgc_crowd_run(c) != 0) {
        fgc_crowd_free(c);
        return EXIT_SETUP;
    }
    fgc_crowd_summary(c, stdout);
    fgc_record_t rec;
    fgc_record_init(&rec);
    int rc = EXIT_SETUP;
    char err[512];
    if (fgc_crowd_record(c, &rec) != 0 || fgc_crowd_record_unordered(c, &rec) != 0) {
        fprintf(stderr, "floodgate-crowd: out of memory for the record\n");
    } else if (o->record_path && fgc_record_write(&rec, o->record_path, err, sizeof err) != 0) {
        fprintf(stderr, "floodgate-crowd: --record: %s\n", err);
    } else {
        fgc_crowd_free(c); /* the audit needs only the record */
        c = NULL;
        rc = fgc_audit_run(l, o->admin_token, o->retries, &rec, stdout);
    }
    fgc_record_free(&rec);
    fgc_crowd_free(c);
    return rc;
}

int main(int argc, char **argv) {
    fgc_opts_t o;
    int prc = fgc_opts_parse(argc, argv, &o);
    if (prc != 0) return prc > 0 ? 0 : EXIT_SETUP;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    fgc_target_t target;
    char err[512];
    if (fgc_target_parse(o.url, &target, err, sizeof err) != 0) {
        fprintf(stderr, "floodgate-crowd: --url: %s\n", err);
        return EXIT_SETUP;
    }
    if (raise_fd_limit(o.connections) != 0) return EXIT_SETUP;
    size_t queue_max = (size_t)o.buyers + (size_t)o.connections + 1024;
    fgc_loop_t *l = fgc_loop_new(&target, o.connections, o.timeout_ms, queue_max);
    if (l == NULL) {
        fprintf(stderr, "floodgate-crowd: cannot set up the event loop\n");
        return EXIT_SETUP;
    }
    int rc = o.audit_only ? audit_only(&o, l) : crowd(&o, l);
    fgc_loop_free(l);
    return rc;
}
