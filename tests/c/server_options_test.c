/*
 * The server's tuning options: the setters' checks, and servers started with them: worker
 * threads, the connection limit with the request deadline, the open-file cache (a file
 * rewritten in place, kept open or not, a name renamed away), the grace period of a
 * graceful shutdown, the PROXY protocol, access rules, the limit of connections from one
 * address, and the rate limits (checked from above only: the bytes received by each moment
 * against rate x t + burst, counted from before connecting, which a slow run, valgrind's
 * included, can only stay further below).
 */
#include "check.h"

#define OK FILEFETCH_STATUS_OK
#define INVALID FILEFETCH_STATUS_INVALID_ARGUMENT

/* Larger than the socket buffers on both sides, so a client that stops reading stalls it. */
#define STALLED_SIZE (16 * 1024 * 1024)

static void pause_briefly(void) {
    sleep_ms(20);
}

/* Starts a server on 127.0.0.1, any free port, serving `root` with `options` (which get the
 * root, address and port set here); NULL if it does not start. */
static filefetch_server *start(filefetch_server_options *options, const char *root,
                               uint16_t *port) {
    filefetch_server *server = NULL;
    CHECK_STATUS(filefetch_server_options_set_root(options, root), OK);
    CHECK_STATUS(filefetch_server_options_set_address(options, "127.0.0.1"), OK);
    CHECK_STATUS(filefetch_server_options_set_port(options, 0), OK);
    CHECK_STATUS(filefetch_server_start(options, &server), OK);
    *port = 0;
    if (server != NULL) {
        CHECK_STATUS(filefetch_server_port(server, port), OK);
    }
    return server;
}

/* True when fetching `name` succeeds and gives exactly `expected`. */
static int fetch_is(uint16_t port, const char *name, const filefetch_fetch_options *options,
                    const char *expected) {
    uint8_t *data = NULL;
    size_t len = 0;
    filefetch_status status = filefetch_fetch_bytes("127.0.0.1", port, name, options, &data, &len);
    if (status != OK) {
        fprintf(stderr, "fetching %s: %s: %s\n", name, filefetch_strerror(status),
                filefetch_last_error());
        return 0;
    }
    int same = len == strlen(expected) && memcmp(data, expected, len) == 0;
    filefetch_bytes_free(data);
    return same;
}

static filefetch_status fetch_status(uint16_t port, const char *name,
                                     const filefetch_fetch_options *options) {
    uint8_t *data = NULL;
    size_t len = 0;
    filefetch_status status = filefetch_fetch_bytes("127.0.0.1", port, name, options, &data, &len);
    if (status == OK) {
        filefetch_bytes_free(data);
    }
    return status;
}

/* Threads of this process named as the server names its own ("filefetch-server", cut to the
 * 15 bytes of a thread name); -1 where /proc cannot tell. */
static int server_threads(void) {
#ifdef _WIN32
    return -1; /* no /proc on Windows */
#else
    DIR *dir = opendir("/proc/self/task");
    if (dir == NULL) {
        return -1;
    }
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        char path[512], comm[64] = "";
        if (entry->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", entry->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            continue; /* the thread ended meanwhile */
        }
        if (fgets(comm, sizeof comm, f) != NULL) {
            comm[strcspn(comm, "\n")] = '\0';
            count += strcmp(comm, "filefetch-serve") == 0;
        }
        fclose(f);
    }
    closedir(dir);
    return count;
#endif
}

/* The server's threads besides its workers: the thread that runs them, and on Linux the
 * thread waiting in accept on the one listening socket. */
#ifdef __linux__
#define OTHER_SERVER_THREADS 2
#else
#define OTHER_SERVER_THREADS 1
#endif

/* The server's thread count once it settles at `expected` (at most 30 s), or what it is then. */
static int wait_server_threads(int expected) {
    int count = server_threads();
    for (int i = 0; count != expected && count != -1 && i < 1500; i++) {
        pause_briefly();
        count = server_threads();
    }
    return count;
}

/* A TCP connection to 127.0.0.1:port with a small receive buffer; NO_SOCKET on failure. */
static socket_t connect_to(uint16_t port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd == NO_SOCKET) {
        return NO_SOCKET;
    }
    socket_recv_buffer(fd, 4096);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close_socket(fd);
        return NO_SOCKET;
    }
    return fd;
}

/* Sends a FileRequest for `name` and reads the 8-byte FileResponse header; 0 on success. */
static int request_header(socket_t fd, const char *name) {
    unsigned char request[5 + 64];
    size_t len = strlen(name);
    request[0] = 0x49;
    request[1] = 0x7E;
    request[2] = 1;
    request[3] = (unsigned char)(len >> 8);
    request[4] = (unsigned char)len;
    memcpy(request + 5, name, len);
    if (socket_send(fd, request, 5 + len, 0) != (long)(5 + len)) {
        return -1;
    }
    unsigned char header[8];
    size_t got = 0;
    while (got < sizeof header) {
        long n = socket_recv(fd, header + got, sizeof header - got);
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
    }
    return header[3] == 1 ? 0 : -1;
}

static void check_setters(void) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);

    /* The ranges are core's; a value out of range is refused with core's message, which
     * names the setting, and is not kept. */
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, 1), OK);
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, (size_t)4294967295u), OK);
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, 0), INVALID);
    CHECK(strstr(filefetch_last_error(), "max_connections") != NULL);
#if SIZE_MAX > 4294967295u
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, (size_t)4294967296u),
                 INVALID);
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, SIZE_MAX), INVALID);
    CHECK(strstr(filefetch_last_error(), "max_connections") != NULL);
#endif

    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(options, 1), OK);
    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(options, UINT32_MAX), OK);
    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(options, 0), INVALID);
    CHECK(strstr(filefetch_last_error(), "request_timeout") != NULL);

    CHECK_STATUS(filefetch_server_options_set_send_timeout_ms(options, 1), OK);
    CHECK_STATUS(filefetch_server_options_set_send_timeout_ms(options, UINT32_MAX), OK);
    CHECK_STATUS(filefetch_server_options_set_send_timeout_ms(options, 0), INVALID);
    CHECK(strstr(filefetch_last_error(), "send_timeout") != NULL);

    CHECK_STATUS(filefetch_server_options_set_threads(options, 1024), OK);
    CHECK_STATUS(filefetch_server_options_set_threads(options, 1025), INVALID);
    CHECK_STATUS(filefetch_server_options_set_threads(options, 5000), INVALID);
    CHECK(strstr(filefetch_last_error(), "threads") != NULL);
    CHECK_STATUS(filefetch_server_options_set_threads(options, SIZE_MAX), INVALID);

    /* For these, 0 means something: cut at once, one thread per core, no open-file cache. */
    CHECK_STATUS(filefetch_server_options_set_grace_period_ms(options, 0), OK);
    CHECK_STATUS(filefetch_server_options_set_grace_period_ms(options, UINT32_MAX), OK);
    CHECK_STATUS(filefetch_server_options_set_threads(options, 0), OK);
    CHECK_STATUS(filefetch_server_options_set_threads(options, 64), OK);
    CHECK_STATUS(filefetch_server_options_set_file_cache_ms(options, 0), OK);
    CHECK_STATUS(filefetch_server_options_set_file_cache_ms(options, UINT32_MAX), OK);

    filefetch_server_options_free(options);
}

/* The values refused by the setters were not kept: options that met every refusal above
 * still start a server, which serves with one worker thread. */
static void check_refused_values_not_kept(const char *root,
                                          const filefetch_fetch_options *fetch_options) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_set_threads(options, 1), OK);
    CHECK_STATUS(filefetch_server_options_set_threads(options, 5000), INVALID);
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, 0), INVALID);
    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(options, 0), INVALID);
    CHECK_STATUS(filefetch_server_options_set_send_timeout_ms(options, 0), INVALID);
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server == NULL) {
        return;
    }
    CHECK(fetch_is(port, "hello.txt", fetch_options, "hello, world\n"));
    int count = wait_server_threads(1 + OTHER_SERVER_THREADS);
    CHECK(count == -1 || count == 1 + OTHER_SERVER_THREADS);
    CHECK_STATUS(filefetch_server_abort(server), OK);
    filefetch_server_free(server);
}

#ifdef __linux__
/* How many of this process's descriptors are open on `path` (the server runs in it). */
static int descriptors_on(const char *path) {
    char want[4096], link[4096], entry[300];
    if (realpath(path, want) == NULL) {
        return -1;
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        return -1;
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        snprintf(entry, sizeof entry, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(entry, link, sizeof link - 1);
        if (n > 0) {
            link[n] = '\0';
            count += strcmp(link, want) == 0;
        }
    }
    closedir(dir);
    return count;
}
#endif

/* A file rewritten in place (same inode) between fetches is served as it is now; the file
 * stays open after a request only while the cache keeps it (seen in this process's
 * descriptors, on Linux); a name renamed away is gone at once, cache or not. */
static void check_file_cache(const char *root, const filefetch_fetch_options *fetch_options,
                             int set_cache, uint32_t cache_ms) {
    static const char *const versions[] = {"first version\n", "second, longer version\n",
                                           "third, longer  version\n", "4th\n", ""};
    char path[1024], moved[1024];
    join_path(path, sizeof path, root, "changing.txt");
    join_path(moved, sizeof moved, root, "moved.txt");
    CHECK(write_file(path, versions[0], strlen(versions[0])) == 0);
    struct stat before;
    CHECK(stat(path, &before) == 0);

    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    if (set_cache) {
        CHECK_STATUS(filefetch_server_options_set_file_cache_ms(options, cache_ms), OK);
    }
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server == NULL) {
        return;
    }
    CHECK(fetch_is(port, "changing.txt", fetch_options, versions[0]));
    for (size_t i = 1; i < sizeof versions / sizeof versions[0]; i++) {
        /* "wb" truncates and rewrites the same file. */
        CHECK(write_file(path, versions[i], strlen(versions[i])) == 0);
        struct stat after;
        CHECK(stat(path, &after) == 0 && after.st_ino == before.st_ino);
        CHECK(fetch_is(port, "changing.txt", fetch_options, versions[i]));
    }

    CHECK(write_file(path, versions[0], strlen(versions[0])) == 0);
    CHECK(fetch_is(port, "changing.txt", fetch_options, versions[0]));
#ifdef __linux__
    if (set_cache && cache_ms == 0) {
        CHECK(descriptors_on(path) == 0);
    } else if (set_cache && cache_ms >= 60000) {
        CHECK(descriptors_on(path) == 1);
    }
#endif
    CHECK(rename(path, moved) == 0);
    CHECK_STATUS(fetch_status(port, "changing.txt", fetch_options), FILEFETCH_STATUS_NOT_FOUND);
    CHECK(fetch_is(port, "moved.txt", fetch_options, versions[0]));

    CHECK_STATUS(filefetch_server_abort(server), OK);
    filefetch_server_free(server);
    remove(moved);
}

/* Every option set at once; the server serves with them, with as many workers as asked. */
static void check_all_options(const char *root, const filefetch_fetch_options *fetch_options,
                              size_t threads) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, 8), OK);
    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(options, 2000), OK);
    CHECK_STATUS(filefetch_server_options_set_send_timeout_ms(options, 5000), OK);
    CHECK_STATUS(filefetch_server_options_set_grace_period_ms(options, 1000), OK);
    CHECK_STATUS(filefetch_server_options_set_threads(options, threads), OK);
    CHECK_STATUS(filefetch_server_options_set_file_cache_ms(options, 0), OK);
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server == NULL) {
        return;
    }
    for (int i = 0; i < 10; i++) {
        CHECK(fetch_is(port, "hello.txt", fetch_options, "hello, world\n"));
    }
    /* Its worker threads and the others. */
    int count = wait_server_threads((int)threads + OTHER_SERVER_THREADS);
    CHECK(count == -1 || count == (int)threads + OTHER_SERVER_THREADS);
    CHECK_STATUS(filefetch_server_shutdown(server), OK);
    filefetch_server_free(server);
}

/* With one connection allowed and a request deadline of a minute, a client that sends
 * nothing holds the only slot: the next client gets no answer (with the 1 s default deadline
 * it would be served within its 1.5 s timeout). Once the silent client goes, it is served. */
static void check_limit_and_deadline(const char *root) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_set_max_connections(options, 1), OK);
    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(options, 60000), OK);
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server == NULL) {
        return;
    }
    filefetch_fetch_options *fetch_options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&fetch_options), OK);
    socket_t silent = connect_to(port);
    CHECK(silent != NO_SOCKET);
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(fetch_options, 1500), OK);
    CHECK_STATUS(fetch_status(port, "hello.txt", fetch_options), FILEFETCH_STATUS_TIMEOUT);
    if (silent != NO_SOCKET) {
        close_socket(silent);
    }
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(fetch_options, 30000), OK);
    CHECK(fetch_is(port, "hello.txt", fetch_options, "hello, world\n"));
    filefetch_fetch_options_free(fetch_options);
    CHECK_STATUS(filefetch_server_abort(server), OK);
    filefetch_server_free(server);
}

/* A transfer stalled by a client that stops reading (and a send timeout of a minute) ends a
 * graceful shutdown after the grace period: well before the 10 s default. */
static void check_grace_period(const char *root) {
    char path[1024];
    join_path(path, sizeof path, root, "stalled.bin");
    unsigned char *big = calloc(1, STALLED_SIZE);
    CHECK(big != NULL);
    if (big == NULL) {
        return;
    }
    CHECK(write_file(path, big, STALLED_SIZE) == 0);
    free(big);

    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_set_send_timeout_ms(options, 60000), OK);
    CHECK_STATUS(filefetch_server_options_set_grace_period_ms(options, 200), OK);
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server == NULL) {
        return;
    }
    socket_t client = connect_to(port);
    CHECK(client != NO_SOCKET);
    if (client != NO_SOCKET) {
        socket_recv_timeout(client, 30);
        CHECK(request_header(client, "stalled.bin") == 0);
    }
    double started = monotonic_seconds();
    CHECK_STATUS(filefetch_server_shutdown(server), OK);
    double took = monotonic_seconds() - started;
    CHECK(took < 5.0);
    if (took >= 5.0) {
        fprintf(stderr, "graceful shutdown took %.2f s\n", took);
    }
    filefetch_server_free(server);
    if (client != NO_SOCKET) {
        close_socket(client);
    }
    remove(path);
}

/* With the PROXY protocol on, a request without its header gets no response (PROTOCOL: the
 * server closed without one), and one behind a v1 header is served. Retries are checked by
 * their range here; their behaviour is core's, tested there. */
static void check_proxy_protocol_and_retries(const char *root,
                                             const filefetch_fetch_options *fetch_options) {
    filefetch_fetch_options *retrying = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&retrying), OK);
    CHECK_STATUS(filefetch_fetch_options_set_retries(retrying, 101, 0), INVALID);
    CHECK(strstr(filefetch_last_error(), "retries") != NULL);
    CHECK_STATUS(filefetch_fetch_options_set_retries(retrying, 2, 10), OK);
    filefetch_fetch_options_free(retrying);

    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_set_proxy_protocol(options, true), OK);
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    CHECK(server != NULL);
    if (server != NULL) {
        CHECK(fetch_status(port, "hello.txt", fetch_options) == FILEFETCH_STATUS_PROTOCOL);
        socket_t fd = connect_to(port);
        CHECK(fd != NO_SOCKET);
        if (fd != NO_SOCKET) {
            static const char header[] = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 5000\r\n";
            CHECK(socket_send(fd, header, sizeof header - 1, 0) == (long)(sizeof header - 1));
            CHECK(request_header(fd, "hello.txt") == 0);
            close_socket(fd);
        }
        CHECK_STATUS(filefetch_server_abort(server), OK);
        filefetch_server_free(server);
    }
    filefetch_server_options_free(options);
}

/* Scrapes http://127.0.0.1:port/metrics into `out` (NUL-terminated, truncated to its size);
 * 0 when a whole response arrived (the server closes after it). */
static int scrape(uint16_t port, char *out, size_t size) {
    socket_t fd = connect_to(port);
    if (fd == NO_SOCKET) {
        return -1;
    }
    socket_recv_timeout(fd, 30);
    static const char request[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    int result = -1;
    if (socket_send(fd, request, sizeof request - 1, 0) == (long)(sizeof request - 1)) {
        size_t got = 0;
        long n = -1;
        while (got + 1 < size && (n = socket_recv(fd, out + got, size - 1 - got)) > 0) {
            got += (size_t)n;
        }
        out[got] = '\0';
        result = n == 0 || got + 1 == size ? 0 : -1;
    }
    close_socket(fd);
    return result;
}

static void check_metrics(const char *root, const filefetch_fetch_options *fetch_options) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_set_metrics(options, "nowhere"), INVALID);
    CHECK(strstr(filefetch_last_error(), "metrics") != NULL);
    CHECK_STATUS(filefetch_server_options_set_metrics(options, "127.0.0.1"), INVALID);

    /* Off by default (and with NULL or ""): the port reported is 0. */
    uint16_t port = 0, metrics_port = 1;
    CHECK_STATUS(filefetch_server_options_set_metrics(options, NULL), OK);
    filefetch_server *server = start(options, root, &port);
    CHECK(server != NULL);
    if (server != NULL) {
        CHECK_STATUS(filefetch_server_metrics_port(server, &metrics_port), OK);
        CHECK(metrics_port == 0);
        CHECK_STATUS(filefetch_server_metrics_port(server, NULL), INVALID);
        filefetch_server_free(server);
    }

    CHECK_STATUS(filefetch_server_options_set_metrics(options, "127.0.0.1:0"), OK);
    server = start(options, root, &port);
    CHECK(server != NULL);
    if (server != NULL) {
        CHECK_STATUS(filefetch_server_metrics_port(server, &metrics_port), OK);
        CHECK(metrics_port != 0 && metrics_port != port);
        static char text[65536];
        CHECK(scrape(metrics_port, text, sizeof text) == 0);
        CHECK(strstr(text, "200 OK") != NULL);
        CHECK(strstr(text, "filefetch_requests_total{outcome=\"sent\"} 0") != NULL);
        CHECK(fetch_is(port, "hello.txt", fetch_options, "hello, world\n"));
        CHECK(fetch_status(port, "missing.txt", fetch_options) == FILEFETCH_STATUS_NOT_FOUND);
        CHECK(scrape(metrics_port, text, sizeof text) == 0);
        CHECK(strstr(text, "filefetch_requests_total{outcome=\"sent\"} 1") != NULL);
        CHECK(strstr(text, "filefetch_requests_total{outcome=\"not_found\"} 1") != NULL);
        CHECK(strstr(text, "filefetch_sent_bytes_total 13") != NULL);
        CHECK_STATUS(filefetch_server_shutdown(server), OK);
        /* The port is still reported after the stop; nothing listens there any more. */
        CHECK_STATUS(filefetch_server_metrics_port(server, &metrics_port), OK);
        CHECK(metrics_port != 0);
        CHECK(scrape(metrics_port, text, sizeof text) != 0);
        filefetch_server_free(server);
    }
    filefetch_server_options_free(options);
}

/* Starts a server of `root` with access rules added in order: each "+NET" an allow rule,
 * each "-NET" a deny rule; NULL if it does not start. */
static filefetch_server *start_with_rules(const char *root, const char *const *rules, size_t n,
                                          uint16_t *port) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    for (size_t i = 0; i < n; i++) {
        if (rules[i][0] == '+') {
            CHECK_STATUS(filefetch_server_options_allow(options, rules[i] + 1), OK);
        } else {
            CHECK_STATUS(filefetch_server_options_deny(options, rules[i] + 1), OK);
        }
    }
    filefetch_server *server = start(options, root, port);
    filefetch_server_options_free(options);
    return server;
}

/* Whether a server with `rules` (as start_with_rules takes them) serves this client; a
 * refused one is closed without a response, which the client sees as PROTOCOL. */
static int served_with_rules(const char *root, const filefetch_fetch_options *fetch_options,
                             const char *const *rules, size_t n) {
    uint16_t port = 0;
    filefetch_server *server = start_with_rules(root, rules, n, &port);
    if (server == NULL) {
        return -1;
    }
    filefetch_status status = fetch_status(port, "hello.txt", fetch_options);
    CHECK(status == OK || status == FILEFETCH_STATUS_PROTOCOL);
    CHECK_STATUS(filefetch_server_abort(server), OK);
    filefetch_server_free(server);
    return status == OK;
}

#define SERVED_WITH(root, options, ...)                                                   \
    served_with_rules(root, options, (const char *const[]){__VA_ARGS__},                  \
                      sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* filefetch_server_options_allow and _deny: refused networks (the message names the
 * function's setting and says what is wrong; no rule is added), then rules in the order
 * added, the first match deciding, as nginx's. */
static void check_access_rules(const char *root, const filefetch_fetch_options *fetch_options) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_allow(options, "10.1.0.0/8"), INVALID);
    CHECK(strstr(filefetch_last_error(), "allow") != NULL);
    CHECK(strstr(filefetch_last_error(), "bits set past the prefix") != NULL);
    CHECK_STATUS(filefetch_server_options_allow(options, "10.0.0.0/33"), INVALID);
    CHECK_STATUS(filefetch_server_options_allow(options, "2001:db8::/129"), INVALID);
    CHECK_STATUS(filefetch_server_options_allow(options, "10.0.0.0/"), INVALID);
    CHECK_STATUS(filefetch_server_options_allow(options, ""), INVALID);
    CHECK_STATUS(filefetch_server_options_deny(options, "nonsense"), INVALID);
    CHECK(strstr(filefetch_last_error(), "deny") != NULL);
    CHECK(strstr(filefetch_last_error(), "nonsense") != NULL);
    CHECK_STATUS(filefetch_server_options_deny(options, "example.org"), INVALID);
    CHECK_STATUS(filefetch_server_options_deny(options, "\xff"), INVALID);
    CHECK_STATUS(filefetch_server_options_allow(options, NULL), INVALID);
    CHECK_STATUS(filefetch_server_options_deny(options, NULL), INVALID);
    CHECK_STATUS(filefetch_server_options_allow(NULL, "10.0.0.0/8"), INVALID);
    CHECK_STATUS(filefetch_server_options_deny(NULL, "10.0.0.0/8"), INVALID);
    /* None of the refused allow rules was added: with one, this client would be refused. */
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server != NULL) {
        CHECK(fetch_is(port, "hello.txt", fetch_options, "hello, world\n"));
        CHECK_STATUS(filefetch_server_abort(server), OK);
        filefetch_server_free(server);
    }

    CHECK(SERVED_WITH(root, fetch_options, "-127.0.0.0/8") == 0);
    CHECK(SERVED_WITH(root, fetch_options, "-10.0.0.0/8", "-::1") == 1);
    CHECK(SERVED_WITH(root, fetch_options, "+127.0.0.1") == 1);
    CHECK(SERVED_WITH(root, fetch_options, "+192.0.2.0/24") == 0);
    CHECK(SERVED_WITH(root, fetch_options, "+::1") == 0); /* IPv6 rules, IPv6 clients */
    CHECK(SERVED_WITH(root, fetch_options, "+127.0.0.1", "-127.0.0.0/8") == 1);
    CHECK(SERVED_WITH(root, fetch_options, "-127.0.0.0/8", "+127.0.0.1") == 0);
    CHECK(SERVED_WITH(root, fetch_options, "-10.0.0.5", "+127.0.0.0/8") == 1);
    CHECK(SERVED_WITH(root, fetch_options, "-10.0.0.0/8", "+192.0.2.7") == 0);
}

/* Which of the sockets `a` and `b` the server has closed (bit 0: a, bit 1: b): waits at
 * most 30 s for one, then 300 ms more for the other, which a faulty limit would close too.
 * A closed socket must have received nothing. */
static int closed_by_server(socket_t a, socket_t b) {
    int closed = 0;
    for (int round = 0; round < 2; round++) {
        fd_set ready;
        FD_ZERO(&ready);
        if (!(closed & 1)) {
            FD_SET(a, &ready);
        }
        if (!(closed & 2)) {
            FD_SET(b, &ready);
        }
        struct timeval wait = {round == 0 ? 30 : 0, round == 0 ? 0 : 300000};
        int highest = (int)(a > b ? a : b);
        if (select(highest + 1, &ready, NULL, NULL, &wait) <= 0) {
            break;
        }
        unsigned char byte;
        if (FD_ISSET(a, &ready)) {
            CHECK(socket_recv(a, &byte, 1) <= 0);
            closed |= 1;
        }
        if (FD_ISSET(b, &ready)) {
            CHECK(socket_recv(b, &byte, 1) <= 0);
            closed |= 2;
        }
    }
    return closed;
}

/* filefetch_server_options_set_max_per_address: with 1, of two idle connections the one the
 * server took second is closed without a response; at the limit a fetch is refused; once
 * the one held goes, fetches are served again. */
static void check_max_per_address(const char *root,
                                  const filefetch_fetch_options *fetch_options) {
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    CHECK_STATUS(filefetch_server_options_set_max_per_address(options, 0), OK);
    CHECK_STATUS(filefetch_server_options_set_max_per_address(options, (size_t)4294967295u), OK);
#if SIZE_MAX > 4294967295u
    CHECK_STATUS(filefetch_server_options_set_max_per_address(options, (size_t)4294967296u),
                 INVALID);
    CHECK(strstr(filefetch_last_error(), "max_per_address") != NULL);
#endif
    CHECK_STATUS(filefetch_server_options_set_max_per_address(NULL, 1), INVALID);
    CHECK_STATUS(filefetch_server_options_set_max_per_address(options, 1), OK);
    CHECK_STATUS(filefetch_server_options_set_request_timeout_ms(options, 60000), OK);
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server == NULL) {
        return;
    }
    socket_t a = connect_to(port), b = connect_to(port);
    CHECK(a != NO_SOCKET && b != NO_SOCKET);
    if (a != NO_SOCKET && b != NO_SOCKET) {
        int closed = closed_by_server(a, b);
        CHECK(closed == 1 || closed == 2);
        socket_t held = closed == 1 ? b : a;
        CHECK_STATUS(fetch_status(port, "hello.txt", fetch_options), FILEFETCH_STATUS_PROTOCOL);
        close_socket(held);
        /* The server may not have seen the close yet. */
        filefetch_status status = FILEFETCH_STATUS_PROTOCOL;
        for (int i = 0; i < 1500 && status != OK; i++) {
            status = fetch_status(port, "hello.txt", fetch_options);
            if (status != OK) {
                pause_briefly();
            }
        }
        CHECK_STATUS(status, OK);
        close_socket(closed == 1 ? a : b);
    }
    CHECK_STATUS(filefetch_server_abort(server), OK);
    filefetch_server_free(server);
}

/* What arrived by when, for the write callback of a paced fetch. */
struct pacing {
    double start;      /* before connecting */
    uint64_t rate;     /* the bound's rate, bytes a second */
    uint64_t received; /* data bytes so far */
    int over;          /* whether more arrived by some moment than the bound allows */
    double last;       /* seconds from the start to the last piece */
};

/* How far ahead of its rate a limit may run: a tenth of a second's worth, at least 1 KiB. */
static uint64_t burst(uint64_t rate) {
    return rate / 10 > 1024 ? rate / 10 : 1024;
}

static size_t note_arrival(const uint8_t *data, size_t len, void *user_data) {
    struct pacing *p = user_data;
    (void)data;
    p->received += len;
    p->last = monotonic_seconds() - p->start;
    if ((double)p->received > (double)p->rate * p->last + (double)burst(p->rate)) {
        p->over = 1;
    }
    return len;
}

/* Fetches `name` with the write callback noting arrivals against `rate`. */
static struct pacing paced_fetch(uint16_t port, const char *name, uint64_t rate) {
    filefetch_fetch_options *options = NULL;
    struct pacing p = {0.0, rate, 0, 0, 0.0};
    CHECK_STATUS(filefetch_fetch_options_new(&options), OK);
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(options, 30000), OK);
    uint64_t size = 0;
    p.start = monotonic_seconds();
    CHECK_STATUS(filefetch_fetch_to_callback("127.0.0.1", port, name, options, note_arrival, &p,
                                             &size),
                 OK);
    CHECK(size == p.received);
    filefetch_fetch_options_free(options);
    return p;
}

#define RATE (256 * 1024)
#define PACED_SIZE (384 * 1024)
#define FAST_SIZE (4 * 1024 * 1024)

/* filefetch_server_options_set_rate_limit and _set_total_rate_limit: a connection receives no
 * more than the rate allows; without a limit, the same check fails. */
static void check_rate_limits(const char *root) {
    char path[1024];
    unsigned char *buffer = malloc(FAST_SIZE);
    CHECK(buffer != NULL);
    if (buffer == NULL) {
        return;
    }
    for (size_t i = 0; i < FAST_SIZE; i++) {
        buffer[i] = (unsigned char)(i * 7 + (i >> 9));
    }
    join_path(path, sizeof path, root, "paced.bin");
    CHECK(write_file(path, buffer, PACED_SIZE) == 0);
    join_path(path, sizeof path, root, "fast.bin");
    CHECK(write_file(path, buffer, FAST_SIZE) == 0);
    free(buffer);

    for (int total = 0; total < 2; total++) {
        filefetch_server_options *options = NULL;
        CHECK_STATUS(filefetch_server_options_new(&options), OK);
        if (total) {
            CHECK_STATUS(filefetch_server_options_set_total_rate_limit(options, UINT64_MAX), OK);
            CHECK_STATUS(filefetch_server_options_set_total_rate_limit(options, 0), OK);
            CHECK_STATUS(filefetch_server_options_set_total_rate_limit(options, RATE), OK);
            CHECK_STATUS(filefetch_server_options_set_total_rate_limit(NULL, RATE), INVALID);
        } else {
            CHECK_STATUS(filefetch_server_options_set_rate_limit(options, UINT64_MAX), OK);
            CHECK_STATUS(filefetch_server_options_set_rate_limit(options, 0), OK);
            CHECK_STATUS(filefetch_server_options_set_rate_limit(options, RATE), OK);
            CHECK_STATUS(filefetch_server_options_set_rate_limit(NULL, RATE), INVALID);
        }
        uint16_t port = 0;
        filefetch_server *server = start(options, root, &port);
        filefetch_server_options_free(options);
        if (server == NULL) {
            continue;
        }
        struct pacing p = paced_fetch(port, "paced.bin", RATE);
        CHECK(p.received == PACED_SIZE);
        CHECK(!p.over);
        if (p.over) {
            fprintf(stderr, "%s: more than %d bytes a second arrived\n",
                    total ? "total_rate_limit" : "rate_limit", RATE);
        }
        CHECK_STATUS(filefetch_server_abort(server), OK);
        filefetch_server_free(server);
    }

    /* Without a limit the bound does not hold: 4 MiB arrive far sooner than the rate allows
     * (only a run so slow that they took 15 s would keep within it). */
    filefetch_server_options *options = NULL;
    CHECK_STATUS(filefetch_server_options_new(&options), OK);
    uint16_t port = 0;
    filefetch_server *server = start(options, root, &port);
    filefetch_server_options_free(options);
    if (server != NULL) {
        struct pacing p = paced_fetch(port, "fast.bin", RATE);
        CHECK(p.received == FAST_SIZE);
        CHECK(p.over || p.last > 15.0);
        CHECK_STATUS(filefetch_server_abort(server), OK);
        filefetch_server_free(server);
    }
    join_path(path, sizeof path, root, "paced.bin");
    remove(path);
    join_path(path, sizeof path, root, "fast.bin");
    remove(path);
}

int main(void) {
    char root[512], path[1024];
    CHECK(sockets_init() == 0);
    CHECK(make_temp_dir(root, sizeof root) == 0);
    join_path(path, sizeof path, root, "hello.txt");
    CHECK(write_file(path, "hello, world\n", 13) == 0);
    filefetch_fetch_options *fetch_options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&fetch_options), OK);
    /* Generous: the programs also run under valgrind. */
    CHECK_STATUS(filefetch_fetch_options_set_timeout_ms(fetch_options, 30000), OK);

    check_setters();
    check_refused_values_not_kept(root, fetch_options);
    check_file_cache(root, fetch_options, 0, 0);     /* the default: 1 s */
    check_file_cache(root, fetch_options, 1, 0);     /* off */
    check_file_cache(root, fetch_options, 1, 60000); /* a minute */
    check_all_options(root, fetch_options, 1);
    check_all_options(root, fetch_options, 3);
    check_limit_and_deadline(root);
    check_grace_period(root);
    check_proxy_protocol_and_retries(root, fetch_options);
    check_access_rules(root, fetch_options);
    check_max_per_address(root, fetch_options);
    check_rate_limits(root);
    check_metrics(root, fetch_options);

    filefetch_fetch_options_free(fetch_options);
    remove_tree(root);
    return report("server_options_test");
}
