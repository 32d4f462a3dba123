/*
 * Shared helpers of the C test programs: checks that count passes and failures, and small
 * file-system utilities. Include it first: it selects the POSIX feature level.
 */
#ifndef FILEFETCH_TEST_CHECK_H
#define FILEFETCH_TEST_CHECK_H

#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A fresh private directory under $TMPDIR (or /tmp); the path is written into `buf`. */
static inline int make_temp_dir(char *buf, size_t size) {
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    if ((size_t)snprintf(buf, size, "%s/filefetch-c-XXXXXX", base) >= size) {
        return -1;
    }
    return mkdtemp(buf) == NULL ? -1 : 0;
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

static inline int path_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
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

static inline int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a directory tree (the test's temporary directory). */
static inline void remove_tree(const char *dir) {
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
