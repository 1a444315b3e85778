# The whole-proxy fuzzer (tests/fuzz/world/fuzz_world.c): a real worker in
# process, the fuzzer playing client and backend with a script of sends,
# reads, closes, resets and waits. It links the proxy, so it lives apart
# from the Makefile's fuzz_*.c targets (which link src/common only).
#
#   make fuzz-world         run it for FUZZ_SECONDS (clang-14, ASan + UBSan;
#                           build-fuzz-world/ holds a clang build of the
#                           proxy's libraries)
#   make test               replays its corpus and regressions
#                           ($(B)/tests/replay_world.sh)
FUZZW_B := build-fuzz-world
FUZZW_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all

all: $(B)/tests/fuzz_replay_world $(B)/tests/replay_world.sh
$(B)/tests/fuzz_replay_world: $(B)/obj/tests/fuzz/world/fuzz_world.o $(B)/obj/tests/fuzz/replay.o \
		$(B)/libproxy.a $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ -o $@ $(LIBS)
$(B)/tests/replay_world.sh: $(B)/tests/fuzz_replay_world
	@printf '#!/bin/sh\nexec %s %s %s\n' "$(CURDIR)/$<" "$(CURDIR)/tests/fuzz/corpus/world" \
		"$(CURDIR)/tests/fuzz/regression/world" > $@
	@chmod +x $@

.PHONY: fuzz-world
fuzz-world:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory B=$(FUZZW_B) CC=clang-14 HARDEN= \
		CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $(FUZZW_SAN)" $(FUZZW_B)/libproxy.a $(FUZZW_B)/libcommon.a
	clang-14 -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer $(FUZZW_SAN) -Isrc/common \
		tests/fuzz/world/fuzz_world.c $(FUZZW_B)/libproxy.a $(FUZZW_B)/libcommon.a \
		-o $(FUZZW_B)/fuzz_world -lm -pthread
	@mkdir -p tests/fuzz/corpus/world tests/fuzz/regression/world
	$(FUZZW_B)/fuzz_world -max_total_time=$(FUZZ_SECONDS) -max_len=2048 -timeout=10 \
		-artifact_prefix=tests/fuzz/regression/world/ \
		tests/fuzz/corpus/world tests/fuzz/regression/world 2>&1 | tail -n 5
