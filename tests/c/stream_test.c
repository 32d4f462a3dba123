/*
 * filefetch_fetch_to_callback: the data reaches the write callback whole and in order (0 B,
 * 1 B, 1 MiB), beside the progress callback; a callback that takes less (or more) than it
 * was given stops the transfer with FILEFETCH_STATUS_WRITE_ERROR and gets nothing more; the
 * maximum size, the progress callback's abort and the interrupt callback still apply.
 */
#include "check.h"

#define BIG_SIZE (1024 * 1024)

/* What the write callback collects, and how it answers. */
struct sink {
    unsigned char *data; /* BIG_SIZE bytes of room */
    size_t len;          /* bytes taken so far */
    int calls;
    int calls_after_refusal;
    int refused;
    size_t refuse_after; /* refuse the first piece that starts at or after this offset */
    int answer;          /* how to refuse: 0 takes nothing, 1 takes one byte less, 2 one more */
    int stop_after_first; /* for the interrupt callback: set once a piece has arrived */
    int bad_calls;        /* calls with 0 bytes, or more than the file */
};

static void sink_reset(struct sink *s, size_t refuse_after, int answer) {
    s->len = 0;
    s->calls = 0;
    s->calls_after_refusal = 0;
    s->refused = 0;
    s->refuse_after = refuse_after;
    s->answer = answer;
    s->stop_after_first = 0;
    s->bad_calls = 0;
}

static size_t take(const uint8_t *data, size_t len, void *user_data) {
    struct sink *s = user_data;
    s->calls++;
    if (s->refused) {
        s->calls_after_refusal++;
        return 0;
    }
    if (len == 0 || s->len + len > BIG_SIZE) {
        s->bad_calls++;
        s->refused = 1;
        return 0;
    }
    if (s->len >= s->refuse_after) {
        s->refused = 1;
        switch (s->answer) {
        case 0:
            return 0;
        case 1:
            memcpy(s->data + s->len, data, len - 1);
            s->len += len - 1;
            return len - 1;
        default:
            return len + 1;
        }
    }
    memcpy(s->data + s->len, data, len);
    s->len += len;
    s->stop_after_first = 1;
    return len;
}

/* Progress: its `received` never runs ahead of what the write callback has taken. */
struct progress_log {
    int calls;
    int consistent;
    uint64_t last_received;
    uint64_t last_total;
    const struct sink *sink;
    int abort_after; /* return nonzero once received >= this (0: never) */
};

static int log_progress(void *user_data, uint64_t received, uint64_t total) {
    struct progress_log *log = user_data;
    log->calls++;
    if (received < log->last_received || received > total || received != log->sink->len) {
        log->consistent = 0;
    }
    log->last_received = received;
    log->last_total = total;
    return log->abort_after > 0 && received >= (uint64_t)log->abort_after;
}

static int stop_once_data_arrived(void *user_data) {
    const struct sink *s = user_data;
    return s->stop_after_first;
}

int main(void) {
    char root[512], path[1024];
    CHECK(make_temp_dir(root, sizeof root) == 0);
    unsigned char *big = malloc(BIG_SIZE);
    struct sink sink;
    sink.data = malloc(BIG_SIZE);
    CHECK(big != NULL && sink.data != NULL);
    if (big == NULL || sink.data == NULL) {
        free(big);
        free(sink.data);
        return report("stream_test");
    }
    for (size_t i = 0; i < BIG_SIZE; i++) {
        big[i] = (unsigned char)(i * 7 + (i >> 13));
    }
    join_path(path, sizeof path, root, "empty.bin");
    CHECK(write_file(path, "", 0) == 0);
    join_path(path, sizeof path, root, "one.bin");
    CHECK(write_file(path, "x", 1) == 0);
    join_path(path, sizeof path, root, "big.bin");
    CHECK(write_file(path, big, BIG_SIZE) == 0);

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

    /* Every wait bounded: 5 s without data, 60 s in all. */
    filefetch_fetch_options *options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 5000), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 60000), FILEFETCH_STATUS_OK);
    struct progress_log log = {0, 1, 0, 0, &sink, 0};
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, log_progress, &log),
                 FILEFETCH_STATUS_OK);
    const size_t never = (size_t)-1;
    uint64_t size = 12345;

    /* 0 bytes: success, size 0, the write callback never called, progress called. */
    sink_reset(&sink, never, 0);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "empty.bin", options, take,
                                             &sink, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == 0 && sink.calls == 0 && sink.len == 0);
    CHECK(log.calls >= 1 && log.last_total == 0);

    /* 1 byte. */
    sink_reset(&sink, never, 0);
    log.calls = 0;
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "one.bin", options, take, &sink,
                                             &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == 1 && sink.len == 1 && sink.data[0] == 'x' && sink.calls == 1);
    CHECK(log.calls >= 2 && log.last_received == 1 && log.last_total == 1);

    /* 1 MiB: every byte in order; progress follows what the callback took. */
    sink_reset(&sink, never, 0);
    log.calls = 0;
    log.last_received = 0;
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "big.bin", options, take, &sink,
                                             &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == BIG_SIZE && sink.len == BIG_SIZE && memcmp(sink.data, big, BIG_SIZE) == 0);
    CHECK(!sink.refused && sink.bad_calls == 0 && sink.calls >= 1);
    CHECK(log.calls >= 2 && log.consistent);
    CHECK(log.last_received == BIG_SIZE && log.last_total == BIG_SIZE);

    /* A short count stops the transfer: WRITE_ERROR, a message giving the counts, nothing
     * delivered after the refusal, out_size untouched. Taking one byte less, nothing, or one
     * byte more than offered are all refusals; the first after 300000 bytes, or at once. */
    const size_t refuse_at[3] = {300000, 0, 300000};
    for (int answer = 0; answer < 3; answer++) {
        sink_reset(&sink, refuse_at[answer], answer);
        log.calls = 0;
        log.last_received = 0;
        log.consistent = 1;
        size = 777;
        CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "big.bin", options, take,
                                                 &sink, &size),
                     FILEFETCH_STATUS_WRITE_ERROR);
        CHECK(size == 777);
        CHECK(sink.refused && sink.bad_calls == 0 && sink.calls_after_refusal == 0);
        CHECK(sink.len < BIG_SIZE && memcmp(sink.data, big, sink.len) == 0);
        CHECK(strstr(filefetch_last_error(), "write callback took") != NULL);
        /* No progress reported for the refused piece. */
        CHECK(log.last_received <= sink.len);
    }
    CHECK(strcmp(filefetch_strerror(FILEFETCH_STATUS_WRITE_ERROR),
                 "write callback refused the data") == 0);

    /* The server still serves after those cut transfers. */
    sink_reset(&sink, never, 0);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "one.bin", options, take, &sink,
                                             &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == 1 && sink.len == 1);

    /* The maximum size: TOO_LARGE before any call of the write callback. */
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, BIG_SIZE - 1), FILEFETCH_STATUS_OK);
    sink_reset(&sink, never, 0);
    size = 777;
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "big.bin", options, take, &sink,
                                             &size),
                 FILEFETCH_STATUS_TOO_LARGE);
    CHECK(sink.calls == 0 && size == 777);
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, BIG_SIZE), FILEFETCH_STATUS_OK);
    sink_reset(&sink, never, 0);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "big.bin", options, take, &sink,
                                             &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == BIG_SIZE && sink.len == BIG_SIZE);
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, UINT64_MAX), FILEFETCH_STATUS_OK);

    /* The progress callback still aborts: ABORTED, and nothing after it. */
    sink_reset(&sink, never, 0);
    log.calls = 0;
    log.last_received = 0;
    log.abort_after = 1;
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "big.bin", options, take, &sink,
                                             &size),
                 FILEFETCH_STATUS_ABORTED);
    CHECK(sink.calls == 1 && sink.len > 0 && sink.len < BIG_SIZE);
    CHECK(log.last_received == sink.len);
    log.abort_after = 0;

    /* The interrupt callback still interrupts: once data has arrived, before the next read. */
    CHECK_STATUS(filefetch_fetch_options_set_interrupt(options, stop_once_data_arrived, &sink),
                 FILEFETCH_STATUS_OK);
    sink_reset(&sink, never, 0);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "big.bin", options, take, &sink,
                                             &size),
                 FILEFETCH_STATUS_INTERRUPTED);
    CHECK(sink.calls == 1 && sink.len > 0 && sink.len < BIG_SIZE);
    CHECK_STATUS(filefetch_fetch_options_set_interrupt(options, NULL, NULL), FILEFETCH_STATUS_OK);

    /* A missing file: NOT_FOUND, the callback never called. */
    sink_reset(&sink, never, 0);
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, "no-such-file", options, take,
                                             &sink, &size),
                 FILEFETCH_STATUS_NOT_FOUND);
    CHECK(sink.calls == 0);

    filefetch_fetch_options_free(options);
    CHECK_STATUS(filefetch_server_shutdown(server), FILEFETCH_STATUS_OK);
    filefetch_server_free(server);
    remove_tree(root);
    free(big);
    free(sink.data);
    return report("stream_test");
}
