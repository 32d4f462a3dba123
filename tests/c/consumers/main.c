/*
 * A program that uses libfilefetch as an installed library, built by the two consumer
 * projects beside it (pkgconfig/Makefile, cmake/CMakeLists.txt) against `make install`'s
 * tree. It writes a file into the current directory, serves that directory with the
 * library's server on 127.0.0.1 (port 0), fetches the file back through
 * filefetch_fetch_to_callback, and prints its size. Exits 0 when the bytes match.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <filefetch.h>

#define SIZE 100000

struct sink {
    const unsigned char *expected;
    size_t received;
    int same;
};

static size_t compare(const uint8_t *data, size_t len, void *user_data) {
    struct sink *sink = user_data;
    if (sink->received + len > SIZE || memcmp(data, sink->expected + sink->received, len) != 0) {
        sink->same = 0;
    }
    sink->received += len;
    return len;
}

static int failed(const char *what, filefetch_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, filefetch_strerror((int)status), filefetch_last_error());
    return 1;
}

int main(void) {
    static unsigned char data[SIZE];
    for (size_t i = 0; i < SIZE; i++) {
        data[i] = (unsigned char)(i * 13 + 5);
    }
    const char *name = "filefetch-consumer.bin";
    FILE *f = fopen(name, "wb");
    if (f == NULL || fwrite(data, 1, SIZE, f) != SIZE || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", name);
        return 1;
    }

    int rc = 1;
    struct sink sink = {data, 0, 1};
    uint64_t size = 0;
    uint16_t port = 0;
    filefetch_server_options *server_options = NULL;
    filefetch_server *server = NULL;
    filefetch_fetch_options *options = NULL;
    filefetch_status st = filefetch_server_options_new(&server_options);
    if (st == FILEFETCH_STATUS_OK) st = filefetch_server_options_set_root(server_options, ".");
    if (st == FILEFETCH_STATUS_OK) {
        st = filefetch_server_options_set_address(server_options, "127.0.0.1");
    }
    if (st == FILEFETCH_STATUS_OK) st = filefetch_server_options_set_port(server_options, 0);
    if (st == FILEFETCH_STATUS_OK) st = filefetch_server_start(server_options, &server);
    if (st == FILEFETCH_STATUS_OK) st = filefetch_server_port(server, &port);
    if (st != FILEFETCH_STATUS_OK) {
        rc = failed("server", st);
        goto done;
    }

    /* Every wait bounded: 5 s without data, 30 s in all. */
    st = filefetch_fetch_options_new(&options);
    if (st == FILEFETCH_STATUS_OK) st = filefetch_fetch_options_set_timeout_ms(options, 5000);
    if (st == FILEFETCH_STATUS_OK) st = filefetch_fetch_options_set_max_time_ms(options, 30000);
    if (st == FILEFETCH_STATUS_OK) {
        st = filefetch_fetch_to_callback("127.0.0.1", port, name, options, compare, &sink, &size);
    }
    if (st != FILEFETCH_STATUS_OK) {
        rc = failed("fetch", st);
        goto done;
    }
    printf("libfilefetch %s: fetched %llu bytes\n", filefetch_version(), (unsigned long long)size);
    rc = (size == SIZE && sink.received == SIZE && sink.same) ? 0 : 1;
    if (rc != 0) {
        fprintf(stderr, "the bytes delivered differ from the file\n");
    }

done:
    filefetch_fetch_options_free(options);
    if (server != NULL) {
        filefetch_server_shutdown(server);
    }
    filefetch_server_free(server);
    filefetch_server_options_free(server_options);
    remove(name);
    return rc;
}
