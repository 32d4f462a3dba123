/*
 * NULL for every pointer argument of every function: always FILEFETCH_STATUS_INVALID_ARGUMENT
 * (or nothing, for the *_free functions), never a crash, and out-parameters left alone.
 */
#include "check.h"

#define INVALID FILEFETCH_STATUS_INVALID_ARGUMENT

static int never_called(void *user_data, uint64_t received, uint64_t total) {
    (void)user_data;
    (void)received;
    (void)total;
    return 0;
}

static size_t never_written(const uint8_t *data, size_t len, void *user_data) {
    (void)data;
    (void)user_data;
    return len;
}

int main(void) {
    filefetch_fetch_options *options = NULL;
    filefetch_server_options *server_options = NULL;
    filefetch_server *server = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_new(&server_options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_address(server_options, "127.0.0.1"),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_start(server_options, &server), FILEFETCH_STATUS_OK);
    uint16_t port = 0;
    CHECK_STATUS(filefetch_server_port(server, &port), FILEFETCH_STATUS_OK);

    /* Constructors. */
    CHECK_STATUS(filefetch_fetch_options_new(NULL), INVALID);
    CHECK(strstr(filefetch_last_error(), "out_options") != NULL);
    CHECK_STATUS(filefetch_server_options_new(NULL), INVALID);
    CHECK_STATUS(filefetch_server_start(NULL, &server), INVALID);
    CHECK_STATUS(filefetch_server_start(server_options, NULL), INVALID);

    /* Fetch option setters. */
    CHECK_STATUS(filefetch_fetch_options_set_output(NULL, "x"), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, NULL), INVALID);
    CHECK(strstr(filefetch_last_error(), "path") != NULL);
    CHECK_STATUS(filefetch_fetch_options_set_overwrite(NULL, true), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_fsync(NULL, true), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(NULL, 10), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_connect_timeout_ms(NULL, 10), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(NULL, 10), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_min_rate(NULL, 10, 1000), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_max_size(NULL, 10), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_retries(NULL, 1, 1), INVALID);
    CHECK(strstr(filefetch_last_error(), "options") != NULL);
    CHECK_STATUS(filefetch_fetch_options_set_progress(NULL, never_called, NULL), INVALID);
    CHECK_STATUS(filefetch_fetch_options_set_interrupt(NULL, NULL, NULL), INVALID);

    /* Server option setters. */
    CHECK_STATUS(filefetch_server_options_set_root(NULL, "."), INVALID);
    CHECK_STATUS(filefetch_server_options_set_root(server_options, NULL), INVALID);
    CHECK_STATUS(filefetch_server_options_set_address(NULL, "127.0.0.1"), INVALID);
    CHECK_STATUS(filefetch_server_options_set_address(server_options, NULL), INVALID);
    CHECK_STATUS(filefetch_server_options_set_port(NULL, 0), INVALID);
    CHECK_STATUS(filefetch_server_options_set_max_connections(NULL, 10), INVALID);
    CHECK(strstr(filefetch_last_error(), "options") != NULL);
    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(NULL, 1000), INVALID);
    CHECK_STATUS(filefetch_server_options_set_send_timeout_ms(NULL, 1000), INVALID);
    CHECK_STATUS(filefetch_server_options_set_grace_period_ms(NULL, 1000), INVALID);
    CHECK_STATUS(filefetch_server_options_set_threads(NULL, 1), INVALID);
    CHECK_STATUS(filefetch_server_options_set_proxy_protocol(NULL, true), INVALID);
    CHECK_STATUS(filefetch_server_options_set_file_cache_ms(NULL, 1000), INVALID);

    /* Fetching: each argument NULL in turn; the out-parameters stay as they were. */
    uint64_t size = 777;
    CHECK_STATUS(filefetch_fetch(NULL, port, "x", options, &size), INVALID);
    CHECK(strstr(filefetch_last_error(), "host") != NULL);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, NULL, options, &size), INVALID);
    CHECK(strstr(filefetch_last_error(), "name") != NULL);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "x", NULL, &size), INVALID);
    CHECK(strstr(filefetch_last_error(), "options") != NULL);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "x", options, NULL), INVALID);
    CHECK(strstr(filefetch_last_error(), "out_size") != NULL);
    CHECK(size == 777);

    uint8_t sentinel = 0;
    uint8_t *data = &sentinel;
    size_t len = 777;
    CHECK_STATUS(filefetch_fetch_bytes(NULL, port, "x", options, &data, &len), INVALID);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, NULL, options, &data, &len), INVALID);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "x", NULL, &data, &len), INVALID);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "x", options, NULL, &len), INVALID);
    CHECK(strstr(filefetch_last_error(), "out_data") != NULL);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "x", options, &data, NULL), INVALID);
    CHECK(strstr(filefetch_last_error(), "out_len") != NULL);
    CHECK(data == &sentinel && len == 777);

    size = 777;
    CHECK_STATUS(filefetch_fetch_to_callback(NULL, port, "x", options, never_written, NULL, &size),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "host") != NULL);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, NULL, options, never_written,
                                             NULL, &size),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "name") != NULL);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "x", NULL, never_written, NULL,
                                             &size),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "options") != NULL);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "x", options, NULL, NULL, &size),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "write_callback") != NULL);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "x", options, never_written,
                                             NULL, NULL),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "out_size") != NULL);
    CHECK(size == 777);
    /* user_data may be NULL: the fetch goes ahead (and finds no such file). */
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "no-such-file", options,
                                             never_written, NULL, &size),
                 FILEFETCH_STATUS_NOT_FOUND);
    CHECK(size == 777);

    /* Many files: NULL names and statuses only with a count of 0; sizes may be NULL. */
    const char *names[] = {"x", NULL};
    filefetch_status statuses[2] = {FILEFETCH_STATUS_PANIC, FILEFETCH_STATUS_PANIC};
    uint64_t sizes[2] = {777, 777};
    CHECK_STATUS(filefetch_fetch_many(NULL, port, names, 1, options, 0, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "host") != NULL);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, NULL, 1, options, 0, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "names") != NULL);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, names, 2, options, 0, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "names[1]") != NULL);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, names, 1, NULL, 0, statuses, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "options") != NULL);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, names, 1, options, 0, NULL, sizes),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "statuses") != NULL);
    CHECK(statuses[0] == FILEFETCH_STATUS_PANIC && sizes[0] == 777);
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, NULL, 0, options, 0, NULL, NULL),
                 FILEFETCH_STATUS_OK);
    /* sizes NULL: the fetch goes ahead (and finds no such file). */
    CHECK_STATUS(filefetch_fetch_many("127.0.0.1", port, names, 1, options, 0, statuses, NULL),
                 FILEFETCH_STATUS_NOT_FOUND);
    CHECK(statuses[0] == FILEFETCH_STATUS_NOT_FOUND);

    /* The server functions. */
    uint16_t out_port = 7;
    CHECK_STATUS(filefetch_server_port(NULL, &out_port), INVALID);
    CHECK_STATUS(filefetch_server_port(server, NULL), INVALID);
    CHECK(out_port == 7);
    CHECK_STATUS(filefetch_server_abort(NULL), INVALID);
    CHECK(strstr(filefetch_last_error(), "server") != NULL);
    CHECK_STATUS(filefetch_server_stop(NULL), INVALID);
    CHECK_STATUS(filefetch_server_shutdown(NULL), INVALID);
    CHECK_STATUS(filefetch_serve(NULL), INVALID);

    /* The *_free functions accept NULL and do nothing. */
    filefetch_fetch_options_free(NULL);
    filefetch_server_options_free(NULL);
    filefetch_server_free(NULL);
    filefetch_bytes_free(NULL);
    CHECK(1);

    /* The strings returned never are NULL. */
    CHECK(filefetch_version() != NULL);
    CHECK(filefetch_last_error() != NULL);
    CHECK(filefetch_strerror(FILEFETCH_STATUS_INVALID_ARGUMENT) != NULL);

    /* Everything still works after all that. */
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "no-such-file", options, &data, &len),
                 FILEFETCH_STATUS_NOT_FOUND);

    filefetch_server_free(server);
    filefetch_server_options_free(server_options);
    filefetch_fetch_options_free(options);
    return report("null_test");
}
