# The README's commands. Each does its own set-up on a fresh Debian / Raspberry Pi OS.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test bench lint docs system-deps clean

demo: system-deps $(VENV)/.installed   ## the whole path on simulated devices, until Ctrl-C
	$(BIN)/edge-agent demo

test: system-deps $(VENV)/.installed lint   ## the whole test suite, from scratch
	$(BIN)/pytest $(PYTEST_ARGS)

bench: system-deps $(VENV)/.installed   ## benchmarks against limits measured in the same run (bench/results.json)
	@$(BIN)/pip install -q -e '.[bench]' 2>/dev/null || echo "py-spy is not installable here: figures without profiles"
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: $(VENV)/.installed   ## regenerate the docs and schema the tests check
	$(BIN)/python -m agent.docs

# mosquitto (a private one is started on a free loopback port), socat (virtual RS-485
# lines) and python3-venv come from the distribution's packages when missing.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	$(PY) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
