/*
 * filefetch_fetch_many: several files from our own server on 127.0.0.1 into a directory,
 * `jobs` at a time; each file's status and size; a missing file among others; two names for
 * the same destination; an interrupt callback; and every refusal of the call as a whole
 * (NULL arguments, `jobs` out of range, several names and an output that is not a directory,
 * one digest for several files), which writes no status or size.
 */
#include "check.h"

#define BIG_SIZE (256 * 1024 + 3)
#define INVALID FILEFETCH_STATUS_INVALID_ARGUMENT
/* What no file's status is: the arrays are filled with it to see what was written. */
#define UNWRITTEN FILEFETCH_STATUS_PANIC
#define UNWRITTEN_SIZE 777u

static const char HELLO[] = "hello, world\n";
static const char OTHER[] = "another a.txt, in sub/\n";
static const char BYE[] = "bye\n";

/* The SHA-256 digest of HELLO. */
#define HELLO_SHA256 "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020"
#define OTHER_SHA256 "0000000000000000000000000000000000000000000000000000000000000000"

static int make_dir(const char *path) {
#ifdef _WIN32
    return _mkdir(path);
#else
    return mkdir(path, 0700);
#endif
}

/* Returns the int behind `user_data`; reads only, so any number of threads may call it. */
static int interrupt_with(void *user_data) {
    return *(const int *)user_data;
}

static int count_progress(void *user_data, uint64_t received, uint64_t total) {
    (void)received;
    (void)total;
    (*(int *)user_data)++;
    return 0;
}

static void unwritten(filefetch_status *statuses, uint64_t *sizes, size_t count) {
    for (size_t i = 0; i < count; i++) {
        statuses[i] = UNWRITTEN;
        sizes[i] = UNWRITTEN_SIZE;
    }
}

/* True when nothing was written to the first `count` entries. */
static int untouched(const filefetch_status *statuses, const uint64_t *sizes, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (statuses[i] != UNWRITTEN || sizes[i] != UNWRITTEN_SIZE) {
            return 0;
        }
    }
    return 1;
}

/* A fresh, empty output directory for one case, set as the options' output. */
static void fresh_output(filefetch_fetch_options *options, const char *out, const char *name,
                         char *dir, size_t size) {
    join_path(dir, size, out, name);
    CHECK(make_dir(dir) == 0);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, dir), FILEFETCH_STATUS_OK);
}

static int starts_with(const char *text, const char *prefix) {
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

int main(void) {
    char root[512], out[512], dir[1024], path[1024];
    CHECK(make_temp_dir(root, sizeof root) == 0);
    CHECK(make_temp_dir(out, sizeof out) == 0);

    unsigned char *big = malloc(BIG_SIZE);
    CHECK(big != NULL);
    if (big == NULL) {
        return report("fetch_many_test");
    }
    for (size_t i = 0; i < BIG_SIZE; i++) {
        big[i] = (unsigned char)(i * 7 + (i >> 9));
    }
    join_path(path, sizeof path, root, "a.txt");
    CHECK(write_file(path, HELLO, strlen(HELLO)) == 0);
    join_path(path, sizeof path, root, "b.txt");
    CHECK(write_file(path, BYE, strlen(BYE)) == 0);
    join_path(path, sizeof path, root, "big.bin");
    CHECK(write_file(path, big, BIG_SIZE) == 0);
    join_path(path, sizeof path, root, "empty.txt");
    CHECK(write_file(path, "", 0) == 0);
    join_path(dir, sizeof dir, root, "sub");
    CHECK(make_dir(dir) == 0);
    join_path(path, sizeof path, dir, "a.txt");
    CHECK(write_file(path, OTHER, strlen(OTHER)) == 0);

    /* A server of our own on 127.0.0.1, port 0. */
    filefetch_server_options *server_options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&server_options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_root(server_options, root), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_address(server_options, "127.0.0.1"),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_port(server_options, 0), FILEFETCH_STATUS_OK);
    filefetch_server *server = NULL;
    CHECK_STATUS(filefetch_server_start(server_options, &server), FILEFETCH_STATUS_OK);
    filefetch_server_options_free(server_options);
    uint16_t port = 0;
    CHECK_STATUS(filefetch_server_port(server, &port), FILEFETCH_STATUS_OK);
    CHECK(port != 0);

    /* Every wait bounded. */
    filefetch_fetch_options *options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 5000), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_connect_timeout_ms(options, 5000),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 60000), FILEFETCH_STATUS_OK);

    filefetch_status statuses[8];
    uint64_t sizes[8];

    /* Three files, two at a time, into a directory; the progress callback is not called. */
    int progress_calls = 0;
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, count_progress, &progress_calls),
                 FILEFETCH_STATUS_OK);
    fresh_output(options, out, "three", dir, sizeof dir);
    const char *three[] = {"a.txt", "big.bin", "b.txt"};
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, three, 3, options, 2, statuses, sizes),
                 FILEFETCH_STATUS_OK);
    CHECK(statuses[0] == FILEFETCH_STATUS_OK && statuses[1] == FILEFETCH_STATUS_OK &&
          statuses[2] == FILEFETCH_STATUS_OK);
    CHECK(sizes[0] == strlen(HELLO) && sizes[1] == BIG_SIZE && sizes[2] == strlen(BYE));
    CHECK(untouched(statuses + 3, sizes + 3, 5)); /* nothing past `count` */
    join_path(path, sizeof path, dir, "a.txt");
    CHECK(file_equals(path, HELLO, strlen(HELLO)));
    join_path(path, sizeof path, dir, "big.bin");
    CHECK(file_equals(path, big, BIG_SIZE));
    join_path(path, sizeof path, dir, "b.txt");
    CHECK(file_equals(path, BYE, strlen(BYE)));
    CHECK(count_entries(dir) == 3);
    CHECK(progress_calls == 0);
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, NULL, NULL), FILEFETCH_STATUS_OK);

    /* The default number of jobs (0), the most (64), and sizes NULL. */
    fresh_output(options, out, "defaults", dir, sizeof dir);
    const char *two[] = {"a.txt", "empty.txt"};
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, options, 0, statuses, NULL),
                 FILEFETCH_STATUS_OK);
    CHECK(statuses[0] == FILEFETCH_STATUS_OK && statuses[1] == FILEFETCH_STATUS_OK);
    join_path(path, sizeof path, dir, "empty.txt");
    CHECK(path_exists(path) && file_equals(path, "", 0));
    fresh_output(options, out, "most", dir, sizeof dir);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, three, 3, options, 64, statuses, sizes),
                 FILEFETCH_STATUS_OK);
    CHECK(sizes[1] == BIG_SIZE && count_entries(dir) == 3);

    /* Fetching again into the same directory: each file exists, none is replaced. */
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, three, 3, options, 2, statuses, sizes),
                 FILEFETCH_STATUS_EXISTS);
    CHECK(statuses[0] == FILEFETCH_STATUS_EXISTS && statuses[1] == FILEFETCH_STATUS_EXISTS &&
          statuses[2] == FILEFETCH_STATUS_EXISTS);
    CHECK(sizes[0] == 0 && sizes[1] == 0 && sizes[2] == 0);
    CHECK(starts_with(filefetch_last_error(), "a.txt: "));

    /* A missing file among others: its own status, the others land; the call returns the
     * first failure's status, and the message names that file. */
    fresh_output(options, out, "missing", dir, sizeof dir);
    const char *with_missing[] = {"a.txt", "no-such-file.txt", "b.txt", "neither.txt"};
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(
        filefetch_fetch_many("127.0.0.1", port, with_missing, 4, options, 2, statuses, sizes),
        FILEFETCH_STATUS_NOT_FOUND);
    CHECK(starts_with(filefetch_last_error(), "no-such-file.txt: "));
    CHECK(strstr(filefetch_last_error(), "2 of 4") != NULL);
    CHECK(statuses[0] == FILEFETCH_STATUS_OK && statuses[1] == FILEFETCH_STATUS_NOT_FOUND &&
          statuses[2] == FILEFETCH_STATUS_OK && statuses[3] == FILEFETCH_STATUS_NOT_FOUND);
    CHECK(sizes[0] == strlen(HELLO) && sizes[1] == 0 && sizes[2] == strlen(BYE) &&
          sizes[3] == 0);
    CHECK(count_entries(dir) == 2);
    join_path(path, sizeof path, dir, "b.txt");
    CHECK(file_equals(path, BYE, strlen(BYE)));

    /* A name that cannot be requested fails alone, with INVALID_ARGUMENT as its status. */
    fresh_output(options, out, "bad-name", dir, sizeof dir);
    const char *with_bad[] = {"a.txt", ""};
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, with_bad, 2, options, 2, statuses, sizes),
                 INVALID);
    CHECK(statuses[0] == FILEFETCH_STATUS_OK && statuses[1] == INVALID);
    CHECK(sizes[0] == strlen(HELLO) && sizes[1] == 0);

    /* Two names with the same last component: the first lands, the second fails with EXISTS
     * without replacing it, even when overwriting. */
    CHECK_STATUS(filefetch_fetch_options_set_overwrite(options, true), FILEFETCH_STATUS_OK);
    fresh_output(options, out, "same", dir, sizeof dir);
    const char *same[] = {"a.txt", "b.txt", "sub/a.txt"};
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, same, 3, options, 2, statuses, sizes),
                 FILEFETCH_STATUS_EXISTS);
    CHECK(statuses[0] == FILEFETCH_STATUS_OK && statuses[1] == FILEFETCH_STATUS_OK &&
          statuses[2] == FILEFETCH_STATUS_EXISTS);
    CHECK(sizes[0] == strlen(HELLO) && sizes[2] == 0);
    CHECK(starts_with(filefetch_last_error(), "sub/a.txt: "));
    join_path(path, sizeof path, dir, "a.txt");
    CHECK(file_equals(path, HELLO, strlen(HELLO)));
    CHECK(count_entries(dir) == 2);
    CHECK_STATUS(filefetch_fetch_options_set_overwrite(options, false), FILEFETCH_STATUS_OK);

    /* An interrupt callback that says stop: no file is fetched, each says INTERRUPTED. It
     * may be called from several worker threads at once; this one only reads. */
    int stop = 1;
    CHECK_STATUS(filefetch_fetch_options_set_interrupt(options, interrupt_with, &stop),
                 FILEFETCH_STATUS_OK);
    fresh_output(options, out, "interrupted", dir, sizeof dir);
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, three, 3, options, 2, statuses, sizes),
                 FILEFETCH_STATUS_INTERRUPTED);
    CHECK(statuses[0] == FILEFETCH_STATUS_INTERRUPTED &&
          statuses[1] == FILEFETCH_STATUS_INTERRUPTED &&
          statuses[2] == FILEFETCH_STATUS_INTERRUPTED);
    CHECK(sizes[0] == 0 && sizes[1] == 0 && sizes[2] == 0);
    CHECK(count_entries(dir) == 0);
    /* The same callback saying go on changes nothing. */
    stop = 0;
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, three, 3, options, 2, statuses, sizes),
                 FILEFETCH_STATUS_OK);
    CHECK(count_entries(dir) == 3);
    CHECK_STATUS(filefetch_fetch_options_set_interrupt(options, NULL, NULL), FILEFETCH_STATUS_OK);

    /* A SHA-256 digest checks a single file; with several names the call is refused. */
    fresh_output(options, out, "digest", dir, sizeof dir);
    const char *one[] = {"a.txt"};
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, OTHER_SHA256), FILEFETCH_STATUS_OK);
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, one, 1, options, 1, statuses, sizes),
                 FILEFETCH_STATUS_CHECKSUM_MISMATCH);
    CHECK(statuses[0] == FILEFETCH_STATUS_CHECKSUM_MISMATCH && sizes[0] == 0);
    CHECK(count_entries(dir) == 0);
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, HELLO_SHA256), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, one, 1, options, 1, statuses, sizes),
                 FILEFETCH_STATUS_OK);
    CHECK(statuses[0] == FILEFETCH_STATUS_OK && sizes[0] == strlen(HELLO));
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, options, 1, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "SHA-256") != NULL);
    CHECK(untouched(statuses, sizes, 2));
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, NULL), FILEFETCH_STATUS_OK);

    /* One name may go to a file path; several need an existing directory. */
    join_path(path, sizeof path, out, "single.txt");
    CHECK_STATUS(filefetch_fetch_options_set_output(options, path), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, one, 1, options, 1, statuses, sizes),
                 FILEFETCH_STATUS_OK);
    CHECK(file_equals(path, HELLO, strlen(HELLO)) && sizes[0] == strlen(HELLO));
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, options, 2, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "output") != NULL);
    CHECK(untouched(statuses, sizes, 2));
    join_path(path, sizeof path, out, "no-such-directory");
    CHECK_STATUS(filefetch_fetch_options_set_output(options, path), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, options, 2, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "output") != NULL);
    CHECK(untouched(statuses, sizes, 2) && !path_exists(path));

    /* `jobs` above 64. */
    fresh_output(options, out, "refused", dir, sizeof dir);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, options, 65, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "jobs") != NULL);
    CHECK(untouched(statuses, sizes, 2));

    /* NULL arguments, a NULL name, a name that is not UTF-8. */
    CHECK_STATUS(filefetch_fetch_many(NULL, port, two, 2, options, 2, statuses, sizes), INVALID);
    CHECK(strstr(filefetch_last_error(), "host") != NULL);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, NULL, 2, options, 2, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "names") != NULL);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, NULL, 2, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "options") != NULL);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, options, 2, NULL, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "statuses") != NULL);
    const char *null_name[] = {"a.txt", NULL};
    CHECK_STATUS(
        filefetch_fetch_many("127.0.0.1", port, null_name, 2, options, 2, statuses, sizes),
        INVALID);
    CHECK(strstr(filefetch_last_error(), "names[1]") != NULL);
    const char *not_utf8[] = {"\xff\xfe", "a.txt"};
    CHECK_STATUS(
        filefetch_fetch_many("127.0.0.1", port, not_utf8, 2, options, 2, statuses, sizes),
        INVALID);
    CHECK(strstr(filefetch_last_error(), "names[0]") != NULL);
    CHECK(untouched(statuses, sizes, 2));
    CHECK(count_entries(dir) == 0);

    /* An empty list does nothing; its arrays may be NULL. */
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, NULL, 0, options, 0, NULL, NULL),
                 FILEFETCH_STATUS_OK);

    /* Once the server is gone, each file says so. */
    CHECK_STATUS(filefetch_server_abort(server), FILEFETCH_STATUS_OK);
    unwritten(statuses, sizes, 8);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, two, 2, options, 2, statuses, sizes),
                 FILEFETCH_STATUS_CONNECTION);
    CHECK(statuses[0] == FILEFETCH_STATUS_CONNECTION &&
          statuses[1] == FILEFETCH_STATUS_CONNECTION);
    CHECK(count_entries(dir) == 0);
    filefetch_server_free(server);

    filefetch_fetch_options_free(options);
    free(big);
    remove_tree(root);
    remove_tree(out);
    return report("fetch_many_test");
}
