# make demo: install into .venv and run a scripted chat between two peers.
# make test: install into .venv, lint, type-check, check the import rules and run the whole suite.
# make bench: p2pchat beside a raw-asyncio baseline, measured in the same run (a table).
# make screenshot: docs/web.png, as the web page's test sees it.
# make system-deps: install (as root, with apt-get) the programs some tests drive:
#   Chromium (the web page's tests), redis-server (the cluster's), iptables and iproute2
#   (network namespaces for the NAT tests). Without them those tests skip, saying why.
#
# What these install comes from requirements/dev.txt: exact versions with their hashes,
# one file for every Python we support (3.11 to 3.13) and platform. pyproject.toml keeps
# ranges for the library's users; the lock is what the project itself runs with.
# make lock: write the lock anew from those ranges (UPGRADE=1: the newest that fit).
# make test-latest: the suite against the newest releases the ranges allow, in
#   .venv-latest, without the lock: drift shows there before it breaks a fresh clone.
# PYTHON=python3.13 make test: the same with another Python (.venv is made anew for it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/dev.txt
# LATEST=1: install the newest releases allowed instead of the lock (make test-latest).
LATEST ?=
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
STAMP := $(VENV)/.installed-$(PYVER)$(if $(LATEST),-latest)
TOOLS := .venv-tools

SYSTEM_DEPS := chromium redis-server iptables iproute2

.PHONY: demo test check lint typecheck imports pytest clean system-deps screenshot bench lock test-latest fuzz nat-runs

# The environment is made anew whenever the lock, pyproject.toml or the Python changes,
# so that it holds exactly what the lock says (nothing left over from an older one).
$(STAMP): $(LOCK) pyproject.toml
	@test -n "$(PYVER)" || { echo "make: no Python at PYTHON=$(PYTHON)" >&2; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
ifeq ($(LATEST),)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
else
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	$(BIN)/python -m pip list --format=freeze > $(VENV)/versions.txt
endif
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m p2pchat.frontends.demo

test: check pytest

check: lint typecheck imports

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks fuzz
	$(BIN)/ruff format --check src tests benchmarks fuzz

typecheck: $(STAMP)
	$(BIN)/mypy

# The layout's rules (docs/architecture.md): layers, sides apart, no circles; the
# contracts are in pyproject.toml's [tool.importlinter].
imports: $(STAMP)
	$(BIN)/lint-imports

# Two test processes: most tests wait on sockets and child processes, so two share a
# 2-core machine well (TEST_WORKERS=0: one process, as pytest runs by default).
TEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

bench: $(STAMP)  # p2pchat beside a raw-asyncio baseline; a few minutes
	$(BIN)/python -m benchmarks

fuzz: $(STAMP)  # every decoder a remote party reaches, 10^6 generated inputs each; minutes
	$(BIN)/python -m fuzz

nat-runs: $(STAMP)  # two peers behind MASQUERADE routers, 20 runs: how often they end direct
	P2PCHAT_NAT_RUNS=20 $(BIN)/pytest -q tests/test_nat.py -k run_after_run

screenshot: $(STAMP)  # docs/web.png, as the web page's test sees it
	P2PCHAT_UPDATE_SCREENSHOT=1 $(BIN)/pytest -q tests/test_web.py -k two_conversations

system-deps:
	@missing=""; \
	for tool in chromium redis-server iptables ip; do \
		command -v $$tool >/dev/null 2>&1 || missing=yes; \
	done; \
	if [ -n "$$missing" ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $(SYSTEM_DEPS); \
	else \
		echo "system-deps: chromium, redis-server, iptables and ip are installed"; \
	fi

# make lock: requirements/dev.txt anew from pyproject.toml, keeping every version it
# holds that the ranges still allow (a new dependency comes in at its newest);
# make lock UPGRADE=1: every package at the newest release its range allows.
lock: $(TOOLS)/.installed
	$(TOOLS)/bin/uv pip compile pyproject.toml requirements/build.in --extra test \
		--universal --python-version 3.11 --generate-hashes --no-emit-index-url \
		$(if $(UPGRADE),--upgrade) --quiet -o $(LOCK)

$(TOOLS)/.installed: requirements/uv.txt
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
	touch $@

# Not part of CI (a release elsewhere must not turn main red): run it to see drift coming.
test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest LATEST=1
	@echo "test-latest: passed with these versions (.venv-latest/versions.txt):"
	@cat .venv-latest/versions.txt

clean:
	rm -rf $(VENV) .venv-latest $(TOOLS) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
