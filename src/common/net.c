/* SPDX-License-Identifier: MIT
 * Non-blocking socket helpers (redis' anet, reduced to what a proxy needs):
 * addresses here, sockets in the platform backend #included below. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net.h"
#include "util.h"

/* The platform's sockets: POSIX natively, WasmEdge's sock_* imports in the
 * wasm32-wasi build (docs/wasm.md). Each defines backend_host() and the
 * socket functions of net.h; the address functions below are shared. */
#ifdef __wasi__
#include "net_wasi.c.h"
#else
#include "net_posix.c.h"
#endif

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
    memset(out, 0, sizeof(*out));
    const char *why = backend_host(host, resolve, out);
    if (why != NULL) {
        snprintf(err, NET_ERR_LEN, "bad address '%s': %s", s, why);
        return -EINVAL;
    }
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

bool net_addr_reaches(const struct net_addr *a, const struct net_addr *listener)
{
    const struct net_addr *l = listener;
    if (net_addr_equal(a, l))
        return true;
    if (net_addr_port(a) != net_addr_port(l) || !net_addr_is_loopback(a))
        return false;
    if (l->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&l->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (l->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&l->ss)->sin6_addr);
    return false;
}

