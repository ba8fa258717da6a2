/*
 * A minimal camclassd subscriber in C (protocol v1, docs/protocol.md): connect to the Unix
 * socket, ask for cats and dogs scoring at least 0.3 plus stable-label changes, and print each
 * record line as it arrives. No JSON library: a subscriber that only forwards or greps lines
 * needs none; parse with any JSON parser to read fields.
 *
 *   cc -O2 -Wall -o subscribe examples/c/subscribe.c
 *   ./subscribe /run/camclassd/camclassd.sock [COUNT]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Does the record line start with this prefix (a string literal)? */
#define IS(line, prefix) (strncmp((line), (prefix), sizeof(prefix) - 1) == 0)

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/run/camclassd/camclassd.sock";
    long limit = argc > 2 ? strtol(argv[2], NULL, 10) : 0;  /* classification records; 0 = forever */

    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (fd < 0 || strlen(path) >= sizeof addr.sun_path) { perror("socket"); return 1; }
    strcpy(addr.sun_path, path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "cannot connect to camclassd at %s: %s\n", path, strerror(errno));
        return 69;
    }

    /* One request line; the daemon answers {"type":"subscribed",...} and then filters for us. */
    const char *req = "{\"subscribe\":{\"labels\":[\"cat\",\"dog\"],\"min_score\":0.3,\"events\":[\"change\"]}}\n";
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) { perror("send"); return 1; }

    char buf[1 << 16];
    size_t have = 0;
    long seen = 0;
    int filtered = 0;  /* records before the "subscribed" reply are not filtered yet: skip them */
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;                       /* the daemon stopped */
        have += (size_t)n;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', have - (size_t)(start - buf))) != NULL) {
            *nl = '\0';
            if (!filtered && IS(start, "{\"type\":\"subscribed\"")) filtered = 1;
            if (!filtered && IS(start, "{\"type\":\"error\"")) { fprintf(stderr, "%s\n", start); return 64; }
            if (!filtered && !IS(start, "{\"type\":\"hello\"")) { start = nl + 1; continue; }
            printf("%s\n", start);               /* one complete JSON record */
            if (IS(start, "{\"type\":\"classification\"") && limit > 0 && ++seen >= limit) {
                fflush(stdout);
                close(fd);
                return 0;
            }
            start = nl + 1;
        }
        have -= (size_t)(start - buf);
        memmove(buf, start, have);
        if (have == sizeof buf) { fprintf(stderr, "record longer than %zu bytes\n", sizeof buf); return 1; }
        fflush(stdout);
    }
    close(fd);
    return 0;
}
