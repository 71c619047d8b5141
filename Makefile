# make demo: install into .venv and run a scripted chat between two peers.
# make test: install into .venv, lint, type-check and run the whole suite.
# make bench: p2pchat beside a raw-asyncio baseline, measured in the same run (a table).
# make screenshot: docs/web.png, as the web page's test sees it.
# make system-deps: install (as root, with apt-get) the programs some tests drive:
#   Chromium (the web page's tests), redis-server (the cluster's), iptables and iproute2
#   (network namespaces for the NAT tests). Without them those tests skip, saying why.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SYSTEM_DEPS := chromium redis-server iptables iproute2

.PHONY: demo test check lint typecheck pytest clean system-deps screenshot bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m p2pchat.demo

test: check pytest

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Two test processes: most tests wait on sockets and child processes, so two share a
# 2-core machine well (TEST_WORKERS=0: one process, as pytest runs by default).
TEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

bench: $(STAMP)  # p2pchat beside a raw-asyncio baseline; a few minutes
	$(BIN)/python -m benchmarks

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

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
