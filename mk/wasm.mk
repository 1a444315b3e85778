# The balancer as a wasm32-wasi module for WasmEdge (docs/wasm.md), built
# from the same sources as the native program with Debian's clang 14,
# wasi-libc, libclang-rt-14-dev-wasm32 and lld (scripts/deps.sh wasm).
#
#   make wasm          $(WASM_OUT)/llamalb.wasm (WASM_OUT defaults to build)
#   make wasm-tests    the src/common unit tests as .wasm, for tests/wasm/
#   make wasm-aot      $(WASM_OUT)/llamalb.aot.wasm with `wasmedge compile`
#                      (needs WasmEdge: $WASMEDGE, PATH or build/tools/wasmedge)
#   make wasm-image    $(WASM_OUT)/llamalb-wasm.oci.tar, an OCI image layout archive
#   make wasm-bench    native against the module interpreted and AOT (bench/wasm.py)
#
# Platform code is chosen by __wasi__ inside the backends (ev_poll.c.h,
# net_wasi.c.h, main_wasi.c.h); src/common/wasi/ stands in for the
# <pthread.h> wasi-libc lacks (one thread: the mutexes are no-ops).

WASM_OUT    ?= build
WASM_CC     ?= clang-14
WASM_OPT    ?= -O2
WASM_WARN   := -Wall -Wextra -Wvla -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes
WASM_CFLAGS := --target=wasm32-wasi -std=c11 -D_GNU_SOURCE -DLLAMALB_VERSION=\"$(VERSION)\" \
               -D_WASI_EMULATED_GETPID $(WASM_WARN) $(WASM_OPT) $(if $(WERROR),-Werror) \
               -Isrc/common/wasi -Isrc/common -include src/common/wasi/compat.h -MMD -MP
# read/write/writev are wrapped by net_wasi.c.h: sockets written with
# sock_send (no SIGPIPE in the host), short reads and writes re-arm the
# poll_oneoff loop; fcntl by src/common/wasi/compat.c. A 1 MiB stack (wasm-ld's default is 64 KiB).
WASM_LDFLAGS := --target=wasm32-wasi -Wl,--wrap=read,--wrap=write,--wrap=writev,--wrap=fcntl \
                -Wl,-z,stack-size=1048576 -Wl,--strip-all
WASM_LIBS   := -lwasi-emulated-getpid

wobj = $(patsubst %.c,$(WASM_OUT)/wasm-obj/%.o,$(1))
WASM_COMMON_OBJ := $(call wobj,$(COMMON_SRC) src/common/wasi/compat.c)
WASM_PROXY_OBJ  := $(call wobj,$(PROXY_SRC))
# Sources other mk/ files generate into $(B)/gen (the status page, mk/status.mk).
WASM_PROXY_OBJ  += $(patsubst $(B)/gen/%.c,$(WASM_OUT)/wasm-obj/gen/%.o,$(STATUS_C))
# The unit tests of src/common that make sense in one thread without pipes.
WASM_UNIT       ?= test_buf test_http1 test_json test_ev_wasi
WASM_UNIT_BIN   := $(patsubst %,$(WASM_OUT)/wasm-tests/%.wasm,$(WASM_UNIT))

.PHONY: wasm wasm-tests wasm-aot wasm-deps wasm-prep wasm-bench wasm-image
wasm: $(WASM_OUT)/llamalb.wasm
wasm-tests: $(WASM_UNIT_BIN)

wasm-deps:
	@test -f /usr/lib/wasm32-wasi/libc.a -a -f /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a \
		-a -x /usr/bin/wasm-ld-14 || scripts/deps.sh wasm

# `make test` builds the module and the wasm unit tests first; tests/wasm/
# runs them under WasmEdge when it is found (a SKIP line when not, a
# failure under CI=true).
wasm-prep: wasm-deps
	@$(MAKE) --no-print-directory wasm wasm-tests
test: wasm-prep

$(WASM_OUT)/wasm-obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) -c $< -o $@

$(WASM_OUT)/wasm-obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) -c $< -o $@

$(WASM_OUT)/llamalb.wasm: $(WASM_PROXY_OBJ) $(WASM_COMMON_OBJ)
	$(WASM_CC) $(WASM_LDFLAGS) $^ -o $@ $(WASM_LIBS)
	@echo "$@: $$(stat -c %s $@) bytes"

# The unit tests: tests/guard.h's mmap through wasi-libc's emulation, its
# PROT_NONE page impossible (tests/wasm/unit_compat.c).
WASM_TEST_CFLAGS := -D_WASI_EMULATED_MMAN
WASM_TEST_LIBS   := -Wl,--wrap=mprotect -lwasi-emulated-mman
$(WASM_OUT)/wasm-obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_CFLAGS) $(WASM_TEST_CFLAGS) -c $< -o $@
WASM_TEST_OBJ := $(WASM_OUT)/wasm-obj/tests/tap.o $(WASM_OUT)/wasm-obj/tests/wasm/unit_compat.o
$(WASM_OUT)/wasm-tests/test_ev_wasi.wasm: $(WASM_OUT)/wasm-obj/tests/wasm/test_ev_wasi.o \
		$(WASM_TEST_OBJ) $(WASM_COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_LDFLAGS) $^ -o $@ $(WASM_LIBS) $(WASM_TEST_LIBS)
$(WASM_OUT)/wasm-tests/%.wasm: $(WASM_OUT)/wasm-obj/tests/unit/%.o $(WASM_TEST_OBJ) $(WASM_COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(WASM_CC) $(WASM_LDFLAGS) $^ -o $@ $(WASM_LIBS) $(WASM_TEST_LIBS)

# The AOT-compiled ("universal") module: the same .wasm with native code
# for this machine in a custom section; any WasmEdge runs it.
WASMEDGE_BIN = $(or $(WASMEDGE),$(shell command -v wasmedge 2>/dev/null),$(wildcard build/tools/wasmedge/bin/wasmedge))
wasm-aot: $(WASM_OUT)/llamalb.aot.wasm
$(WASM_OUT)/llamalb.aot.wasm: $(WASM_OUT)/llamalb.wasm
	@test -n "$(WASMEDGE_BIN)" || { echo "wasm-aot: WasmEdge not found (\$$WASMEDGE, PATH, build/tools/wasmedge)"; exit 1; }
	$(WASMEDGE_BIN) compile $< $@ >/dev/null

# An OCI image layout archive of the module, for `k3s ctr images import
# --all-platforms` (deploy/wasm/oci_image.py; no Docker, no registry).
WASM_IMAGE ?= llamalb-wasm:$(VERSION)
wasm-image: $(WASM_OUT)/llamalb-wasm.oci.tar
$(WASM_OUT)/llamalb-wasm.oci.tar: $(WASM_OUT)/llamalb.wasm deploy/wasm/oci_image.py
	@python3 deploy/wasm/oci_image.py $< $@ $(WASM_IMAGE)

# Native against the module interpreted and AOT-compiled (bench/wasm.py;
# needs WasmEdge and wrk: scripts/deps.sh bench).
wasm-bench: wasm
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory $(B)/llamalb $(B)/llamalb-sim
	@python3 bench/wasm.py $(B)

-include $(shell find $(WASM_OUT)/wasm-obj -name '*.d' 2>/dev/null)
