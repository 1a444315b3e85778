# The status page (GET / on the admin listener) is compiled into llamalb:
# src/proxy/status/status.html becomes a byte array in a generated C file
# (scripts/embed.sh, od and sed only), linked into libproxy.a.
STATUS_HTML := src/proxy/status/status.html
STATUS_C    := $(B)/gen/status_html.c
STATUS_O    := $(B)/obj/gen/status_html.o

$(STATUS_C): $(STATUS_HTML) scripts/embed.sh
	@mkdir -p $(dir $@)
	scripts/embed.sh status_html $< > $@.tmp && mv $@.tmp $@
$(STATUS_O): $(STATUS_C)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(B)/libproxy.a: $(STATUS_O)

# The README's picture of the page: t70 run with a longer stretch of traffic
# before its screenshot (needs chromium: scripts/deps.sh kit).
STATUS_SHOT ?= docs/status-page.png
.PHONY: status-screenshot
status-screenshot: deps
	@scripts/deps.sh kit
	@$(MAKE) --no-print-directory all
	@cd tests/clients && { [ -d node_modules/puppeteer-core ] || npm ci --no-audit --no-fund; }
	LLAMALB_BUILD=$(CURDIR)/$(B) STATUS_SHOT=$(CURDIR)/$(STATUS_SHOT) SHOT_WAIT_MS=50000 \
		SHOT_REQUESTS=400 python3 tests/integration/t70-status-page.py
