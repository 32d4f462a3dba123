/*
 * Every status in the situation that really produces it, against our own server or tiny
 * fake servers on 127.0.0.1 that misbehave on purpose; after each failure, the out-parameters
 * are untouched, a message is available and no file is left behind.
 */
#include "check.h"

#include <pthread.h>

/* What a fake server does after reading the request. */
enum fake_mode {
    FAKE_BAD_MAGIC,   /* a header with the wrong magic number */
    FAKE_SHORT_BODY,  /* announces 100 bytes, sends 10, closes */
    FAKE_SHORT_HEAD,  /* 3 bytes of header, closes */
    FAKE_EXCESS,      /* announces 4 bytes, sends 6 */
    FAKE_CLOSE,       /* closes without a response */
    FAKE_SILENT,      /* says nothing until the client goes away */
    FAKE_DRIP,        /* announces 1000 bytes, then sends one every 50 ms */
};

struct fake_server {
    socket_t listener;
    uint16_t port;
    enum fake_mode mode;
    pthread_t thread;
};

static void send_all(socket_t fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        long n = socket_send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void *fake_serve(void *arg) {
    struct fake_server *fake = arg;
    socket_t conn = accept(fake->listener, NULL, NULL);
    if (conn == NO_SOCKET) {
        return NULL;
    }
    /* Every wait bounded: at most 10 s for anything from the client. */
    socket_recv_timeout(conn, 10);
    unsigned char request[5 + 1024];
    size_t got = 0, want = 5;
    while (got < want) {
        long n = socket_recv(conn, request + got, want - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        if (got == 5) {
            want = 5 + (((size_t)request[3] << 8) | request[4]);
        }
    }
    static const unsigned char bad_magic[8] = {0x12, 0x34, 2, 1, 0, 0, 0, 0};
    static const unsigned char short_body[8 + 10] = {0x49, 0x7E, 2, 1, 0, 0, 0, 100,
                                                     'p', 'a', 'r', 't', 'i', 'a', 'l'};
    static const unsigned char excess[8 + 6] = {0x49, 0x7E, 2, 1, 0, 0, 0, 4,
                                                'a', 'b', 'c', 'd', 'e', 'f'};
    char sink[64];
    switch (fake->mode) {
    case FAKE_BAD_MAGIC:
        send_all(conn, bad_magic, sizeof bad_magic);
        break;
    case FAKE_SHORT_BODY:
        send_all(conn, short_body, sizeof short_body);
        break;
    case FAKE_SHORT_HEAD:
        send_all(conn, short_body, 3);
        break;
    case FAKE_EXCESS:
        send_all(conn, excess, sizeof excess);
        break;
    case FAKE_CLOSE:
        break;
    case FAKE_SILENT:
        /* Returns when the client closes (or after the 10 s bound). */
        while (socket_recv(conn, sink, sizeof sink) > 0) {
        }
        break;
    case FAKE_DRIP: {
        /* 20 bytes a second; ends once the client has gone (a send fails) or after 50 s. */
        static const unsigned char drip_head[8] = {0x49, 0x7E, 2, 1, 0, 0, 0x03, 0xE8};
        send_all(conn, drip_head, sizeof drip_head);
        for (int i = 0; i < 1000; i++) {
            if (socket_send(conn, "d", 1, MSG_NOSIGNAL) != 1) {
                break;
            }
            sleep_ms(50);
        }
        break;
    }
    }
    close_socket(conn);
    return NULL;
}

/* Listens on 127.0.0.1 port 0 and serves one connection on a thread. */
static int fake_start(struct fake_server *fake, enum fake_mode mode) {
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fake->mode = mode;
    fake->listener = socket(AF_INET, SOCK_STREAM, 0);
    if (fake->listener == NO_SOCKET || bind(fake->listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(fake->listener, 4) != 0 ||
        getsockname(fake->listener, (struct sockaddr *)&addr, &addr_len) != 0) {
        return -1;
    }
    fake->port = ntohs(addr.sin_port);
    return pthread_create(&fake->thread, NULL, fake_serve, fake) == 0 ? 0 : -1;
}

static void fake_finish(struct fake_server *fake) {
    pthread_join(fake->thread, NULL);
    close_socket(fake->listener);
}

/* A bound but not listening socket: connecting to its port is refused. */
static int closed_port(socket_t *fd, uint16_t *port) {
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd == NO_SOCKET || bind(*fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(*fd, (struct sockaddr *)&addr, &addr_len) != 0) {
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return 0;
}

/* A socket listening on a loopback port that never accepts: a client connects (the kernel
 * completes the handshake) and sends its request, then waits for an answer that never comes. */
static int unanswered_port(socket_t *fd, uint16_t *port) {
    if (closed_port(fd, port) != 0) {
        return -1;
    }
    return listen(*fd, 4) == 0 ? 0 : -1;
}

/* Fetches `name` from a fake server in `mode` into `out`, expecting `want`. */
static void check_fake(enum fake_mode mode, filefetch_fetch_options *options, const char *out,
                       filefetch_status want) {
    struct fake_server fake;
    CHECK(fake_start(&fake, mode) == 0);
    uint64_t size = 777;
    CHECK_STATUS(filefetch_fetch("127.0.0.1", fake.port, "file.txt", options, &size), want);
    CHECK(size == 777);
    CHECK(filefetch_last_error()[0] != '\0');
    fake_finish(&fake);
    CHECK(count_entries(out) == 0);

    /* The same into memory. */
    CHECK(fake_start(&fake, mode) == 0);
    uint8_t *data = (uint8_t *)&size;
    size_t len = 777;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", fake.port, "file.txt", options, &data, &len),
                 want);
    CHECK(data == (uint8_t *)&size && len == 777);
    fake_finish(&fake);
}

static int abort_at_once(void *user_data, uint64_t received, uint64_t total) {
    (void)received;
    (void)total;
    (*(int *)user_data)++;
    return 1;
}

static int interrupt_after_three(void *user_data) {
    int *polls = user_data;
    return ++*polls > 3;
}

int main(void) {
    char root[512], out[512], path[1024], other[1024];
    CHECK(sockets_init() == 0);
    CHECK(make_temp_dir(root, sizeof root) == 0);
    CHECK(make_temp_dir(out, sizeof out) == 0);
    static unsigned char content[256 * 1024];
    memset(content, 'x', sizeof content);
    join_path(path, sizeof path, root, "data.bin");
    CHECK(write_file(path, content, sizeof content) == 0);

    join_path(path, sizeof path, root, "empty.txt");
    CHECK(write_file(path, "", 0) == 0);

    /* strerror: every status has its own text; unknown values are handled. */
    CHECK(FILEFETCH_STATUS_TOO_LARGE == 12 && FILEFETCH_STATUS_PANIC == 11);
    CHECK(FILEFETCH_STATUS_WRITE_ERROR == 13 && FILEFETCH_STATUS_CHECKSUM_MISMATCH == 14);
    for (int s = FILEFETCH_STATUS_OK; s <= FILEFETCH_STATUS_CHECKSUM_MISMATCH; s++) {
        const char *text = filefetch_strerror(s);
        CHECK(text != NULL && strcmp(text, "unknown status") != 0);
        for (int t = FILEFETCH_STATUS_OK; t < s; t++) {
            CHECK(strcmp(text, filefetch_strerror(t)) != 0);
        }
    }
    CHECK(strcmp(filefetch_strerror(FILEFETCH_STATUS_TOO_LARGE),
                 "file larger than the maximum size") == 0);
    CHECK(strcmp(filefetch_strerror(15), "unknown status") == 0);
    CHECK(strcmp(filefetch_strerror(-1), "unknown status") == 0);
    CHECK(strcmp(filefetch_strerror(1000), "unknown status") == 0);

    filefetch_server_options *server_options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&server_options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_root(server_options, root), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_address(server_options, "127.0.0.1"),
                 FILEFETCH_STATUS_OK);
    filefetch_server *server = NULL;
    CHECK_STATUS(filefetch_server_start(server_options, &server), FILEFETCH_STATUS_OK);
    uint16_t port = 0;
    CHECK_STATUS(filefetch_server_port(server, &port), FILEFETCH_STATUS_OK);

    filefetch_fetch_options *options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, out), FILEFETCH_STATUS_OK);
    uint64_t size = 777;
    uint8_t *data = NULL;
    size_t len = 777;

    /* NOT_FOUND: the server has no such file; nothing is created. */
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "missing.txt", options, &size),
                 FILEFETCH_STATUS_NOT_FOUND);
    CHECK(size == 777);
    CHECK(strstr(filefetch_last_error(), "missing.txt") != NULL);
    CHECK(count_entries(out) == 0);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "missing.txt", options, &data, &len),
                 FILEFETCH_STATUS_NOT_FOUND);
    CHECK(data == NULL && len == 777);
    /* A name that leaves the root is refused by the server the same way. */
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "../etc/passwd", options, &size),
                 FILEFETCH_STATUS_NOT_FOUND);

    /* EXISTS: the destination is there and overwriting is off; it stays untouched. */
    join_path(path, sizeof path, out, "data.bin");
    CHECK(write_file(path, "mine", 4) == 0);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "data.bin", options, &size),
                 FILEFETCH_STATUS_EXISTS);
    CHECK(size == 777);
    CHECK(file_equals(path, "mine", 4));
    CHECK(count_entries(out) == 1);
    remove(path);

    /* ABORTED: the progress callback says stop; nothing left behind. */
    int calls = 0;
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, abort_at_once, &calls),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "data.bin", options, &size),
                 FILEFETCH_STATUS_ABORTED);
    CHECK(calls == 1);
    CHECK(size == 777);
    CHECK(count_entries(out) == 0);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "data.bin", options, &data, &len),
                 FILEFETCH_STATUS_ABORTED);
    CHECK(calls == 2 && data == NULL);
    CHECK_STATUS(filefetch_fetch_options_set_progress(options, NULL, NULL), FILEFETCH_STATUS_OK);

    /* TOO_LARGE: the server announces more than the maximum size. Nothing is read, nothing
     * is left behind, no out-parameter is written. */
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, sizeof content - 1),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "data.bin", options, &size),
                 FILEFETCH_STATUS_TOO_LARGE);
    CHECK(size == 777);
    CHECK(strstr(filefetch_last_error(), "262144") != NULL);
    CHECK(count_entries(out) == 0);
    uint8_t sentinel = 0;
    data = &sentinel;
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "data.bin", options, &data, &len),
                 FILEFETCH_STATUS_TOO_LARGE);
    CHECK(data == &sentinel && len == 777);
    data = NULL;
    /* Exactly the maximum is accepted, to a file and into memory. */
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, sizeof content),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "data.bin", options, &size),
                 FILEFETCH_STATUS_OK);
    CHECK(size == sizeof content);
    join_path(path, sizeof path, out, "data.bin");
    CHECK(file_equals(path, content, sizeof content));
    remove(path);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "data.bin", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == sizeof content && memcmp(data, content, len) == 0);
    filefetch_bytes_free(data);
    data = NULL;
    len = 777;
    /* 0 is a maximum like any other: only empty files pass. */
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, 0), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "empty.txt", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(data != NULL && len == 0);
    filefetch_bytes_free(data);
    data = NULL;
    len = 777;
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "data.bin", options, &size),
                 FILEFETCH_STATUS_TOO_LARGE);
    CHECK(count_entries(out) == 0);
    /* UINT64_MAX: no limit again. */
    CHECK_STATUS(filefetch_fetch_options_set_max_size(options, UINT64_MAX), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "data.bin", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(len == sizeof content);
    filefetch_bytes_free(data);
    data = NULL;
    len = 777;
    size = 777;

    /* IO: the output directory does not exist. */
    CHECK_STATUS(filefetch_fetch_options_set_output(options, "/nonexistent-filefetch-dir/x"),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "data.bin", options, &size),
                 FILEFETCH_STATUS_IO);
    CHECK(size == 777);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, out), FILEFETCH_STATUS_OK);

    /* IO: a server whose root does not exist, and one whose port is taken. */
    filefetch_server *second = NULL;
    filefetch_server_options *bad_options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&bad_options), FILEFETCH_STATUS_OK);
    join_path(other, sizeof other, root, "no-such-dir");
    CHECK_STATUS(filefetch_server_options_set_root(bad_options, other), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_start(bad_options, &second), FILEFETCH_STATUS_IO);
    CHECK(second == NULL);
    CHECK_STATUS(filefetch_server_options_set_root(bad_options, root), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_address(bad_options, "127.0.0.1"),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_options_set_port(bad_options, port), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_server_start(bad_options, &second), FILEFETCH_STATUS_IO);
    CHECK(second == NULL);
    CHECK_STATUS(filefetch_serve(bad_options), FILEFETCH_STATUS_IO);

    /* INVALID_ARGUMENT: names the protocol cannot carry, bad strings, bad values. */
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "", options, &size),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    static char long_name[1026];
    memset(long_name, 'a', 1025);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, long_name, options, &size),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "dir/", options, &size),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "bad\xff.txt", options, &size),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(filefetch_last_error(), "UTF-8") != NULL);
    CHECK_STATUS(filefetch_fetch("127.0.0.1\xc3", port, "data.bin", options, &size),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "\xc3\x28", options, &data, &len),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(size == 777 && data == NULL && len == 777);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, "out\xfe"),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_fetch_options_set_output(options, ""),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    /* Values out of range: core's rules refuse them, and the message names the setting. */
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 0),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(filefetch_last_error(), "idle_timeout") != NULL);
    CHECK_STATUS(filefetch_fetch_options_set_connect_timeout_ms(options, 0),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(filefetch_last_error(), "connect_timeout") != NULL);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, UINT64_MAX),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(filefetch_last_error(), "max_time") != NULL);
    /* A year is the longest time limit; 0 means none. */
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 31536000001ULL),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 31536000000ULL),
                 FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 0), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_min_rate(options, 1, 0),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(filefetch_last_error(), "min_rate") != NULL);
    CHECK_STATUS(filefetch_fetch_options_set_min_rate(options, 0, 0), FILEFETCH_STATUS_OK);
    /* The refused values were not kept: the options still fetch. */
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "data.bin", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(len == sizeof content);
    filefetch_bytes_free(data);
    data = NULL;
    len = 777;
    CHECK_STATUS(filefetch_server_options_set_root(bad_options, "\xff"),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_server_options_set_address(bad_options, "localhost"),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_server_options_set_address(bad_options, "1.2.3.4.5"),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(filefetch_server_options_set_address(bad_options, "\x80"),
                 FILEFETCH_STATUS_INVALID_ARGUMENT);
    CHECK(count_entries(out) == 0);
    filefetch_server_options_free(bad_options);

    /* CONNECTION: nothing listens on the port. */
    socket_t closed_fd = NO_SOCKET;
    uint16_t closed = 0;
    CHECK(closed_port(&closed_fd, &closed) == 0);
    CHECK_STATUS(filefetch_fetch("127.0.0.1", closed, "data.bin", options, &size),
                 FILEFETCH_STATUS_CONNECTION);
    CHECK(size == 777);
    if (closed_fd != NO_SOCKET) {
        close_socket(closed_fd);
    }

    /* The misbehaving servers; short timeouts keep the silent one quick. */
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 300), FILEFETCH_STATUS_OK);
    /* A close without any response breaks the protocol (server.py does it for a missing
     * file); CONNECTION is for a server that cannot be reached. */
    check_fake(FAKE_CLOSE, options, out, FILEFETCH_STATUS_PROTOCOL);
    check_fake(FAKE_BAD_MAGIC, options, out, FILEFETCH_STATUS_PROTOCOL);
    check_fake(FAKE_SHORT_HEAD, options, out, FILEFETCH_STATUS_PROTOCOL);
    check_fake(FAKE_EXCESS, options, out, FILEFETCH_STATUS_PROTOCOL);
    check_fake(FAKE_SHORT_BODY, options, out, FILEFETCH_STATUS_INCOMPLETE);
    check_fake(FAKE_SILENT, options, out, FILEFETCH_STATUS_TIMEOUT);

    /* TIMEOUT from the time limits, with an idle timeout that would never expire. */
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 60000), FILEFETCH_STATUS_OK);
    /* The whole fetch limited: a server that accepts nothing and answers nothing... */
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 200), FILEFETCH_STATUS_OK);
    socket_t unanswered_fd = NO_SOCKET;
    uint16_t unanswered = 0;
    CHECK(unanswered_port(&unanswered_fd, &unanswered) == 0);
    double started = monotonic_seconds();
    CHECK_STATUS(filefetch_fetch("127.0.0.1", unanswered, "data.bin", options, &size),
                 FILEFETCH_STATUS_TIMEOUT);
    CHECK(strstr(filefetch_last_error(), "whole fetch") != NULL);
    CHECK_STATUS(
        filefetch_fetch_bytes("127.0.0.1", unanswered, "data.bin", options, &data, &len),
        FILEFETCH_STATUS_TIMEOUT);
    CHECK(monotonic_seconds() - started < 10.0);
    CHECK(size == 777 && data == NULL && len == 777);
    CHECK(count_entries(out) == 0);
    if (unanswered_fd != NO_SOCKET) {
        close_socket(unanswered_fd);
    }
    /* ... and one that answers too slowly (its 1000 bytes would take 50 s). */
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 500), FILEFETCH_STATUS_OK);
    started = monotonic_seconds();
    check_fake(FAKE_DRIP, options, out, FILEFETCH_STATUS_TIMEOUT);
    CHECK(strstr(filefetch_last_error(), "whole fetch") != NULL);
    CHECK(monotonic_seconds() - started < 20.0);
    CHECK_STATUS(filefetch_fetch_options_set_max_time_ms(options, 0), FILEFETCH_STATUS_OK);
    /* A minimum rate: 1000 bytes a second over 300 ms, where 20 a second arrive. */
    CHECK_STATUS(filefetch_fetch_options_set_min_rate(options, 1000, 300), FILEFETCH_STATUS_OK);
    started = monotonic_seconds();
    check_fake(FAKE_DRIP, options, out, FILEFETCH_STATUS_TIMEOUT);
    CHECK(strstr(filefetch_last_error(), "bytes/s") != NULL);
    CHECK(monotonic_seconds() - started < 20.0);
    CHECK_STATUS(filefetch_fetch_options_set_min_rate(options, 0, 0), FILEFETCH_STATUS_OK);

    /* INTERRUPTED: the interrupt callback stops a fetch from a silent server. */
    int polls = 0;
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 60000), FILEFETCH_STATUS_OK);
    CHECK_STATUS(filefetch_fetch_options_set_interrupt(options, interrupt_after_three, &polls),
                 FILEFETCH_STATUS_OK);
    check_fake(FAKE_SILENT, options, out, FILEFETCH_STATUS_INTERRUPTED);
    CHECK(polls > 3);
    CHECK_STATUS(filefetch_fetch_options_set_interrupt(options, NULL, NULL), FILEFETCH_STATUS_OK);

    /* The last error belongs to the thread; a success leaves it as it was. */
    CHECK_STATUS(filefetch_fetch("127.0.0.1", port, "missing.txt", options, &size),
                 FILEFETCH_STATUS_NOT_FOUND);
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "data.bin", options, &data, &len),
                 FILEFETCH_STATUS_OK);
    CHECK(len == sizeof content);
    filefetch_bytes_free(data);
    CHECK(strstr(filefetch_last_error(), "missing.txt") != NULL);

    filefetch_fetch_options_free(options);
    filefetch_server_free(server);
    filefetch_server_options_free(server_options);
    remove_tree(root);
    remove_tree(out);
    return report("errors_test");
}
