# Each target bootstraps .venv itself, so a fresh clone needs only `make run` / `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_MODULES := tests/interop/node_modules/.package-lock.json

.PHONY: run test bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	# twistd finds drop-ins only in twisted/plugins folders on sys.path, and the
	# editable install does not put the checkout there: this .pth does.
	echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/n2gateway-checkout.pth"
	touch $@

$(NODE_MODULES): tests/interop/package.json tests/interop/package-lock.json
	npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(BIN)/twistd -n n2gateway $(ARGS)

# The status-page test drives Debian's Chromium; install it only when missing.
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

test: $(STAMP) $(NODE_MODULES) browser
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) $(NODE_MODULES)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) tests/interop/node_modules
