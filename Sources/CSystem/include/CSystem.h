#ifndef CAMCLASS_CSYSTEM_H
#define CAMCLASS_CSYSTEM_H
#include <sys/socket.h>

// Linux calls that glibc declares only under _GNU_SOURCE, which Swift's Glibc module does not set.

/// pipe2(2): a pipe whose ends are created with `flags` (O_NONBLOCK, O_CLOEXEC) at once.
int csystem_pipe2(int fds[2], int flags);

/// accept4(2): a connection whose descriptor is created with `flags` (SOCK_NONBLOCK, SOCK_CLOEXEC).
int csystem_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

#endif
