# Two entry points do all the set-up: `make demo` and `make test`.
# Each creates .venv and installs what it needs.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## run demo.ipynb in a real kernel, printing outputs as they stream
	$(PY) scripts/run_notebook.py demo.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check asyncmagic tests benchmarks scripts
	$(VENV)/bin/ruff format --check asyncmagic tests benchmarks scripts

test: lint  ## ruff, then every test (browser tests need Debian's chromium, remote ones its sshd: installed if missing)
	sh scripts/install_chromium.sh
	sh scripts/install_sshd.sh
	$(PY) -m pytest -q -rs -p no:cacheprovider

bench: $(STAMP)  ## the benchmarks of the README's table; each runs even if one before it failed
	status=0; for b in arun output jobs apipe fanout ssh; do $(PY) benchmarks/bench_$$b.py || status=1; done; exit $$status

clean:
	rm -rf $(VENV) build *.egg-info
