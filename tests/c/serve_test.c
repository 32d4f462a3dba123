/*
 * filefetch_serve, the blocking server: a child process serves a directory on a free
 * loopback port until it is killed, and the parent fetches from it. The child sets every
 * tuning option, the open-file cache off among them, which the parent sees.
 */
#include "check.h"

#ifndef _WIN32
#include <signal.h>
#include <sys/wait.h>
#endif

static const char CONTENT[] = "served by filefetch_serve\n";

/* A loopback port that was free a moment ago (the kernel picked it for port 0). */
static uint16_t free_port(void) {
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = 0;
    if (fd != NO_SOCKET && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0) {
        port = ntohs(addr.sin_port);
    }
    if (fd != NO_SOCKET) {
        close_socket(fd);
    }
    return port;
}

/* What the server process does: serve `root` on 127.0.0.1:port until killed. Returns (with
 * the exit code to use) only if filefetch_serve fails. */
static int serve_child(const char *root, uint16_t port) {
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
        return 2;
    }
    filefetch_status status = filefetch_serve(options);
    fprintf(stderr, "filefetch_serve returned %d: %s\n", (int)status, filefetch_last_error());
    return 3;
}

/* The server process: forked on POSIX; on Windows, which cannot fork, this program run
 * again as `serve_test --serve ROOT PORT`. */
#ifdef _WIN32
typedef HANDLE child_t;
#define NO_CHILD NULL

static child_t start_child(const char *self, const char *root, uint16_t port) {
    char command_line[2048];
    if ((size_t)snprintf(command_line, sizeof command_line, "\"%s\" --serve \"%s\" %u", self,
                         root, (unsigned)port) >= sizeof command_line) {
        return NO_CHILD;
    }
    STARTUPINFOA startup;
    PROCESS_INFORMATION process;
    memset(&startup, 0, sizeof startup);
    startup.cb = sizeof startup;
    fflush(NULL);
    if (!CreateProcessA(NULL, command_line, NULL, NULL, TRUE, 0, NULL, NULL, &startup,
                        &process)) {
        return NO_CHILD;
    }
    CloseHandle(process.hThread);
    return process.hProcess;
}

/* True while the child runs (it has not exited). */
static int child_running(child_t child) {
    return WaitForSingleObject(child, 0) == WAIT_TIMEOUT;
}

/* Kills the child; true when it was still running and ended killed. */
static int kill_child(child_t child) {
    DWORD code = 0;
    int killed = TerminateProcess(child, 137) &&
                 WaitForSingleObject(child, 30000) == WAIT_OBJECT_0 &&
                 GetExitCodeProcess(child, &code) && code == 137;
    CloseHandle(child);
    return killed;
}
#else
typedef pid_t child_t;
#define NO_CHILD ((pid_t)-1)

static child_t start_child(const char *self, const char *root, uint16_t port) {
    (void)self;
    /* Fork while this process has a single thread. */
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        _exit(serve_child(root, port));
    }
    return child > 0 ? child : NO_CHILD;
}

static int child_running(child_t child) {
    return waitpid(child, NULL, WNOHANG) == 0;
}

static int kill_child(child_t child) {
    int wstatus = 0;
    kill(child, SIGKILL);
    return waitpid(child, &wstatus, 0) == child && WIFSIGNALED(wstatus) &&
           WTERMSIG(wstatus) == SIGKILL;
}
#endif

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--serve") == 0) {
        return serve_child(argv[2], (uint16_t)atoi(argv[3]));
    }
    CHECK(sockets_init() == 0);
    char root[512], path[1024];
    CHECK(make_temp_dir(root, sizeof root) == 0);
    join_path(path, sizeof path, root, "served.txt");
    CHECK(write_file(path, CONTENT, strlen(CONTENT)) == 0);
    uint16_t port = free_port();
    CHECK(port != 0);

    child_t child = start_child(argv[0], root, port);
    CHECK(child != NO_CHILD);

    filefetch_fetch_options *options = NULL;
    CHECK_STATUS(filefetch_fetch_options_new(&options), FILEFETCH_STATUS_OK);
    uint8_t *data = NULL;
    size_t len = 0;
    filefetch_status status = FILEFETCH_STATUS_CONNECTION;
    /* Until the child listens: at most 600 tries, 50 ms apart (slow under valgrind). */
    for (int i = 0; child != NO_CHILD && i < 600; i++) {
        status = filefetch_fetch_bytes("127.0.0.1", port, "served.txt", options, &data, &len);
        if (status != FILEFETCH_STATUS_CONNECTION) {
            break;
        }
        if (!child_running(child)) {
            child = NO_CHILD; /* it exited: filefetch_serve failed to start */
            break;
        }
        sleep_ms(50);
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
    CHECK(child != NO_CHILD && child_running(child));
    if (child != NO_CHILD) {
        CHECK(kill_child(child));
    }

    filefetch_fetch_options_free(options);
    remove_tree(root);
    return report("serve_test");
}
