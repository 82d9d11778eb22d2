# The two commands of the README, and the pieces behind them.
#   make demo   installs kuat into .venv and runs `kuat demo` (a simulated farm, no servers)
#   make test   also installs the test servers (mosquitto, victoria-metrics) and runs every check
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT := DEBIAN_FRONTEND=noninteractive apt-get -y -q
DURATION ?=
DEMO_ARGS ?=

.PHONY: demo test install lint typecheck unit servers bench fuzz clean messages messages-import

# A fresh Debian lacks ensurepip (python3-venv); install it when we are root and it is missing.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  [ "$$(id -u)" = 0 ] || { echo "need python3-venv: run as root or apt-get install python3-venv"; exit 1; }; \
	  apt-get update -q && $(APT) install python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Development installs (editable): the demo's simulators, and the test tools on top.
$(VENV)/.demo: $(BIN)/python pyproject.toml setup.py uplink/_lpaccel.c
	$(BIN)/python -m pip install -q -e '.[demo]'
	@touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml setup.py uplink/_lpaccel.c
	$(BIN)/python -m pip install -q -e '.[test,demo]'
	@touch $@ $(VENV)/.demo

# Production: what the agent needs and nothing else (no simulators, no test tools), not editable.
# Upgrade: git pull && make install && systemctl restart kuat
install: $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade .
	$(BIN)/kuat --version

demo: $(VENV)/.demo
	$(BIN)/kuat demo $(if $(DURATION),--duration $(DURATION)) $(DEMO_ARGS)

# The servers that integration tests start on loopback ports of their own (InfluxDB 1.x answers
# the InfluxQL Grafana dashboard's queries), promtool (Debian package prometheus) for the
# alert rules' checks and unit tests (tests/alerts), and chromium, the browser Playwright drives
# in tests/e2e/test_browser.py.
servers:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v victoria-metrics >/dev/null || missing="$$missing victoria-metrics"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v influxd >/dev/null || missing="$$missing influxdb"; \
	command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing="$$missing nats-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  [ "$$(id -u)" = 0 ] || { echo "missing:$$missing (run as root to install)"; exit 1; }; \
	  apt-get update -q && $(APT) install $$missing; \
	fi

# The message catalog: every agent/locale/<lang>/LC_MESSAGES/kuat.po compiled to the kuat.mo
# beside it (committed; tests fail when one is stale). messages-import moves texts still added
# the old way (CATALOG/LABELS dicts) into the .po files. README: "Adding a message".
messages: $(VENV)/.test
	$(BIN)/python -m kuat.agent.i18n_tool compile

messages-import: $(VENV)/.test
	$(BIN)/python -m kuat.agent.i18n_tool import-legacy

lint: $(VENV)/.test
	$(BIN)/ruff check .

# mypy cannot follow the editable install's import hook (package-dir maps agent/ to kuat.agent),
# so it reads a tree where kuat/ exists: symlinks to the real folders under build/typecheck.
# Settings (strict for kuat.quota and kuat.uplink) live in pyproject.toml [tool.mypy].
TYPECHECK := build/typecheck
typecheck: $(VENV)/.test
	@mkdir -p $(TYPECHECK)/kuat
	@for d in agent collectors quota uplink; do ln -sfn $(CURDIR)/$$d $(TYPECHECK)/kuat/$$d; done
	cd $(TYPECHECK) && $(abspath $(BIN))/mypy -p kuat --config-file $(abspath pyproject.toml) \
	  --python-executable $(abspath $(BIN))/python

unit: $(VENV)/.test
	$(BIN)/pytest -q -m "not servers"

test: $(VENV)/.test servers lint typecheck
	$(BIN)/pytest -q --durations=15

# The fuzz harness (tests/fuzz) run long: thousands of examples per parser of outside input.
# `make test` runs the same tests with a bounded example count.
fuzz: $(VENV)/.test
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/fuzz

bench: $(VENV)/.test
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench.asic_poll
	$(BIN)/python -m bench.uplink
	$(BIN)/python -m bench.dashboard
	@command -v snmpbulkwalk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && $(APT) install snmp; }
	$(BIN)/python -m bench.snmp_poll

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
