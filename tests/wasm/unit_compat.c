/* SPDX-License-Identifier: MIT
 * Linked into the src/common unit tests built to wasm (mk/wasm.mk). WASI
 * has no page protection: tests/guard.h's PROT_NONE page cannot exist, so
 * mprotect (wrapped: -Wl,--wrap=mprotect) accepts and does nothing; the
 * inputs still end at the end of their mapping, and a read past it stays
 * inside the module's linear memory, unnoticed. Native runs keep the guard. */
#include <stddef.h>

int __wrap_mprotect(void *addr, size_t len, int prot);

int __wrap_mprotect(void *addr, size_t len, int prot)
{
    (void)addr;
    (void)len;
    (void)prot;
    return 0;
}
