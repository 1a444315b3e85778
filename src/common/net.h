/* SPDX-License-Identifier: MIT
 * Socket plumbing: address parsing, non-blocking listen/accept/connect.
 * Errors are returned as -errno; functions that can fail for reasons worth
 * telling a user fill a caller buffer <err> of NET_ERR_LEN bytes. */
#ifndef LLAMALB_NET_H
#define LLAMALB_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#ifdef __wasi__
#include "net_wasi.h" /* setsockopt, which wasi-libc leaves out */
#endif

#define NET_ERR_LEN 256
#define NET_ADDRSTR_LEN 64 /* "[v6]:port" fits */

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Parses "HOST:PORT" or "[V6]:PORT" where HOST is a numeric address; with
 * <resolve> a host name is looked up too (blocking: never on a loop thread).
 * Port 0 is allowed only if <allow_port0>. Returns 0 or -EINVAL with <err>. */
int net_parse_addr(const char *s, bool resolve, bool allow_port0, struct net_addr *out,
                   char *err);

/* Formats <a> as "HOST:PORT" ("[v6]:port" for IPv6) into <out>. */
void net_addr_str(const struct net_addr *a, char *out, size_t outlen);
/* Just the host part (no brackets) and the port. */
void net_addr_host(const struct net_addr *a, char *out, size_t outlen);
int net_addr_port(const struct net_addr *a);
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);
bool net_addr_is_loopback(const struct net_addr *a);
/* True if a connection to <a> would reach a socket listening on <listener>:
 * the same address, or a loopback address with its port when <listener> is
 * the wildcard (0.0.0.0 or ::). */
bool net_addr_reaches(const struct net_addr *a, const struct net_addr *listener);

/* Creates a non-blocking listening socket bound to <a> (SO_REUSEADDR, and
 * SO_REUSEPORT when <reuseport>). Returns the fd or -errno with <err>. */
int net_listen(const struct net_addr *a, int backlog, bool reuseport, char *err);
/* The address a socket is bound to (resolves port 0). */
int net_local_addr(int fd, struct net_addr *out);

/* Accepts one connection as non-blocking, close-on-exec. Returns the fd,
 * -EAGAIN when none is pending, or another -errno. Fills <peer> if non-NULL. */
int net_accept(int lfd, struct net_addr *peer);

/* Starts a non-blocking connect. Returns the fd (connected or in progress)
 * or -errno. */
int net_connect(const struct net_addr *a);
/* After a connect became writable: 0 when connected, else -errno. */
int net_connect_result(int fd);

void net_set_nodelay(int fd);

/* One read for an edge-triggered loop: retries EINTR, and clears <*ready>
 * when the socket has nothing more to give, so the caller's loop stops
 * without the read that would only say EAGAIN: after EAGAIN, EOF or an
 * error, and after a short read (new data raises a new edge) unless
 * <peer_closed> (the peer shut its side: read on to the EOF, for which no
 * edge will come). Returns the byte count, 0 at EOF, -EAGAIN, or -errno. */
ssize_t net_read(int fd, void *p, size_t n, bool *ready, bool peer_closed);

#endif
