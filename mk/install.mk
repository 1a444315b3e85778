# make install [PREFIX=/usr/local] [DESTDIR=...]: the three programs, their
# man pages, an example configuration and the systemd units (README
# "Operating llamalb"). Uses $(B)'s binaries; builds them first.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/llamalb
UNITDIR    ?= $(PREFIX)/lib/systemd/system
INSTALL    ?= install

.PHONY: install uninstall
install: $(PROGRAMS)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 man/llamalb-sim.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 man/llamalb.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 man/llamalb.8 man/llamalb-watcher.8 $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 dist/config/llamalb.conf $(DESTDIR)$(DOCDIR)/llamalb.conf.example
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/
	for u in llamalb llamalb-watcher; do \
		sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@UNITDIR@|$(UNITDIR)|g' dist/systemd/$$u.service.in \
			> $(DESTDIR)$(UNITDIR)/$$u.service.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$$u.service.tmp $(DESTDIR)$(UNITDIR)/$$u.service || exit 1; \
	done

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,llamalb llamalb-sim llamalb-watcher) \
		$(DESTDIR)$(MANDIR)/man1/llamalb-sim.1 $(DESTDIR)$(MANDIR)/man5/llamalb.conf.5 \
		$(DESTDIR)$(MANDIR)/man8/llamalb.8 $(DESTDIR)$(MANDIR)/man8/llamalb-watcher.8 \
		$(DESTDIR)$(DOCDIR)/llamalb.conf.example $(DESTDIR)$(DOCDIR)/README.md \
		$(DESTDIR)$(UNITDIR)/llamalb.service $(DESTDIR)$(UNITDIR)/llamalb-watcher.service
