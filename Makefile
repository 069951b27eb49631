# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PIP = $(VENV)/bin/pip
PY = $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE = 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test test-fast install install-all lint clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23.2"

# Core install: enough for the offline demo's open_clip stages; the sd extra adds the diffusers step.
$(VENV)/.installed-core: pyproject.toml constraints.txt | $(VENV)/bin/activate
	$(PIP) install -q -c constraints.txt -e ".[sd]"
	touch $@

$(VENV)/.installed-all: pyproject.toml constraints.txt | $(VENV)/bin/activate
	$(PIP) install -q -c constraints.txt -e ".[all,dev]"
	touch $@ $(VENV)/.installed-core

install: $(VENV)/.installed-core
install-all: $(VENV)/.installed-all

demo: $(VENV)/.installed-core
	$(VENV)/bin/susx demo --output demo-run --overwrite

# The typed core: the method, every file format and the registries (pyproject.toml's [tool.mypy]).
MYPY_PATHS = susx_cli/method susx_cli/artifacts susx_cli/sources/registry.py susx_cli/datasets/registry.py

# requires-python says 3.10: vermin refuses newer stdlib names and syntax (ruff's target is py310 too).
lint: $(VENV)/.installed-all
	$(VENV)/bin/ruff check susx_cli tests benchmarks tools
	$(VENV)/bin/ruff format --check susx_cli tests benchmarks tools
	$(VENV)/bin/vermin --target=3.10- --no-tips --violations --quiet susx_cli tests benchmarks tools
	$(VENV)/bin/mypy $(MYPY_PATHS)

test: lint
	$(PY) -m pytest -q

# Everything but the tests marked slow (services, subprocess pipelines, diffusers).
test-fast: lint
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo-run .pytest_cache
