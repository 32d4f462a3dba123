/* Serves one root with libfilefetch, as a C program would: `serve_root ROOT` listens on
 * 127.0.0.1 (a free port), prints "port N", and serves until its standard input closes, then
 * shuts down gracefully. Exits 1 with filefetch_last_error()'s text if anything fails. */
#include <filefetch.h>
#include <stdio.h>

static int failed(const char *what) {
    fprintf(stderr, "serve_root: %s: %s\n", what, filefetch_last_error());
    return 1;
}

int main(int argc, char **argv) {
    filefetch_server_options *options = NULL;
    filefetch_server *server = NULL;
    uint16_t port = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: serve_root ROOT\n");
        return 2;
    }
    if (filefetch_server_options_new(&options) != FILEFETCH_STATUS_OK)
        return failed("options");
    if (filefetch_server_options_set_root(options, argv[1]) != FILEFETCH_STATUS_OK)
        return failed("root");
    if (filefetch_server_options_set_address(options, "127.0.0.1") != FILEFETCH_STATUS_OK)
        return failed("address");
    if (filefetch_server_start(options, &server) != FILEFETCH_STATUS_OK)
        return failed("start");
    filefetch_server_options_free(options);
    if (filefetch_server_port(server, &port) != FILEFETCH_STATUS_OK)
        return failed("port");
    printf("port %u\n", (unsigned)port);
    fflush(stdout);
    while (getchar() != EOF) {
    }
    if (filefetch_server_shutdown(server) != FILEFETCH_STATUS_OK)
        return failed("shutdown");
    filefetch_server_free(server);
    return 0;
}
