/*
 * The successful paths of the C API: start a server, fetch to a file and into memory,
 * progress reports, overwriting, a maximum size the file fits in, several threads at once,
 * stopping the server (abort, its old name stop, shutdown); and the SHA-256 digest a fetch
 * may expect, met or not.
 */
#include "check.h"

#include <pthread.h>

#define BIG_SIZE (1024 * 1024 + 17)

static const char HELLO[] = "hello, world\n";

struct progress_log {
    int calls;
    int monotonic;
    uint64_t last_received;
    uint64_t last_total;
};

static int log_progress(void *user_data, uint64_t received, uint64_t total) {
    struct progress_log *log = user_data;
    if (received < log->last_received || received > total) {
        log->monotonic = 0;
    }
    log->calls++;
    log->last_received = received;
    log->last_total = total;
    return 0;
}

struct worker {
    uint16_t port;
    const filefetch_fetch_options *options;
    const unsigned char *expected;
    filefetch_status status;
    int same;
};

/* The SHA-256 digest of HELLO, as sha256sum prints it, in lowercase and in uppercase. */
#define HELLO_SHA256 "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020"
#define HELLO_SHA256_UPPER "853FF93762A06DDBF722C4EBE9DDD66D8F63DDAEA97F521C3ECC20DA7C976020"
#define OTHER_SHA256 "0000000000000000000000000000000000000000000000000000000000000000"

/* The first bytes a write callback received, and how many in all. */
struct collected {
    unsigned char data[64];
    size_t len;
};

static size_t collect(const uint8_t *data, size_t len, void *user_data) {
    struct collected *c = user_data;
    for (size_t i = 0; i < len; i++, c->len++) {
        if (c->len < sizeof c->data) {
            c->data[c->len] = data[i];
        }
    }
    return len;
}

/* A digest expected with filefetch_fetch_options_set_sha256: met, every way of fetching
 * succeeds; missed, every way gives CHECKSUM_MISMATCH, nothing is kept (an existing
 * destination stays, even when overwriting) and no out-parameter is written; NULL removes
 * it; a refused value leaves the digest set before. */
static void check_sha256(uint16_t port) {
    char dir[512], path[1024];
    CHECK(make_temp_dir(dir, sizeof dir) == 0);
    join_path(path, sizeof path, dir, "checked.txt");
    filefetch_fetch_options *options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 30000), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, path), FILEFETCH_STATUS_OK);

    /* Only 64 hexadecimal digits. */
    static const char *const refused[] = {
        "",
        "xyz",
        OTHER_SHA256 "0",                                                   /* 65 digits */
        "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c97602",  /* 63 */
        "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c97602g", /* not hex */
        "\xff\xfe",                                                         /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK_STATUS(filefetch_fetch_options_set_sha256(options, refused[i]),
                     FILEFETCH_STATUS_INVALID_ARGUMENT);
    }
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, "xyz"),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(filefetch_last_error(), "sha256") != NULL);
    CHECK_STATUS(filefetch_fetch_options_set_sha256(NULL, HELLO_SHA256),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);

    /* The right digest, in either case. */
    uint64_t size = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    struct collected got = {{0}, 0};
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, HELLO_SHA256_UPPER),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "hello.txt", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == strlen(HELLO) && file_equals(path, HELLO, strlen(HELLO)));
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, HELLO_SHA256), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == strlen(HELLO) && memcmp(data, HELLO, len) == 0);
    filefetch_bytes_free(data);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "hello.txt", options, collect,
                                             &got, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == strlen(HELLO) && got.len == size && memcmp(got.data, HELLO, size) == 0);

    /* Another digest. */
    CHECK(write_file(path, "mine", 4) == 0);
    CHECK_STATUS(filefetch_fetch_options_set_overwrite(options, true), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, OTHER_SHA256), FILEFETCH_STATUS_OK);
    size = 12345;
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "hello.txt", options, &size),
                 FILEFETCH_STATUS_CHECKSUM_MISMATCH);
    CHECK(strstr(filefetch_last_error(), OTHER_SHA256) != NULL);
    CHECK(strstr(filefetch_last_error(), HELLO_SHA256) != NULL);
    CHECK(size == 12345);
    CHECK(file_equals(path, "mine", 4));
    CHECK(count_entries(dir) == 1);
    data = NULL;
    len = 999;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_CHECKSUM_MISMATCH);
    CHECK(data == NULL && len == 999);
    /* The write callback has had all the data when the mismatch is found. */
    got.len = 0;
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "hello.txt", options, collect,
                                             &got, &size),
                 FILEFETCH_STATUS_CHECKSUM_MISMATCH);
    CHECK(size == 12345 && got.len == strlen(HELLO));

    /* A refused value keeps the digest set before; NULL removes it. */
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, "xyz"),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "hello.txt", options, &size),
                 FILEFETCH_STATUS_CHECKSUM_MISMATCH);
    CHECK(file_equals(path, "mine", 4));
    CHECK_STATUS(filefetch_fetch_options_set_sha256(options, NULL), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "hello.txt", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == strlen(HELLO) && file_equals(path, HELLO, strlen(HELLO)));

    filefetch_fetch_options_free(options);
    remove_tree(dir);
}

static void *fetch_in_thread(void *arg) {
    struct worker *w = arg;
    uint8_t *data = NULL;
    size_t len = 0;
    w->status = filefetch_fetch_bytes("127.0.0.1", w->port, "big.bin", w->options, &data, &len);
    w->same = w->status == FILEFETCH_STATUS_OK && len == BIG_SIZE &&
              memcmp(data, w->expected, BIG_SIZE) == 0;
    filefetch_bytes_free(data);
    return NULL;
}

int main(void) {
    char root[512], out[512], path[1024];
    CHECK(make_temp_dir(root, sizeof root) == 0);
    CHECK(make_temp_dir(out, sizeof out) == 0);

    unsigned char *big = malloc(BIG_SIZE);
    CHECK(big != NULL);
    if (big == NULL) {
        return report("fetch_test");
    }
    for (size_t i = 0; i < BIG_SIZE; i++) {
        big[i] = (unsigned char)(i * 31 + (i >> 11));
    }
    join_path(path, sizeof path, root, "hello.txt");
    CHECK(write_file(path, HELLO, strlen(HELLO)) == 0);
    join_path(path, sizeof path, root, "empty.txt");
    CHECK(write_file(path, "", 0) == 0);
    join_path(path, sizeof path, root, "big.bin");
    CHECK(write_file(path, big, BIG_SIZE) == 0);

    const char *version = filefetch_version();
    CHECK(version != NULL && version[0] != '\0');

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

    /* To a file: the path given as output. */
    filefetch_fetch_options *options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    join_path(path, sizeof path, out, "copy.txt");
    CHECK_STATUS(filefetch_fetch_options_set_output(options, path), FILEFETCH_STATUS_OK);
    uint64_t size = 12345;
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "hello.txt", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == strlen(HELLO));
    CHECK(file_equals(path, HELLO, strlen(HELLO)));

    /* To an existing directory: the name's last component inside it; fsync on. */
    CHECK_STATUS(filefetch_fetch_options_set_output(options, out), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_fsync(options, true), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("localhost", port, "hello.txt", options, &size),
                 FILEFETCH_STATUS_OK);
    join_path(path, sizeof path, out, "hello.txt");
    CHECK(file_equals(path, HELLO, strlen(HELLO)));

    /* An empty file. */
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "empty.txt", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == 0);
    join_path(path, sizeof path, out, "empty.txt");
    CHECK(path_exists(path) && file_equals(path, "", 0));

    /* A large file with progress reports. */
    struct progress_log log = {0, 1, 0, 0};
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, log_progress, &log),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 5000), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_connect_timeout_ms(options, 5000),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "big.bin", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == BIG_SIZE);
    CHECK(log.calls >= 1);
    CHECK(log.monotonic);
    CHECK(log.last_received == BIG_SIZE && log.last_total == BIG_SIZE);
    join_path(path, sizeof path, out, "big.bin");
    CHECK(file_equals(path, big, BIG_SIZE));

    /* Overwriting, when asked: big.bin's content replaced by hello.txt's. */
    int calls_before = log.calls;
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, NULL, NULL), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, path), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_overwrite(options, true), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "hello.txt", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(file_equals(path, HELLO, strlen(HELLO)));
    CHECK(log.calls == calls_before); /* the removed callback was not called again */

    /* Into memory. */
    uint8_t *data = NULL;
    size_t len = 999;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == strlen(HELLO) && memcmp(data, HELLO, len) == 0);
    filefetch_bytes_free(data);
    data = NULL;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "empty.txt", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == 0);
    filefetch_bytes_free(data);

    /* A large file into memory, with progress reports up to its size. */
    struct progress_log bytes_log = {0, 1, 0, 0};
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, log_progress, &bytes_log),
                 FILEFETCH_STATUS_OK);
    data = NULL;
    len = 0;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "big.bin", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == BIG_SIZE && memcmp(data, big, BIG_SIZE) == 0);
    CHECK(bytes_log.calls >= 1 && bytes_log.monotonic);
    CHECK(bytes_log.last_received == BIG_SIZE && bytes_log.last_total == BIG_SIZE);
    filefetch_bytes_free(data);
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, NULL, NULL), FILEFETCH_STATUS_OK);

    /* A maximum size the file fits in changes nothing, to a file or into memory. */
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, BIG_SIZE), FILEFETCH_STATUS_OK);
    data = NULL;
    len = 0;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "big.bin", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == BIG_SIZE && memcmp(data, big, BIG_SIZE) == 0);
    filefetch_bytes_free(data);
    join_path(path, sizeof path, out, "big-again.bin");
    CHECK_STATUS(filefetch_fetch_options_set_output(options, path), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "big.bin", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == BIG_SIZE && file_equals(path, big, BIG_SIZE));
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, UINT64_MAX), FILEFETCH_STATUS_OK);
    /* As do a generous time limit and minimum rate. */
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 60000), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_min_rate(options, 1, 30000), FILEFETCH_STATUS_OK);
    data = NULL;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == strlen(HELLO) && memcmp(data, HELLO, len) == 0);
    filefetch_bytes_free(data);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 0), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_min_rate(options, 0, 0), FILEFETCH_STATUS_OK);

    /* Several threads at once sharing one options handle. */
    struct worker workers[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        workers[i].port = port;
        workers[i].options = options;
        workers[i].expected = big;
        workers[i].status = FILEFETCH_STATUS_PANIC;
        workers[i].same = 0;
        CHECK(pthread_create(&threads[i], NULL, fetch_in_thread, &workers[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        CHECK_STATUS(workers[i].status, FILEFETCH_STATUS_OK);
        CHECK(workers[i].same);
    }
    filefetch_fetch_options_free(options);

    check_sha256(port);

    /* Aborting: the port still reads back; a second stop (either name) is harmless; no more
     * answers. */
    CHECK_STATUS(filefetch_server_abort(server), FILEFETCH_STATUS_OK);
    uint16_t port_after = 0;
    CHECK_STATUS(filefetch_server_port(server, &port_after), FILEFETCH_STATUS_OK);
    CHECK(port_after == port);
    CHECK_STATUS(filefetch_server_abort(server), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_stop(server), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    data = NULL;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_CONNECTION);
    CHECK(data == NULL);
    filefetch_server_free(server);

    /* A graceful shutdown, and freeing a server that still runs. */
    CHECK_STATUS(filefetch_server_options_new(&server_options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_root(server_options, root), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_address(server_options, "[::1]"),
                 FILEFETCH_STATUS_OK);
    server = NULL;
    if (filefetch_server_start(server_options, &server) == FILEFETCH_STATUS_OK) {
        /* IPv6 loopback available: fetch over it. */
        CHECK_STATUS(filefetch_server_port(server, &port), FILEFETCH_STATUS_OK);
        CHECK_STATUS(filefetch_fetch_bytes("::1", port, "hello.txt", options, &data, &len),
                     FILEFETCH_STATUS_OK);
        CHECK(len == strlen(HELLO));
        filefetch_bytes_free(data);
        CHECK_STATUS(filefetch_server_shutdown(server), FILEFETCH_STATUS_OK);
        filefetch_server_free(server);
    }
    CHECK_STATUS(filefetch_server_options_set_address(server_options, "127.0.0.1"),
                 FILEFETCH_STATUS_OK);
    /* filefetch_server_stop, the old name of filefetch_server_abort, still stops a server. */
    CHECK_STATUS(filefetch_server_start(server_options, &server), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_port(server, &port), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    filefetch_bytes_free(data);
    CHECK_STATUS(filefetch_server_stop(server), FILEFETCH_STATUS_OK);
    data = NULL;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_CONNECTION);
    CHECK(data == NULL);
    filefetch_server_free(server);
    CHECK_STATUS(filefetch_server_start(server_options, &server), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_port(server, &port), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "hello.txt", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    filefetch_bytes_free(data);
    filefetch_server_free(server);
    filefetch_server_options_free(server_options);
    filefetch_fetch_options_free(options);

    free(big);
    remove_tree(root);
    remove_tree(out);
    return report("fetch_test");
}
