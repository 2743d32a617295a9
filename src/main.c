/*
 * main.c — the floodgate command: options, start-up, signals, shutdown.
 *
 * Start: open the ledger, settle the secrets (admin token hash, webhook secret), seed the demo
 * if asked, load the engine and start the writer, then the HTTP server. Stop (SIGTERM/SIGINT):
 * stop accepting, end event streams, let the writer answer everything it accepted and commit
 * its last batch, let the answers leave, close.
 */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "demo.h"
#include "engine/writer.h"
#include "http/server.h"
#include "ledger/ledger.h"
#include "util/clock.h"
#include "util/log.h"

#define FG_VERSION "0.1.0"

/* Exit status after a failed fsync of the ledger (sysexits.h EX_IOERR): floodgate stopped on
 * purpose and must be started again, which recovers from what the ledger holds. */
#define FG_EXIT_LEDGER_UNSAFE 74
/* How often main looks at the writer's health while it waits for a signal. */
#define FG_HEALTH_CHECK_MS 100

typedef struct {
    const char *listen;
    const char *data_dir;
    const char *admin_token;
    const char *webhook_secret;
    const char *port_file;
    int threads;
    int rate_limit;
    bool quiet;
    bool demo;
} options_t;

static void usage(FILE *out) {
    fprintf(
        out,
        "floodgate " FG_VERSION " — a flash-sale engine: sells every unit exactly once.\n"
        "\n"
        "Usage:\n"
        "  floodgate serve [options]   run the server\n"
        "  floodgate --help | --version\n"
        "\n"
        "Options (each also from the environment variable named after it):\n"
        "  --listen ADDR        where to listen: 127.0.0.1:8080, [::1]:8080, :8080\n"
        "                       (FLOODGATE_LISTEN; default 127.0.0.1:8080; port 0 picks one)\n"
        "  --data DIR           the ledger's directory, created if missing\n"
        "                       (FLOODGATE_DATA; default ./floodgate-data)\n"
        "  --admin-token TOKEN  the operators' bearer token; only its hash is stored\n"
        "                       (FLOODGATE_ADMIN_TOKEN; default: the stored one, or a new one\n"
        "                       generated and printed once at first start)\n"
        "  --webhook-secret S   HMAC key of the payment provider's webhook signatures\n"
        "                       (FLOODGATE_WEBHOOK_SECRET; default: the stored one, or a new one\n"
        "                       generated and printed once at first start)\n"
        "  --threads N          HTTP loop threads (FLOODGATE_THREADS; default: one per core)\n"
        "  --rate-limit N       registrations and holds per second per client address, 0 = off\n"
        "                       (FLOODGATE_RATE_LIMIT; default 0)\n"
        "  --port-file PATH     write the bound port to PATH once listening\n"
        "  --quiet              no per-request log lines (FLOODGATE_QUIET=1)\n"
        "  --demo               seed a demo catalog and a sale opening 60 s after start\n"
        "                       (once per data directory)\n"
        "\n"
        "Signals: SIGTERM or SIGINT stops accepting, answers every waiting request, commits the\n"
        "last batch and exits 0.\n"
        "\n"
        "Exit status 74: an fsync of the ledger failed, so floodgate refused every write and\n"
        "stopped; start it again (a supervisor should) to recover from the ledger.\n"
        "\n"
        "Logs go to stderr, one line per request and per batch commit (key=value).\n"
        "Documentation: README.md, docs/api.md, docs/operations.md.\n");
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return dflt;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < 0 || n > 1000000) {
        fprintf(stderr, "floodgate: %s=%s is not a number from 0 to 1000000\n", name, v);
        exit(2);
    }
    return (int)n;
}

static const char *env_str(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static int parse_int_arg(const char *opt, const char *v) {
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < 0 || n > 1000000) {
        fprintf(stderr, "floodgate: %s %s: expected a number from 0 to 1000000\n", opt, v);
        exit(2);
    }
    return (int)n;
}

static void parse_options(int argc, char **argv, options_t *o) {
    static const struct option longopts[] = {{"listen", required_argument, 0, 'l'},
                                             {"data", required_argument, 0, 'd'},
                                             {"admin-token", required_argument, 0, 'a'},
                                             {"webhook-secret", required_argument, 0, 'w'},
                                             {"threads", required_argument, 0, 't'},
                                             {"rate-limit", required_argument, 0, 'r'},
                                             {"port-file", required_argument, 0, 'p'},
                                             {"quiet", no_argument, 0, 'q'},
                                             {"demo", no_argument, 0, 'D'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    o->listen = env_str("FLOODGATE_LISTEN", "127.0.0.1:8080");
    o->data_dir = env_str("FLOODGATE_DATA", "./floodgate-data");
    o->admin_token = env_str("FLOODGATE_ADMIN_TOKEN", NULL);
    o->webhook_secret = env_str("FLOODGATE_WEBHOOK_SECRET", NULL);
    o->threads = env_int("FLOODGATE_THREADS", 0);
    o->rate_limit = env_int("FLOODGATE_RATE_LIMIT", 0);
    o->quiet = env_int("FLOODGATE_QUIET", 0) != 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': o->listen = optarg; break;
        case 'd': o->data_dir = optarg; break;
        case 'a': o->admin_token = optarg; break;
        case 'w': o->webhook_secret = optarg; break;
        case 't': o->threads = parse_int_arg("--threads", optarg); break;
        case 'r': o->rate_limit = parse_int_arg("--rate-limit", optarg); break;
        case 'p': o->port_file = optarg; break;
        case 'q': o->quiet = true; break;
        case 'D': o->demo = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc) {
        fprintf(stderr, "floodgate: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
    if (o->threads > 256) {
        fprintf(stderr, "floodgate: --threads: at most 256\n");
        exit(2);
    }
}

/* Returns a random token with the given prefix (43 base64url characters of entropy). */
static void random_token(const char *prefix, char *out, size_t cap) {
    uint8_t raw[32];
    char b64[64];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(out, cap, "%s%s", prefix, b64);
}

/* Settles the admin token's hash: from the option (stored), the ledger, or a new token. */
static int admin_hash(fg_ledger_t *l, const char *given, uint8_t hash[32]) {
    char hex[65], token[96];
    const char *t = given;
    if (t == NULL) {
        int rc = fg_ledger_meta_get(l, "admin_token_hash", hex, sizeof hex);
        if (rc < 0) return -1;
        size_t n = 0;
        if (rc == 1 && sodium_hex2bin(hash, 32, hex, 64, NULL, &n, NULL) == 0 && n == 32) return 0;
        random_token("fga_", token, sizeof token);
        t = token;
        fprintf(stderr,
                "\nfloodgate: generated the admin token (shown once, only its hash is "
                "kept):\n\n    %s\n\n",
                token);
    }
    if (strlen(t) < 16) {
        fprintf(stderr, "floodgate: the admin token must be at least 16 characters\n");
        return -1;
    }
    crypto_generichash(hash, 32, (const unsigned char *)t, strlen(t), NULL, 0);
    sodium_bin2hex(hex, sizeof hex, hash, 32);
    return fg_ledger_meta_set(l, "admin_token_hash", hex);
}

static int webhook_secret(fg_ledger_t *l, const char *given, char *out, size_t cap) {
    if (given != NULL) {
        if (strlen(given) < 16 || strlen(given) >= cap) {
            fprintf(stderr, "floodgate: the webhook secret must be 16 to %zu characters\n",
                    cap - 1);
            return -1;
        }
        snprintf(out, cap, "%s", given);
        return 0;
    }
    int rc = fg_ledger_meta_get(l, "webhook_secret", out, cap);
    if (rc != 0) return rc < 0 ? -1 : 0;
    random_token("whsec_", out, cap);
    fprintf(stderr, "floodgate: generated the webhook secret (shown once):\n\n    %s\n\n", out);
    return fg_ledger_meta_set(l, "webhook_secret", out);
}

static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int write_port_file(const char *path, int port) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

/* Waits for SIGTERM or SIGINT, or for the writer to give up on the ledger after a failed
 * fsync. Returns true for the latter: the stop is then the same graceful one (every waiting
 * request gets its 503), with a different exit status. */
static bool wait_for_stop(fg_writer_t *writer) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = FG_HEALTH_CHECK_MS * 1000000L};
    for (;;) {
        if (atomic_load(&fg_writer_stats(writer)->ledger_unsafe)) {
            FG_LOG_ERROR("event=stopping reason=ledger_unsafe status=%d", FG_EXIT_LEDGER_UNSAFE);
            return true;
        }
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            FG_LOG_INFO("event=stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return false;
        }
    }
}

static int serve(const options_t *o) {
    char err[512];
    int status = 1;
    if (mkdir(o->data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "floodgate: cannot create %s: %s\n", o->data_dir, strerror(errno));
        return 1;
    }
    fg_ledger_t *ledger = NULL;
    if (fg_ledger_open(o->data_dir, &ledger, err, sizeof err) != 0) {
        fprintf(stderr, "floodgate: ledger: %s\n", err);
        return 1;
    }
    uint8_t hash[32];
    char secret[256];
    if (admin_hash(ledger, o->admin_token, hash) != 0 ||
        webhook_secret(ledger, o->webhook_secret, secret, sizeof secret) != 0)
        goto fail_secrets;
    if (o->demo && fg_demo_seed(ledger, fg_clock_now_ms(), err, sizeof err) != 0) {
        fprintf(stderr, "floodgate: demo: %s\n", err);
        goto fail_secrets;
    }
    fg_api_config_t acfg = {.data_dir = o->data_dir,
                            .admin_token_hash = hash,
                            .webhook_secret = secret,
                            .rate_limit_per_s = o->rate_limit};
    fg_api_t *api = fg_api_new(&acfg);
    if (api == NULL) goto fail_secrets;
    fg_writer_t *writer =
        fg_writer_start(ledger, fg_api_on_sale_change, api, !o->quiet, err, sizeof err);
    if (writer == NULL) {
        fprintf(stderr, "floodgate: %s\n", err);
        goto fail_writer;
    }
    fg_api_set_writer(api, writer);
    fg_http_config_t hcfg = {.listen = o->listen, .threads = o->threads};
    fg_http_t *http = fg_http_start(&hcfg, api, err, sizeof err);
    if (http == NULL) {
        fprintf(stderr, "floodgate: %s\n", err);
        goto fail_http;
    }
    FG_LOG_INFO("event=listening addr=%s port=%d data=%s", o->listen, fg_http_port(http),
                o->data_dir);
    if (o->port_file && write_port_file(o->port_file, fg_http_port(http)) != 0)
        FG_LOG_WARN("event=port_file_failed path=%s", o->port_file);

    bool unsafe = wait_for_stop(writer);
    fg_http_quiesce(http);
    fg_api_shutdown_streams(api);
    fg_writer_stop(writer);
    long left = fg_http_drain(http, 5000);
    if (left > 0) FG_LOG_WARN("event=drain_incomplete parked=%ld", left);
    fg_http_stop(http);
    fg_writer_free(writer);
    writer = NULL;
    status = unsafe ? FG_EXIT_LEDGER_UNSAFE : 0;
    FG_LOG_INFO("event=stopped status=%d", status);
fail_http:
    if (writer) {
        fg_writer_stop(writer);
        fg_writer_free(writer);
    }
fail_writer:
    fg_api_free(api);
fail_secrets:
    fg_ledger_close(ledger);
    return status;
}

int main(int argc, char **argv) {
    if (sodium_init() < 0) {
        fprintf(stderr, "floodgate: libsodium failed to start\n");
        return 1;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("floodgate " FG_VERSION "\n");
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "serve") != 0) {
        usage(stderr);
        return 2;
    }
    options_t o = {0};
    parse_options(argc - 1, argv + 1, &o);
    fg_log_set_quiet(o.quiet);
    /* Signals are taken by sigwait in main only: block them before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    return serve(&o);
}
