/* SPDX-License-Identifier: MIT
 * What wasi-libc lacks, for the wasm32-wasi build only (compat.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <wasi/api.h>

#include "compat.h"

int dup3(int oldfd, int newfd, int flags)
{
    (void)flags;
    __wasi_errno_t e = __wasi_fd_renumber((__wasi_fd_t)oldfd, (__wasi_fd_t)newfd);
    if (e != 0) {
        errno = e;
        return -1;
    }
    return newfd;
}

/* fcntl(F_DUPFD_CLOEXEC): WASI cannot duplicate a descriptor, so the
 * descriptor itself is handed back (stdout and stderr live as long as the
 * module). Every call of fcntl is wrapped here (-Wl,--wrap=fcntl). */
int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);

int __wrap_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int arg = va_arg(ap, int);
    va_end(ap);
    if (cmd == F_DUPFD_CLOEXEC)
        return fd;
    return __real_fcntl(fd, cmd, arg);
}
