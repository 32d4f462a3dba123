/* Scenario 3's floor: the least a server can do per connection. Blocking accept(2), read
 * the whole FileRequest (0x497E, type 1, 2-byte name length, name; at most 1024 bytes of
 * name), one write(2) of the FileResponse header (0x497E, type 2, status 1, length 1024)
 * and 1 KiB held in memory, close(2). Any name gets the same 1 KiB. One thread, the
 * kernel's default socket options, no logging, no timeouts.
 *
 *   floor PORT        (listens on 127.0.0.1:PORT)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    static unsigned char response[8 + 1024] = {0x49, 0x7E, 2, 1, 0, 0, 4, 0};
    unsigned char request[5 + 1024];
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);

    if (argc != 2) return 2;
    addr.sin_port = htons(atoi(argv[1]));
    for (size_t i = 8; i < sizeof response; i++) response[i] = (unsigned char)i;
    signal(SIGPIPE, SIG_IGN);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 1024)) return 1;
    for (;;) {
        int c = accept(s, NULL, NULL);
        size_t got = 0, want = 0;
        if (c < 0) continue;
        while (got < sizeof request) { /* normally one read: the request comes in one segment */
            ssize_t n = read(c, request + got, sizeof request - got);
            if (n <= 0) break;
            got += (size_t)n;
            if (got < 5) continue;
            if (request[0] != 0x49 || request[1] != 0x7E || request[2] != 1) break;
            want = 5 + ((size_t)request[3] << 8 | request[4]);
            if (want == 5 || want > sizeof request || got >= want) break;
        }
        if (want > 5 && want <= sizeof request && got >= want) write(c, response, sizeof response);
        close(c);
    }
}
