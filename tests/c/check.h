/*
 * Shared helpers of the C test programs: checks that count passes and failures, small
 * file-system utilities, and the few system calls the tests make (sockets, sleeping, a
 * clock) in a form that builds both on POSIX systems and on Windows (mingw-w64). Include it
 * first: it selects the POSIX feature level, or the Windows headers.
 */
#ifndef FILEFETCH_TEST_CHECK_H
#define FILEFETCH_TEST_CHECK_H

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <direct.h>
#else
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "filefetch.h"

static int checks_passed;
static int checks_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            checks_passed++;                                                         \
        } else {                                                                     \
            checks_failed++;                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* Checks that `expr` returns the status `want`; on a mismatch prints both and the message. */
#define CHECK_STATUS(expr, want)                                                        \
    do {                                                                                \
        filefetch_status got_ = (expr);                                                 \
        if (got_ == (want)) {                                                           \
            checks_passed++;                                                            \
        } else {                                                                        \
            checks_failed++;                                                            \
            fprintf(stderr, "%s:%d: %s\n  gave %d (%s: %s), expected %d (%s)\n",        \
                    __FILE__, __LINE__, #expr, (int)got_, filefetch_strerror((int)got_), \
                    filefetch_last_error(), (int)(want), filefetch_strerror((int)(want)));\
        }                                                                               \
    } while (0)

/* Prints the summary line run-c.sh adds up, and gives the exit code. */
static inline int report(const char *program) {
    printf("%s: %d passed, %d failed\n", program, checks_passed, checks_failed);
    return checks_failed == 0 ? 0 : 1;
}

/* A fresh private directory under $TMPDIR or /tmp (on Windows under %TEMP%); the path is
 * written into `buf`. */
static inline int make_temp_dir(char *buf, size_t size) {
#ifdef _WIN32
    const char *base = getenv("TEMP");
    if (base == NULL || base[0] == '\0') {
        base = ".";
    }
    /* No mkdtemp: try names made of the process id and a counter until one is new. */
    for (unsigned attempt = 0; attempt < 1000; attempt++) {
        if ((size_t)snprintf(buf, size, "%s\\filefetch-c-%lu-%u", base,
                             (unsigned long)GetCurrentProcessId(), attempt) >= size) {
            return -1;
        }
        if (_mkdir(buf) == 0) {
            return 0;
        }
        if (errno != EEXIST) {
            return -1;
        }
    }
    return -1;
#else
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    if ((size_t)snprintf(buf, size, "%s/filefetch-c-XXXXXX", base) >= size) {
        return -1;
    }
    return mkdtemp(buf) == NULL ? -1 : 0;
#endif
}

static inline void join_path(char *buf, size_t size, const char *dir, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

static inline int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    size_t written = fwrite(data, 1, len, f);
    int closed = fclose(f);
    return (written == len && closed == 0) ? 0 : -1;
}

/* Reads a whole file into a malloc'd buffer (NULL on failure); its size goes to *len. */
static inline unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, used = 0;
    unsigned char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + used, 1, cap - used, f);
        used += n;
        if (n == 0) {
            break;
        }
        if (used == cap) {
            unsigned char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    *len = used;
    return buf;
}

/* True when the file's contents are exactly `data`. */
static inline int file_equals(const char *path, const void *data, size_t len) {
    size_t got_len = 0;
    unsigned char *got = read_file(path, &got_len);
    int same = got != NULL && got_len == len && (len == 0 || memcmp(got, data, len) == 0);
    free(got);
    return same;
}

/* The entry itself, not what a symbolic link points to (Windows has no lstat). */
static inline int stat_entry(const char *path, struct stat *st) {
#ifdef _WIN32
    return stat(path, st);
#else
    return lstat(path, st);
#endif
}

static inline int path_exists(const char *path) {
    struct stat st;
    return stat_entry(path, &st) == 0;
}

/* Number of entries in a directory besides "." and "..": to see nothing was left behind. */
static inline int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            count++;
        }
    }
    closedir(d);
    return count;
}

/* Removes a directory tree (the test's temporary directory), without following links. */
static inline void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *entry;
        while ((entry = readdir(d)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
                continue;
            }
            char path[4096];
            struct stat st;
            join_path(path, sizeof path, dir, entry->d_name);
            if (stat_entry(path, &st) == 0 && S_ISDIR(st.st_mode)) {
                remove_tree(path);
            } else {
                remove(path);
            }
        }
        closedir(d);
    }
#ifdef _WIN32
    _rmdir(dir);
#else
    rmdir(dir);
#endif
}

/* --- sockets, sleeping and a clock, the same on POSIX and on Windows ------------------ */

#ifdef _WIN32
typedef SOCKET socket_t;
#define NO_SOCKET INVALID_SOCKET
/* Windows has no SIGPIPE: a send on a closed connection fails with an error. */
#define MSG_NOSIGNAL 0
#else
typedef int socket_t;
#define NO_SOCKET (-1)
#endif

/* Starts the socket library (WSAStartup on Windows); call once before the first socket. */
static inline int sockets_init(void) {
#ifdef _WIN32
    WSADATA wsa;
    return WSAStartup(MAKEWORD(2, 2), &wsa) == 0 ? 0 : -1;
#else
    return 0;
#endif
}

static inline void close_socket(socket_t s) {
#ifdef _WIN32
    closesocket(s);
#else
    close(s);
#endif
}

/* send(2) and recv(2) on byte buffers; the count transferred, or -1. */
static inline long socket_send(socket_t s, const void *data, size_t len, int flags) {
#ifdef _WIN32
    return send(s, (const char *)data, (int)(len > INT32_MAX ? INT32_MAX : len), flags);
#else
    return (long)send(s, data, len, flags);
#endif
}

static inline long socket_recv(socket_t s, void *buf, size_t len) {
#ifdef _WIN32
    return recv(s, (char *)buf, (int)(len > INT32_MAX ? INT32_MAX : len), 0);
#else
    return (long)recv(s, buf, len, 0);
#endif
}

/* Bounds every receive on `s` to `seconds` (SO_RCVTIMEO: a timeval, or milliseconds). */
static inline int socket_recv_timeout(socket_t s, int seconds) {
#ifdef _WIN32
    DWORD ms = (DWORD)seconds * 1000;
    return setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&ms, sizeof ms);
#else
    struct timeval tv = {seconds, 0};
    return setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
#endif
}

/* Sets the receive buffer size (SO_RCVBUF). */
static inline int socket_recv_buffer(socket_t s, int bytes) {
#ifdef _WIN32
    return setsockopt(s, SOL_SOCKET, SO_RCVBUF, (const char *)&bytes, sizeof bytes);
#else
    return setsockopt(s, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
#endif
}

static inline void sleep_ms(unsigned ms) {
#ifdef _WIN32
    Sleep(ms);
#else
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
#endif
}

/* Seconds on a monotonic clock, for measuring how long something took. */
static inline double monotonic_seconds(void) {
#ifdef _WIN32
    LARGE_INTEGER count, frequency;
    QueryPerformanceCounter(&count);
    QueryPerformanceFrequency(&frequency);
    return (double)count.QuadPart / (double)frequency.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
#endif
}

#endif
