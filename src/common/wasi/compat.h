/* SPDX-License-Identifier: MIT
 * Declarations POSIX code of the balancer uses and Debian's wasi-libc
 * leaves out (WASI has no dup), force-included by mk/wasm.mk in the
 * wasm32-wasi build only; src/common/wasi/compat.c implements them. */
#ifndef LLAMALB_WASI_COMPAT_H
#define LLAMALB_WASI_COMPAT_H

#ifndef F_DUPFD_CLOEXEC
#define F_DUPFD_CLOEXEC 1030
#endif

/* WASI's fd_renumber: <oldfd> becomes <newfd> (closing what <newfd> was) and
 * <oldfd> is gone, so a later close(oldfd) fails harmlessly. */
int dup3(int oldfd, int newfd, int flags);

#endif
