# `make tsan`: the unit and integration suite built with ThreadSanitizer
# (build-tsan/), llamalb run with TSAN_WORKERS worker threads (the harness
# reads LLAMALB_TEST_WORKERS), so that every request path meets another
# thread. TSan writes each report to build-tsan/tsan-logs/ instead of
# stopping the process: the suite runs to its end, then any report fails
# the target and is printed. No suppression file: every report is fixed
# at its root (docs/design.md, "Threads and locks").
TSAN_B       ?= build-tsan
TSAN_WORKERS ?= 3
TSAN_FLAGS   := -fsanitize=thread -fno-omit-frame-pointer

.PHONY: tsan tsan-build
tsan-build: deps
	@$(MAKE) --no-print-directory B=$(TSAN_B) SAN= HARDEN= OPT=-O1 \
		CFLAGS="-O1 -g $(TSAN_FLAGS)" LDFLAGS="$(TSAN_FLAGS)" all

tsan: tsan-build
	@rm -rf $(TSAN_B)/tsan-logs && mkdir -p $(TSAN_B)/tsan-logs
	@TSAN_OPTIONS="log_path=$(CURDIR)/$(TSAN_B)/tsan-logs/tsan halt_on_error=0 second_deadlock_stack=1 history_size=4" \
		LLAMALB_TEST_WORKERS=$(TSAN_WORKERS) TEST_TIMEOUT=$${TEST_TIMEOUT:-600} \
		tests/run.sh $(TSAN_B); rc=$$?; \
	if ls $(TSAN_B)/tsan-logs/tsan.* >/dev/null 2>&1; then \
		cat $(TSAN_B)/tsan-logs/tsan.*; \
		echo "make tsan: $$(cat $(TSAN_B)/tsan-logs/tsan.* | grep -c '^WARNING: ThreadSanitizer') ThreadSanitizer report(s) in $(TSAN_B)/tsan-logs/" >&2; \
		exit 1; \
	fi; exit $$rc

# `make tsan-soak`: the soak (mk/soak.mk) against the TSan build, where two
# workers, the admin thread and the prober meet under load and chaos.
.PHONY: tsan-soak
tsan-soak: tsan-build
	@rm -rf $(TSAN_B)/tsan-logs && mkdir -p $(TSAN_B)/tsan-logs
	@TSAN_OPTIONS="log_path=$(CURDIR)/$(TSAN_B)/tsan-logs/tsan halt_on_error=0 history_size=4" \
		LLAMALB_BUILD=$(CURDIR)/$(TSAN_B) $(SOAK_RUN); rc=$$?; \
	if ls $(TSAN_B)/tsan-logs/tsan.* >/dev/null 2>&1; then \
		cat $(TSAN_B)/tsan-logs/tsan.*; \
		echo "make tsan-soak: ThreadSanitizer report(s) in $(TSAN_B)/tsan-logs/" >&2; exit 1; \
	fi; exit $$rc
