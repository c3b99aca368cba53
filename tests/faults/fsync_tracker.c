/*
 * fsync_tracker.so — LD_PRELOAD shim that makes a *host* crash reproducible.
 *
 * Killing redis-server with SIGKILL loses nothing Redis wrote with write(2): the
 * bytes sit in the kernel's page cache and reach the disk anyway. What a power
 * loss or kernel panic loses is whatever was not yet fsynced. This shim records,
 * for every successful fsync/fdatasync of a regular file, the file's size *before*
 * the call (a lower bound of what that call made durable) in $FSYNC_TRACKER_LOG as
 * "<size> <path>". tests/faults/stack.py then emulates the host crash: SIGKILL,
 * and truncate every append-only file to its last durable size.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void record(int fd, long long size) {
    const char *log = getenv("FSYNC_TRACKER_LOG");
    char link[64], path[4096], line[4200];
    ssize_t n;
    int len, out;
    if (log == NULL) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    len = snprintf(line, sizeof line, "%lld %s\n", size, path);
    pthread_mutex_lock(&lock);
    out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out >= 0) {
        if (write(out, line, (size_t)len) < 0) { /* best effort */ }
        close(out);
    }
    pthread_mutex_unlock(&lock);
}

static int track(int fd, int (*real)(int)) {
    struct stat st;
    int regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    int rc = real(fd);
    if (rc == 0 && regular) record(fd, (long long)st.st_size);
    return rc;
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return track(fd, real);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return track(fd, real);
}
