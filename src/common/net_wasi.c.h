/* SPDX-License-Identifier: MIT
 * WasmEdge sockets backend of net.c, #included by net.c in the wasm32-wasi
 * build. WASI preview 1 has accept, recv, send and shutdown but no way to
 * open, bind, listen or connect; WasmEdge adds them as non-standard
 * imports of wasi_snapshot_preview1 (docs/wasm.md has their layouts):
 *
 *   - sockets are blocking when opened: fd_fdstat_set_flags(NONBLOCK) for
 *     every one, accepted ones included (WasmEdge 0.14's sock_accept puts
 *     its NONBLOCK flag on the listener instead);
 *   - a connect's result comes from sock_getsockopt(SO_ERROR), already a
 *     WASI errno (the same numbers as wasi-libc's errno);
 *   - writes to sockets go through sock_send, which is sendmsg(MSG_NOSIGNAL)
 *     in the host: fd_write is writev() there and a peer's reset would kill
 *     the `wasmedge` process with SIGPIPE. The request path calls write()
 *     and writev(); the wasm link wraps them (-Wl,--wrap=..., mk/wasm.mk)
 *     into __wrap_write/__wrap_writev below, which fall back to fd_write
 *     for what is not a socket (stderr, the access log);
 *   - reads and writes that come up short tell the event loop, which
 *     re-arms the direction (ev_fd_drained, ev_poll.c.h);
 *   - names are never resolved (sock_getaddrinfo blocks the only thread);
 *   - there is no TCP_NODELAY (only the SOL_SOCKET level exists).
 * WasmEdge's option numbers are its own, not Linux's. */
#include <unistd.h>
#include <wasi/api.h>

#include "ev.h"

#define WE_IMPORT(name) \
    __attribute__((import_module("wasi_snapshot_preview1"), import_name(name)))

/* WasmEdge's address buffer: 4 or 16 raw bytes (its "v1" convention). */
struct we_address {
    uint8_t *buf;
    uint32_t buf_len;
};

WE_IMPORT("sock_open") int32_t we_sock_open(int32_t af, int32_t socktype, int32_t *fd);
WE_IMPORT("sock_bind") int32_t we_sock_bind(int32_t fd, struct we_address *a, int32_t port);
WE_IMPORT("sock_listen") int32_t we_sock_listen(int32_t fd, int32_t backlog);
WE_IMPORT("sock_connect") int32_t we_sock_connect(int32_t fd, struct we_address *a, int32_t port);
WE_IMPORT("sock_getlocaladdr")
int32_t we_sock_getlocaladdr(int32_t fd, struct we_address *a, int32_t *type, int32_t *port);
WE_IMPORT("sock_getpeeraddr")
int32_t we_sock_getpeeraddr(int32_t fd, struct we_address *a, int32_t *type, int32_t *port);
WE_IMPORT("sock_setsockopt")
int32_t we_sock_setsockopt(int32_t fd, int32_t level, int32_t name, const void *v, int32_t len);
WE_IMPORT("sock_getsockopt")
int32_t we_sock_getsockopt(int32_t fd, int32_t level, int32_t name, void *v, int32_t *len);

enum { WE_AF_INET4 = 1, WE_AF_INET6 = 2, WE_SOCK_STREAM = 2 };
enum { WE_SOL_SOCKET = 0 };
enum {
    WE_SO_REUSEADDR = 0,
    WE_SO_ERROR = 2,
    WE_SO_SNDBUF = 5,
    WE_SO_RCVBUF = 6,
    WE_SO_KEEPALIVE = 7,
    WE_SO_LINGER = 9,
};

static const char *backend_host(const char *host, bool resolve, struct net_addr *out)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        out->len = sizeof(*v4);
        return NULL;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        out->len = sizeof(*v6);
        return NULL;
    }
    return resolve ? "names are not resolved in the WASI build: give a numeric IP address"
                   : "host must be a numeric IP address";
}

/* The raw address bytes of <a> as WasmEdge wants them; returns the port. */
static int to_we(const struct net_addr *a, struct we_address *w)
{
    if (a->ss.ss_family == AF_INET6) {
        w->buf = (uint8_t *)&((struct sockaddr_in6 *)&a->ss)->sin6_addr;
        w->buf_len = 16;
    } else {
        w->buf = (uint8_t *)&((struct sockaddr_in *)&a->ss)->sin_addr;
        w->buf_len = 4;
    }
    return net_addr_port(a);
}

static void from_we(const uint8_t *bytes, int32_t type, int32_t port, struct net_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (type == 6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
        v6->sin6_family = AF_INET6;
        memcpy(&v6->sin6_addr, bytes, 16);
        v6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*v6);
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
        v4->sin_family = AF_INET;
        memcpy(&v4->sin_addr, bytes, 4);
        v4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*v4);
    }
}

static int set_nonblock(int fd)
{
    return -(int)__wasi_fd_fdstat_set_flags((__wasi_fd_t)fd, __WASI_FDFLAGS_NONBLOCK);
}

static int open_stream(const struct net_addr *a)
{
    int32_t fd = -1;
    int32_t e = we_sock_open(a->ss.ss_family == AF_INET6 ? WE_AF_INET6 : WE_AF_INET4,
                             WE_SOCK_STREAM, &fd);
    return e != 0 ? -e : fd;
}

int net_listen(const struct net_addr *a, int backlog, bool reuseport, char *err)
{
    char s[NET_ADDRSTR_LEN];
    int one = 1, e;
    (void)reuseport; /* one worker: nothing shares the port */
    int fd = open_stream(a);
    if (fd < 0) {
        snprintf(err, NET_ERR_LEN, "socket: %s", strerror(-fd));
        return fd;
    }
    we_sock_setsockopt(fd, WE_SOL_SOCKET, WE_SO_REUSEADDR, &one, sizeof(one));
    struct we_address w;
    int port = to_we(a, &w);
    if ((e = we_sock_bind(fd, &w, port)) != 0 || (e = we_sock_listen(fd, backlog)) != 0 ||
        (e = -set_nonblock(fd)) != 0) {
        net_addr_str(a, s, sizeof(s));
        snprintf(err, NET_ERR_LEN, "listen on %s: %s", s, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

int net_local_addr(int fd, struct net_addr *out)
{
    uint8_t bytes[16] = {0};
    struct we_address w = {bytes, sizeof(bytes)};
    int32_t type = 0, port = 0;
    int32_t e = we_sock_getlocaladdr(fd, &w, &type, &port);
    if (e != 0)
        return -e;
    from_we(bytes, type, port, out);
    return 0;
}

int net_accept(int lfd, struct net_addr *peer)
{
    for (;;) {
        __wasi_fd_t fd;
        __wasi_errno_t e = __wasi_sock_accept((__wasi_fd_t)lfd, __WASI_FDFLAGS_NONBLOCK, &fd);
        if (e == 0) {
            /* WasmEdge 0.14's sock_accept applies NONBLOCK to the listening
             * socket, not the new one (inode-linux.cpp: fcntl(Fd, ...)
             * instead of NewFd): set it here, or a read past the request
             * blocks the only thread (docs/wasm.md). */
            int r = set_nonblock((int)fd);
            if (r != 0) {
                close((int)fd);
                return r;
            }
            if (peer != NULL) {
                uint8_t bytes[16] = {0};
                struct we_address w = {bytes, sizeof(bytes)};
                int32_t type = 0, port = 0;
                if (we_sock_getpeeraddr((int32_t)fd, &w, &type, &port) == 0)
                    from_we(bytes, type, port, peer);
                else
                    memset(peer, 0, sizeof(*peer));
            }
            return (int)fd;
        }
        if (e == __WASI_ERRNO_INTR || e == __WASI_ERRNO_CONNABORTED)
            continue;
        if (e == __WASI_ERRNO_AGAIN)
            ev_fd_drained(lfd, EV_READ);
        return -(int)e;
    }
}

int net_connect(const struct net_addr *a)
{
    int fd = open_stream(a);
    if (fd < 0)
        return fd;
    int e = -set_nonblock(fd);
    struct we_address w;
    int port = to_we(a, &w);
    if (e == 0)
        e = we_sock_connect(fd, &w, port);
    if (e != 0 && e != EINPROGRESS) {
        close(fd);
        return -e;
    }
    return fd;
}

int net_connect_result(int fd)
{
    int32_t v = 0, len = sizeof(v);
    int32_t e = we_sock_getsockopt(fd, WE_SOL_SOCKET, WE_SO_ERROR, &v, &len);
    return e != 0 ? -e : -v;
}

void net_set_nodelay(int fd)
{
    (void)fd; /* WasmEdge has no TCP_NODELAY (docs/wasm.md) */
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

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    int we = -1;
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_REUSEADDR: we = WE_SO_REUSEADDR; break;
        case SO_SNDBUF: we = WE_SO_SNDBUF; break;
        case SO_RCVBUF: we = WE_SO_RCVBUF; break;
        case SO_KEEPALIVE: we = WE_SO_KEEPALIVE; break;
        case SO_LINGER: we = WE_SO_LINGER; break; /* struct linger: same layout */
        default: break;
        }
    }
    if (we == -1) {
        errno = ENOPROTOOPT;
        return -1;
    }
    int32_t e = we_sock_setsockopt(fd, WE_SOL_SOCKET, we, value, (int32_t)len);
    if (e != 0) {
        errno = e;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- wrapped calls
 * The wasm link renames every call of read, write and writev to these
 * (-Wl,--wrap); __real_* are libc's. */
ssize_t __real_read(int fd, void *p, size_t n);
ssize_t __real_write(int fd, const void *p, size_t n);
ssize_t __real_writev(int fd, const struct iovec *iov, int n);
ssize_t __wrap_read(int fd, void *p, size_t n);
ssize_t __wrap_write(int fd, const void *p, size_t n);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int n);

ssize_t __wrap_read(int fd, void *p, size_t n)
{
    ssize_t r = __real_read(fd, p, n);
    if (r < 0 ? errno == EAGAIN : (size_t)r < n)
        ev_fd_drained(fd, EV_READ);
    return r;
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int n)
{
    size_t want = 0, sent = 0;
    if (n < 0) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < n; i++)
        want += iov[i].iov_len;
    /* struct iovec and __wasi_ciovec_t have the same layout in wasi-libc. */
    __wasi_errno_t e =
        __wasi_sock_send((__wasi_fd_t)fd, (const __wasi_ciovec_t *)iov, (size_t)n, 0, &sent);
    if (e == __WASI_ERRNO_NOTSOCK)
        return __real_writev(fd, iov, n);
    if (e != 0) {
        if (e == __WASI_ERRNO_AGAIN)
            ev_fd_drained(fd, EV_WRITE);
        errno = e;
        return -1;
    }
    if (sent < want)
        ev_fd_drained(fd, EV_WRITE);
    return (ssize_t)sent;
}

ssize_t __wrap_write(int fd, const void *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    return __wrap_writev(fd, &iov, 1);
}
