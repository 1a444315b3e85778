/* SPDX-License-Identifier: MIT
 * Non-blocking socket helpers (redis' anet, reduced to what a proxy needs). */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

int net_parse_addr(const char *s, bool resolve, bool allow_port0, struct net_addr *out, char *err)
{
    char host[256];
    const char *colon, *port;
    size_t hlen;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':') {
            snprintf(err, NET_ERR_LEN, "bad address '%s': expected [V6]:PORT", s);
            return -EINVAL;
        }
        hlen = (size_t)(end - s - 1);
        memcpy(host, s + 1, hlen < sizeof(host) ? hlen : 0);
        port = end + 2;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            snprintf(err, NET_ERR_LEN, "bad address '%s': expected HOST:PORT", s);
            return -EINVAL;
        }
        hlen = (size_t)(colon - s);
        port = colon + 1;
        if (hlen < sizeof(host))
            memcpy(host, s, hlen);
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, NET_ERR_LEN, "bad address '%s': bad host", s);
        return -EINVAL;
    }
    host[hlen] = '\0';
    uint64_t p;
    if (util_parse_u64(port, strlen(port), allow_port0 ? 0 : 1, 65535, &p) != 0) {
        snprintf(err, NET_ERR_LEN, "bad address '%s': port must be %d-65535", s,
                 allow_port0 ? 0 : 1);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (!resolve)
        hints.ai_flags = AI_NUMERICHOST;
    int r = getaddrinfo(host, NULL, &hints, &res);
    if (r != 0 || res == NULL) {
        snprintf(err, NET_ERR_LEN, "bad address '%s': %s", s,
                 resolve ? gai_strerror(r) : "host must be a numeric IP address");
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    if (out->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)p);
    else
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)p);
    return 0;
}

void net_addr_host(const struct net_addr *a, char *out, size_t outlen)
{
    if (a->ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, out,
                  (socklen_t)outlen);
    else if (a->ss.ss_family == AF_INET && outlen >= INET_ADDRSTRLEN) {
        /* Formatted here, not by inet_ntop: glibc's goes through sprintf, and
         * this runs for every proxied request (X-Forwarded-For). */
        const unsigned char *q =
            (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
        size_t n = 0;
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                out[n++] = '.';
            n += util_fmt_u64(out + n, q[i]);
        }
        out[n] = '\0';
    } else if (a->ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, out,
                  (socklen_t)outlen);
    else
        snprintf(out, outlen, "?");
}

int net_addr_port(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return 0;
}

void net_addr_str(const struct net_addr *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    net_addr_host(a, host, sizeof(host));
    if (a->ss.ss_family == AF_INET6)
        snprintf(out, outlen, "[%s]:%d", host, net_addr_port(a));
    else
        snprintf(out, outlen, "%s:%d", host, net_addr_port(a));
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family || net_addr_port(a) != net_addr_port(b))
        return false;
    if (a->ss.ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr,
                      &((const struct sockaddr_in *)&b->ss)->sin_addr, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, 16) == 0;
}

bool net_addr_is_loopback(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return false;
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
