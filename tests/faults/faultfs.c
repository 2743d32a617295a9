/*
 * faultfs.c — a disk that fails on demand, for floodgate's disk fault tests (LD_PRELOAD).
 *
 * It interposes write, pwrite, pwrite64, fsync and fdatasync. A call on a file under the
 * directory FG_FAULT_DIR fails as the control file FG_FAULT_CONTROL says; every other call, and
 * every call while the mode is off, goes to the real function (dlsym RTLD_NEXT) untouched and
 * with errno as the real function left it. Without both variables the shim does nothing.
 *
 * The control file holds one line, "MODE [COUNT]":
 *   off        no faults
 *   eio-write  write and pwrite fail with EIO, writing nothing (a failing device)
 *   enospc     write and pwrite fail with ENOSPC, writing nothing (a full disk)
 *   eio-fsync  fsync and fdatasync fail with EIO (what reached the disk is unknown)
 * With COUNT, only the next COUNT calls that the mode hits fail, then it acts as off. The file
 * is read again at most every FAULT_POLL_MS; a new line (any change of its text) re-arms COUNT.
 * A missing file means off; an unknown mode means off and is reported on stderr.
 *
 * Which file a descriptor is comes from /proc/self/fd, asked only while a mode is on, so the
 * shim keeps no table of descriptors that open, dup and close would have to maintain.
 */
/* Both pwrite and pwrite64 are interposed by name: with 64-bit file offsets the headers would
 * turn the definition of one into the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAULT_POLL_MS        2      /* the control file is read at most this often */
#define FAULT_LINE_BYTES_MAX 64     /* "eio-fsync 1000000" and room to spare */
#define FAULT_UNLIMITED      (-1LL) /* g_left: no count given */

typedef enum { MODE_OFF, MODE_EIO_WRITE, MODE_ENOSPC, MODE_EIO_FSYNC } fault_mode_t;
typedef enum { CALL_WRITE, CALL_SYNC } call_kind_t;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static char g_dir[PATH_MAX];        /* FG_FAULT_DIR, resolved; "" = shim inactive */
static char g_control[PATH_MAX];    /* FG_FAULT_CONTROL */
static atomic_int g_mode;           /* fault_mode_t */
static atomic_llong g_left;         /* calls still to fail, or FAULT_UNLIMITED */
static atomic_llong g_next_read_ns; /* monotonic time of the next control-file read */
static pthread_mutex_t g_read_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_line[FAULT_LINE_BYTES_MAX]; /* the control line last applied; under g_read_mu */

/* A message on stderr through the real write: the shim's own write would come back here. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...) {
    char msg[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n > 0 && real_write != NULL)
        (void)real_write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

/* dlsym gives an object pointer; POSIX guarantees it converts to the function's type. */
static void resolve(void *fnptr, const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) abort(); /* no libc below us: nothing sensible can run */
    memcpy(fnptr, &f, sizeof f);
}

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;

static void init_once(void) {
    resolve(&real_write, "write");
    resolve(&real_pwrite, "pwrite");
    resolve(&real_pwrite64, "pwrite64");
    resolve(&real_fsync, "fsync");
    resolve(&real_fdatasync, "fdatasync");
    const char *dir = getenv("FG_FAULT_DIR");
    const char *control = getenv("FG_FAULT_CONTROL");
    if (dir == NULL || control == NULL || strlen(control) >= sizeof g_control) return;
    /* /proc/self/fd shows resolved paths, so compare against the resolved directory. */
    if (realpath(dir, g_dir) == NULL) {
        say("faultfs: FG_FAULT_DIR %s: %s; no faults\n", dir, strerror(errno));
        g_dir[0] = '\0';
        return;
    }
    memcpy(g_control, control, strlen(control) + 1);
}

/* Every entry point starts here rather than in a constructor: a write may come from another
 * library's constructor before ours would have run. init_once writes only through say(), so it
 * cannot come back into pthread_once. */
static void faultfs_init(void) {
    pthread_once(&g_init_once, init_once);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Applies a control line (NUL-terminated, trailing newline allowed). */
static void apply_line(const char *line) {
    char mode[FAULT_LINE_BYTES_MAX];
    long long count = FAULT_UNLIMITED;
    _Static_assert(FAULT_LINE_BYTES_MAX == 64, "the %63s below reads at most the line");
    int n = sscanf(line, "%63s %lld", mode, &count);
    fault_mode_t m = MODE_OFF;
    if (n < 1 || strcmp(mode, "off") == 0)
        m = MODE_OFF;
    else if (strcmp(mode, "eio-write") == 0)
        m = MODE_EIO_WRITE;
    else if (strcmp(mode, "enospc") == 0)
        m = MODE_ENOSPC;
    else if (strcmp(mode, "eio-fsync") == 0)
        m = MODE_EIO_FSYNC;
    else
        say("faultfs: unknown mode '%s'; off\n", mode);
    if (n < 2 || count < 0) count = FAULT_UNLIMITED;
    /* Off while the count changes, so no call sees the new mode with the old count. */
    atomic_store(&g_mode, MODE_OFF);
    atomic_store(&g_left, count);
    atomic_store(&g_mode, (int)m);
}

/* Reads the control file when FAULT_POLL_MS have passed; one thread at a time, and the others
 * go on with the mode as it was instead of waiting. */
static void refresh(void) {
    long long t = now_ns();
    if (t < atomic_load(&g_next_read_ns) || pthread_mutex_trylock(&g_read_mu) != 0) return;
    atomic_store(&g_next_read_ns, t + FAULT_POLL_MS * 1000000LL);
    int saved = errno;
    char line[FAULT_LINE_BYTES_MAX] = "off";
    int fd = open(g_control, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = read(fd, line, sizeof line - 1);
        line[got > 0 ? got : 0] = '\0';
        close(fd);
    }
    if (strcmp(line, g_line) != 0) {
        memcpy(g_line, line, sizeof line);
        apply_line(line);
    }
    errno = saved;
    pthread_mutex_unlock(&g_read_mu);
}

/* True when fd is the fault directory or a file under it. */
static bool in_fault_dir(int fd) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return false;
    path[n] = '\0';
    size_t d = strlen(g_dir);
    return strncmp(path, g_dir, d) == 0 && (path[d] == '\0' || path[d] == '/');
}

/* Takes one failure from the count, unless it is used up. */
static bool take_one(void) {
    long long left = atomic_load(&g_left);
    while (left != FAULT_UNLIMITED) {
        if (left <= 0) return false;
        if (atomic_compare_exchange_weak(&g_left, &left, left - 1)) return true;
    }
    return true;
}

/* The errno this call must fail with, or 0 to pass it through. */
static int fault_for(call_kind_t kind, int fd) {
    faultfs_init();
    if (g_dir[0] == '\0') return 0;
    int saved = errno;
    refresh();
    int err = 0;
    switch ((fault_mode_t)atomic_load(&g_mode)) {
    case MODE_OFF: break;
    case MODE_EIO_WRITE: err = kind == CALL_WRITE ? EIO : 0; break;
    case MODE_ENOSPC: err = kind == CALL_WRITE ? ENOSPC : 0; break;
    case MODE_EIO_FSYNC: err = kind == CALL_SYNC ? EIO : 0; break;
    }
    if (err != 0 && !(in_fault_dir(fd) && take_one())) err = 0;
    errno = saved;
    return err;
}

ssize_t write(int fd, const void *buf, size_t n) {
    int err = fault_for(CALL_WRITE, fd);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    int err = fault_for(CALL_WRITE, fd);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    int err = fault_for(CALL_WRITE, fd);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return real_pwrite64(fd, buf, n, off);
}

int fsync(int fd) {
    int err = fault_for(CALL_SYNC, fd);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    int err = fault_for(CALL_SYNC, fd);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return real_fdatasync(fd);
}
