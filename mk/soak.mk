# `make soak`: tests/soak/soak.py for SOAK_SECONDS against a build of its
# own (build-soak/): llamalb with 2 workers, 6 simulators, a client mix and
# a chaos driver, then the proofs (nothing lost, no unexplained duplicate,
# no silently short stream, fds/connections/queue/RSS back, clean exit).
# `make soak-san` soaks the ASan + UBSan build (build-soak-san/) instead.
# CI runs `make soak SOAK_SECONDS=60` and `make soak-san SOAK_SECONDS=60`.
SOAK_SECONDS ?= 600
SOAK_B       ?= build-soak
SOAK_SAN_B   ?= build-soak-san
SOAK_RUN = SOAK_SECONDS=$(SOAK_SECONDS) timeout -k 10 $$(( $(SOAK_SECONDS) + 300 )) \
	prove -v --exec python3 tests/soak/soak.py

.PHONY: soak soak-san
soak: deps
	@$(MAKE) --no-print-directory B=$(SOAK_B) all
	@LLAMALB_BUILD=$(CURDIR)/$(SOAK_B) $(SOAK_RUN)

soak-san: deps
	@$(MAKE) --no-print-directory B=$(SOAK_SAN_B) SAN=1 all
	@LLAMALB_BUILD=$(CURDIR)/$(SOAK_SAN_B) ASAN_OPTIONS=detect_leaks=1 SOAK_RSS_CHECK=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(SOAK_RUN)
