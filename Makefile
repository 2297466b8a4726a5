# The two commands (README): `make simulate` runs the main job (the substation
# scenario: light nodes, full nodes, attacks, the report), `make test` the
# whole suite; `make demo` is the smaller signing demo. All make and reuse a
# virtual environment in .venv and install everything from this repository's
# own files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WASM   := tools/wasm/node_modules/.installed

.PHONY: simulate demo test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else "lightnode needs Python 3.11 or 3.12, found %d.%d" % v[:2])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $@

$(WASM): tools/wasm/package.json tools/wasm/package-lock.json
	npm ci --prefix tools/wasm --no-audit --no-fund --loglevel=error
	@touch $@

simulate: $(STAMP)
	$(BIN)/lightnode simulate

demo: $(STAMP)
	$(BIN)/lightnode demo

# pytest exits 5 when it collected no test: that is a failure here.
test: $(STAMP) $(WASM)
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP) $(WASM)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) tools/wasm/node_modules build *.egg-info
