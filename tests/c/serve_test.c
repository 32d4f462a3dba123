/*
 * filefetch_serve, the blocking server: a child process serves a directory on a free
 * loopback port until it is killed, and the parent fetches from it. The child sets every
 * tuning option, the open-file cache off among them, which the parent sees.
 */
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

static const char CONTENT[] = "served by filefetch_serve\n";

/* A loopback port that was free a moment ago (the kernel picked it for port 0). */
static uint16_t free_port(void) {
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0) {
        port = ntohs(addr.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static void pause_briefly(void) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(void) {
    char root[512], path[1024];
    CHECK(make_temp_dir(root, sizeof root) == 0);
    join_path(path, sizeof path, root, "served.txt");
    CHECK(write_file(path, CONTENT, strlen(CONTENT)) == 0);
    uint16_t port = free_port();
    CHECK(port != 0);

    /* Fork while this process has a single thread. */
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        filefetch_server_options *options = NULL;
        if (filefetch_server_options_new(&options) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_root(options, root) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_address(options, "127.0.0.1") != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_port(options, port) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_max_connections(options, 16) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_request_timeout_ms(options, 5000) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_send_timeout_ms(options, 5000) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_grace_period_ms(options, 0) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_threads(options, 1) != FILEFETCH_STATUS_OK ||
            filefetch_server_options_set_file_cache_ms(options, 0) != FILEFETCH_STATUS_OK) {
            _exit(2);
        }
        filefetch_status status = filefetch_serve(options);
        fprintf(stderr, "filefetch_serve returned %d: %s\n", (int)status, filefetch_last_error());
        _exit(3);
    }
    CHECK(child > 0);

    filefetch_fetch_options *options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    uint8_t *data = NULL;
    size_t len = 0;
    filefetch_status status = FILEFETCH_STATUS_CONNECTION;
    /* Until the child listens: at most 600 tries, 50 ms apart (slow under valgrind). */
    for (int i = 0; child > 0 && i < 600; i++) {
        status = filefetch_fetch_bytes("127.0.0.1", port, "served.txt", options, &data, &len);
        if (status != FILEFETCH_STATUS_CONNECTION) {
            break;
        }
        if (waitpid(child, NULL, WNOHANG) == child) {
            child = -1; /* it exited: filefetch_serve failed to start */
            break;
        }
        pause_briefly();
    }
    CHECK_STATUS(status, FILEFETCH_STATUS_OK);
    CHECK(status == FILEFETCH_STATUS_OK && len == strlen(CONTENT) &&
          memcmp(data, CONTENT, len) == 0);
    if (status == FILEFETCH_STATUS_OK) {
        filefetch_bytes_free(data);
    }
    CHECK_STATUS(filefetch_fetch_bytes("127.0.0.1", port, "other.txt", options, &data, &len),
                 FILEFETCH_STATUS_NOT_FOUND);

    /* With the open-file cache off, a name renamed away is gone at once. */
    char moved[1024];
    join_path(moved, sizeof moved, root, "moved.txt");
    CHECK(rename(path, moved) == 0);
    status = filefetch_fetch_bytes("127.0.0.1", port, "served.txt", options, &data, &len);
    CHECK_STATUS(status, FILEFETCH_STATUS_NOT_FOUND);
    if (status == FILEFETCH_STATUS_OK) {
        filefetch_bytes_free(data);
    }
    status = filefetch_fetch_bytes("127.0.0.1", port, "moved.txt", options, &data, &len);
    CHECK_STATUS(status, FILEFETCH_STATUS_OK);
    if (status == FILEFETCH_STATUS_OK) {
        CHECK(len == strlen(CONTENT) && memcmp(data, CONTENT, len) == 0);
        filefetch_bytes_free(data);
    }

    /* The server is still serving: filefetch_serve never returned. */
    CHECK(child > 0 && waitpid(child, NULL, WNOHANG) == 0);
    if (child > 0) {
        kill(child, SIGKILL);
        int wstatus = 0;
        CHECK(waitpid(child, &wstatus, 0) == child);
        CHECK(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
    }

    filefetch_fetch_options_free(options);
    remove_tree(root);
    return report("serve_test");
}
