# Each target bootstraps .venv itself, so a fresh clone needs only `make run` / `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_MODULES := tests/interop/node_modules/.package-lock.json

.PHONY: run test bench clean browser

# Each step says what it does first: a first run downloads for about a minute.
$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	@echo "==> installing n2gateway and its pinned dependencies into $(VENV) (pip's progress follows)"
	$(BIN)/pip install --progress-bar on -e '.[test,bench]'
	# An editable install does not place the twistd drop-in where a wheel puts it
	# (the venv's twisted/plugins/): link it there.
	ln -sf "$(CURDIR)/twisted/plugins/n2gateway_dropin.py" "$$($(BIN)/python -c 'import twisted.plugins; print(twisted.plugins.__path__[0])')/"
	touch $@
	@echo "==> $(VENV) is ready"

$(NODE_MODULES): tests/interop/package.json tests/interop/package-lock.json
	@echo "==> installing the Node interop peers (npm ci in tests/interop)"
	npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error

run: $(STAMP)
	@echo "==> starting $(strip twistd -n n2gateway $(ARGS)) (Ctrl-C stops it)"
	$(BIN)/twistd -n n2gateway $(ARGS)

# The status-page test drives Debian's Chromium; install it only when missing.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "==> the status-page test needs Chromium: installing Debian's chromium with apt-get (as root)"; \
	  apt-get update -qq && apt-get install -y -qq chromium; }

test: $(STAMP) $(NODE_MODULES) browser
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) $(NODE_MODULES)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) tests/interop/node_modules
