/* SPDX-License-Identifier: MIT
 * POSIX sockets backend of net.c (Linux: accept4, SOCK_NONBLOCK, TCP_NODELAY),
 * #included by net.c. */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

/* Fills <out>'s address from <host> (numeric, or looked up when <resolve>);
 * returns NULL, or why it cannot. */
static const char *backend_host(const char *host, bool resolve, struct net_addr *out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (!resolve)
        hints.ai_flags = AI_NUMERICHOST;
    int r = getaddrinfo(host, NULL, &hints, &res);
    if (r != 0 || res == NULL)
        return resolve ? gai_strerror(r) : "host must be a numeric IP address";
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return NULL;
}

int net_listen(const struct net_addr *a, int backlog, bool reuseport, char *err)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    char s[NET_ADDRSTR_LEN];
    if (fd == -1) {
        snprintf(err, NET_ERR_LEN, "socket: %s", strerror(errno));
        return -errno;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1 || listen(fd, backlog) == -1) {
        int e = errno;
        net_addr_str(a, s, sizeof(s));
        snprintf(err, NET_ERR_LEN, "listen on %s: %s", s, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

int net_local_addr(int fd, struct net_addr *out)
{
    memset(out, 0, sizeof(*out));
    out->len = sizeof(out->ss);
    return getsockname(fd, (struct sockaddr *)&out->ss, &out->len) == -1 ? -errno : 0;
}

int net_accept(int lfd, struct net_addr *peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    for (;;) {
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd != -1) {
            if (peer != NULL) {
                memcpy(&peer->ss, &ss, len);
                peer->len = len;
            }
            return fd;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

int net_connect(const struct net_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    net_set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == -1 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int net_connect_result(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == -1)
        return -errno;
    return -e;
}

void net_set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

ssize_t net_read(int fd, void *p, size_t n, bool *ready, bool peer_closed)
{
    ssize_t r;
    do
        r = read(fd, p, n);
    while (r == -1 && errno == EINTR);
    if (r > 0) {
        if ((size_t)r < n && !peer_closed)
            *ready = false;
        return r;
    }
    *ready = false;
    return r == 0 ? 0 : -errno;
}
