# llamalb: one non-recursive Makefile for the three programs, the tests,
# the fuzzers and the benchmarks. `make` builds; `make test` installs missing
# Debian packages, builds and runs every unit and integration test.
#
#   make               build/llamalb build/llamalb-sim build/llamalb-watcher
#   make test          unit + integration tests (prove), fuzz corpora replayed
#   make check         the same suite built with ASan + UBSan (build-san/)
#   make demo          balancer + two simulated backends + real traffic
#   make fuzz          run each libFuzzer target for FUZZ_SECONDS (needs clang)
#   make bench         benchmarks against nginx and HAProxy (bench/)
#   make fmt           clang-format the sources

CC      ?= cc
VERSION := 0.1.0
SAN     ?=
B       ?= $(if $(SAN),build-san,build)
OPT     ?= -O2
WARN    := -Wall -Wextra -Wvla -Wshadow -Wduplicated-cond -Wlogical-op -Wformat=2 \
           -Wmissing-prototypes -Wstrict-prototypes
CFLAGS  ?= $(OPT) -g
CPPFLAGS ?=
SANFLAGS := -fsanitize=address,undefined
# Debian's hardening flags (fortified libc calls, stack protector, full
# RELRO, immediate binding) when dpkg-buildflags is there and this is not a
# sanitizer build; HARDEN= turns them off. CPPFLAGS, CFLAGS and LDFLAGS
# given on the command line or in the environment are always honoured.
HARDEN  ?= $(if $(SAN),,$(shell command -v dpkg-buildflags >/dev/null 2>&1 && echo 1))
DPKG_FLAGS = $(shell DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get $(1))
HARDEN_CPPFLAGS := $(if $(HARDEN),$(call DPKG_FLAGS,CPPFLAGS))
HARDEN_CFLAGS   := $(if $(HARDEN),$(filter -fstack-protector% -Wformat -Werror=format-security,$(call DPKG_FLAGS,CFLAGS)))
HARDEN_LDFLAGS  := $(if $(HARDEN),$(call DPKG_FLAGS,LDFLAGS))
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -DLLAMALB_VERSION=\"$(VERSION)\" $(WARN) $(HARDEN_CPPFLAGS) \
              $(CPPFLAGS) $(HARDEN_CFLAGS) $(CFLAGS) $(if $(WERROR),-Werror) \
              $(if $(SAN),$(SANFLAGS) -fno-omit-frame-pointer -fno-sanitize-recover=all) \
              -Isrc/common -MMD -MP
LDFLAGS ?=
ALL_LDFLAGS := $(HARDEN_LDFLAGS) $(LDFLAGS) $(if $(SAN),$(SANFLAGS)) -pthread
LIBS    := -lm

COMMON_SRC  := $(filter-out %.c.h,$(wildcard src/common/*.c))
PROXY_SRC   := $(wildcard src/proxy/*.c)
SIM_SRC     := $(wildcard src/sim/*.c)
WATCHER_SRC := $(wildcard src/watcher/*.c)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

COMMON_OBJ  := $(call obj,$(COMMON_SRC))
PROXY_OBJ   := $(call obj,$(PROXY_SRC))
SIM_OBJ     := $(call obj,$(SIM_SRC))
WATCHER_OBJ := $(call obj,$(WATCHER_SRC))
UNIT_BIN    := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

PROGRAMS := $(if $(PROXY_SRC),$(B)/llamalb) $(if $(SIM_SRC),$(B)/llamalb-sim) \
            $(if $(WATCHER_SRC),$(B)/llamalb-watcher)

.PHONY: all test check demo fuzz fuzz-build bench fmt clean deps
all: $(PROGRAMS) $(UNIT_BIN)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# Archives are made anew: ar keeps members whose source file was removed.
$(B)/libcommon.a: $(COMMON_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
# The proxy and the simulator as libraries (main.o left out) so unit tests link them.
$(B)/libproxy.a: $(filter-out %/main.o,$(PROXY_OBJ))
	@rm -f $@
	$(AR) rcs $@ $^
$(B)/libsim.a: $(filter-out %/main.o,$(SIM_OBJ))
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/llamalb: $(B)/obj/src/proxy/main.o $(B)/libproxy.a $(B)/libcommon.a
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS)
$(B)/llamalb-sim: $(B)/obj/src/sim/main.o $(B)/libsim.a $(B)/libcommon.a
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS)
$(B)/llamalb-watcher: $(WATCHER_OBJ) $(B)/libcommon.a
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS) -lcurl -ljansson -lyaml

# Unit tests link what their name says: test_proxy_* the proxy, test_sim_* the
# simulator, the rest only src/common.
$(B)/tests/test_proxy_%: $(B)/obj/tests/unit/test_proxy_%.o $(B)/obj/tests/tap.o $(B)/libproxy.a $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS)
$(B)/tests/test_sim_%: $(B)/obj/tests/unit/test_sim_%.o $(B)/obj/tests/tap.o $(B)/libsim.a $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS)
# test_watch_* #include the watcher source they test (src/watcher/model.c), which uses jansson.
$(B)/tests/test_watch_%: $(B)/obj/tests/unit/test_watch_%.o $(B)/obj/tests/tap.o $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS) -ljansson
$(B)/tests/test_%: $(B)/obj/tests/unit/test_%.o $(B)/obj/tests/tap.o $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS)

deps:
	@scripts/deps.sh build

test: deps
	@$(MAKE) --no-print-directory all
	@tests/run.sh $(B)

check: deps
	@$(MAKE) --no-print-directory SAN=1 all
	@UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
		tests/run.sh build-san

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(B)

FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60

# `make test` replays every fuzz corpus without clang: each harness is linked
# with tests/fuzz/replay.c (a main() that feeds it every file of the given
# directories), and a generated wrapper gives prove the two directories.
REPLAY_BIN := $(patsubst %,$(B)/tests/fuzz_replay_%,$(FUZZ_TARGETS))
REPLAY_SH  := $(patsubst %,$(B)/tests/replay_%.sh,$(FUZZ_TARGETS))
all: $(REPLAY_BIN) $(REPLAY_SH)
.SECONDARY: $(patsubst %,$(B)/obj/tests/fuzz/fuzz_%.o,$(FUZZ_TARGETS)) $(B)/obj/tests/fuzz/replay.o

$(B)/tests/fuzz_replay_%: $(B)/obj/tests/fuzz/fuzz_%.o $(B)/obj/tests/fuzz/replay.o $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS)
$(B)/tests/replay_%.sh: $(B)/tests/fuzz_replay_%
	@printf '#!/bin/sh\nexec %s %s %s\n' "$(CURDIR)/$<" "$(CURDIR)/tests/fuzz/corpus/$*" \
		"$(CURDIR)/tests/fuzz/regression/$*" > $@
	@chmod +x $@

fuzz-build:
	@scripts/deps.sh fuzz
	@mkdir -p build-fuzz
	@for t in $(FUZZ_TARGETS); do \
		clang-14 -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/common \
			tests/fuzz/fuzz_$$t.c $(COMMON_SRC) -o build-fuzz/fuzz_$$t -lm -pthread || exit 1; \
	done
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p tests/fuzz/corpus/$$t; \
		build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
			tests/fuzz/corpus/$$t tests/fuzz/regression/$$t 2>&1 | tail -n 3 || exit 1; \
	done

bench: deps
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bench/run.sh

fmt:
	clang-format -i $(wildcard src/*/*.c src/*/*.h tests/unit/*.c tests/*.c tests/*.h tests/fuzz/*.c)

clean:
	rm -rf build build-san build-fuzz

# Targets of their own job (wasm, install, tsan, soak, ...) live in mk/.
-include $(sort $(wildcard mk/*.mk))

-include $(shell find $(B) -name '*.d' 2>/dev/null)
