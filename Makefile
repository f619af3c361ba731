# qemu-init — developer and packaging targets.
#   make demo    run the built-in demo in a sandbox root (touches nothing else)
#   make test    install what the tests need (Debian packages, a venv) and run them
#   make golden  rewrite the golden files after a deliberate change; review the diff
#   make bench   run the benchmarks, print the table, write bench/results/latest.json
#   make install / uninstall, man, completion: see "Installation" below

PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
DEMO_ROOT ?= /tmp/qemu-init-demo
PYTEST_ARGS ?=

.PHONY: all demo test deps golden bench venv clean stage install uninstall man completion

all: venv

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sh contrib/demo.sh "$(DEMO_ROOT)"

deps:
	sh .ci/install-deps

test: deps venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

golden: venv
	$(VENV)/bin/pytest tests/unit/test_golden.py --update-golden

bench: deps venv
	sh bench/install-deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

# --- Installation ---------------------------------------------------------------------------
#   make install [DESTDIR=] [PREFIX=/usr/local] [SUFFIX=qemu-init] [LAYOUT=fhs|appdir]
#                [APPDIR=/var/lib/qemud] [INITSYS=sysv|openrc|bsd|systemd|none] [PYTHON=python3]
#                [PLATFORM=freebsd]
#   make uninstall   with the same variables: removes what the install's manifest lists, except
#                    configuration files changed since, and folders that are not empty
# The Python package goes to a private folder (LIBDIR) with small launchers in BINDIR, run by
# PYTHON; its dependencies (jinja2, typer) come from the system. Every folder below can be
# overridden on the command line, e.g. MANDIR=/usr/local/man. Packages that keep their own file
# list set MANIFEST= and MKRUNDIR=no (a package must not ship a folder in /run, a tmpfs);
# one that ships the host service sets PACKAGED_SERVICE to its path.
#   make stage       build what install copies, under build/stage (no root needed)
#   make man         regenerate man/qemu-init.5 from man/qemu-init.5.in and qemu_init/keys.py
#   make completion  regenerate contrib/completion/* from the command line itself

PREFIX ?= /usr/local
SUFFIX ?= qemu-init
LAYOUT ?= fhs
APPDIR ?= /var/lib/qemud
DESTDIR ?=
# The platform to install for: empty, this one; freebsd, FreeBSD's folders (/var/run, rc.d).
PLATFORM ?=
MKRUNDIR ?= yes
# Packages that ship the host service as their own file (a conffile) name it here:
# `qemu-init install` then leaves it alone. Empty: install keeps it up to date.
PACKAGED_SERVICE ?=

prefix := $(patsubst %/,%,$(PREFIX))
# The folders, and the init system to install for when INITSYS is not given (the one running),
# are qemu_init/paths.py's: make asks it, so the installed layout and the one qemu-init uses
# cannot drift apart. It prints NAME=VALUE lines (BINDIR, LIBDIR, DATADIR, EXAMPLESDIR, MANDIR,
# BASHCOMPDIR, ZSHCOMPDIR, FISHCOMPDIR, ETCDIR, VARDIR, RUNDIR, LOGDIR, SERVICEDIR,
# INITSYS_GUESS); a folder given on the command line still wins over its assignment here.
# Asked only for the targets that install.
ifneq ($(filter stage install uninstall,$(MAKECMDGOALS)),)
PATHS_MK := $(shell $(PYTHON) -m qemu_init.paths --make '$(LAYOUT)' '$(prefix)' '$(SUFFIX)' '$(APPDIR)' \
	'$(PLATFORM)' '$(INITSYS)')
ifeq ($(PATHS_MK),)
$(error $(PYTHON) -m qemu_init.paths --make failed (see above))
endif
$(foreach assignment,$(PATHS_MK),$(eval $(assignment)))
endif
INITSYS ?= $(INITSYS_GUESS)
MANIFEST = $(DATADIR)/install-manifest
SERVICE = qemud$(if $(filter systemd,$(INITSYS)),.service)
SERVICEMODE = $(if $(filter systemd,$(INITSYS)),0644,0755)

STAGE ?= build/stage
INST = DESTDIR='$(DESTDIR)' MANIFEST='$(MANIFEST)' WORK='$(STAGE)/manifest' sh contrib/inst.sh

# Everything install copies, built for these settings. The package is copied, not built with
# pip: no build backend needed, and the templates symlink is resolved (-L).
stage:
	rm -rf $(STAGE)
	mkdir -p $(STAGE)/lib $(STAGE)/bin
	cp -RL qemu_init $(STAGE)/lib/
	find $(STAGE)/lib -name __pycache__ -prune -exec rm -rf {} + -o -name layout.conf -exec rm -f {} +
	printf '%s\n' '# Written by make install: the layout of this installation (qemu_init/paths.py).' \
	  'kind=$(LAYOUT)' 'prefix=$(prefix)' 'suffix=$(SUFFIX)' 'appdir=$(APPDIR)' \
	  '# where qemu-init and qemu-init-helper are' 'bindir=$(BINDIR)' \
	  '# the host service a package ships, which qemu-init install leaves alone' \
	  'packaged_service=$(PACKAGED_SERVICE)' >$(STAGE)/lib/qemu_init/layout.conf
	$(PYTHON) -m compileall -q --invalidation-mode checked-hash -d '$(LIBDIR)/qemu_init' $(STAGE)/lib/qemu_init
	py=$$($(PYTHON) -c 'import sys; print(sys.executable)') && \
	  $(PYTHON) contrib/mkfiles.py launchers $(STAGE)/bin '$(LIBDIR)' "$$py"
	$(PYTHON) contrib/mkfiles.py host-conf $(STAGE)/qemu-init.conf
	$(PYTHON) contrib/mkfiles.py template-cfg $(STAGE)/template-qemu.cfg
ifneq ($(INITSYS),none)
	$(PYTHON) contrib/mkfiles.py qemud $(INITSYS) $(LAYOUT) '$(prefix)' '$(SUFFIX)' '$(APPDIR)' '$(BINDIR)' '$(PLATFORM)' \
	  $(STAGE)/$(SERVICE)
	@! grep -F '$(CURDIR)' $(STAGE)/$(SERVICE) || { echo "$(SERVICE) names the build folder" >&2; exit 1; }
endif

install: stage
	$(INST) begin
	$(INST) dir 0755 '$(BINDIR)' '$(LIBDIR)' '$(DATADIR)'
	$(INST) tree $(STAGE)/lib/qemu_init '$(LIBDIR)/qemu_init'
	for f in $(STAGE)/bin/*; do $(INST) file 0755 "$$f" '$(BINDIR)'/"$${f##*/}" || exit 1; done
	$(INST) dir 0755 '$(ETCDIR)'
	$(INST) conf 0644 $(STAGE)/qemu-init.conf '$(ETCDIR)/qemu-init.conf'
	$(INST) conf 0644 $(STAGE)/template-qemu.cfg '$(ETCDIR)/template-qemu.cfg'
	$(INST) dir 0750 '$(VARDIR)' '$(LOGDIR)'
ifeq ($(MKRUNDIR),yes)
	$(INST) dir 0755 '$(RUNDIR)'
endif
	$(INST) file 0644 man/qemu-init.8 '$(MANDIR)/man8/qemu-init.8'
	$(INST) file 0644 man/qemud.8 '$(MANDIR)/man8/qemud.8'
	$(INST) file 0644 man/qemu-init-helper.8 '$(MANDIR)/man8/qemu-init-helper.8'
	$(INST) file 0644 man/qemu-init.5 '$(MANDIR)/man5/qemu-init.5'
	$(INST) file 0644 contrib/completion/qemu-init.bash '$(BASHCOMPDIR)/qemu-init'
	$(INST) file 0644 contrib/completion/_qemu-init '$(ZSHCOMPDIR)/_qemu-init'
	$(INST) file 0644 contrib/completion/qemu-init.fish '$(FISHCOMPDIR)/qemu-init.fish'
	$(INST) tree contrib/examples '$(EXAMPLESDIR)'
ifneq ($(INITSYS),none)
	$(INST) file $(SERVICEMODE) $(STAGE)/$(SERVICE) '$(SERVICEDIR)/$(SERVICE)'
endif
	$(INST) commit
	@echo "installed; the system user the guests run as is not created here: see README.md, 'Install from source'"

uninstall:
	$(INST) uninstall

man:
	$(PYTHON) contrib/mkfiles.py man5 man/qemu-init.5.in man/qemu-init.5

# Typer writes the scripts; zsh loads its file as the completion function itself, so that
# file also calls the function it defines (else the first TAB would only define it).
completion: venv
	_QEMU_INIT_COMPLETE=source_bash $(PY) -m qemu_init >contrib/completion/qemu-init.bash
	_QEMU_INIT_COMPLETE=source_fish $(PY) -m qemu_init >contrib/completion/qemu-init.fish
	{ _QEMU_INIT_COMPLETE=source_zsh $(PY) -m qemu_init && echo '_qemu_init_completion "$$@"'; } \
	  >contrib/completion/_qemu-init
