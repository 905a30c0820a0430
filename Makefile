# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
NODE_INSTALLED := node_modules/.installed-$(shell sha256sum package-lock.json | cut -c1-12)

.PHONY: run test unit bench fuzz soak install reset onboard tables-template infrastructure-templates package data-inventory clean

run: install ## Start the local cloud with the demo municipality (Ctrl-C stops everything)
	$(PY) -m tools.localcloud

# Two workers, each with its own DynamoDB Local; a module runs whole on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
test: install ## Run the whole test suite; starts and stops every service it uses
	$(PY) -m pytest -q -n $(TEST_WORKERS)

bench: install ## Benchmarks (issue 9): writes bench/results/latest.json, bench/results/chart.png and BENCHMARKS.md
	$(PY) -m bench.run

# The long fault-injection simulation (issue 10): SOAK_SEEDS × SOAK_OPERATIONS operations (≥ 100,000) against
# its own DynamoDB Local; takes most of an hour on a 2-core machine. The report runs whatever the outcome.
SOAK_SEEDS ?= 1-20
SOAK_OPERATIONS ?= 5000
SOAK_JOBS ?= 2
# Longer fuzzing than `make test` (10 examples per operation there): FUZZ_EXAMPLES per operation, then the report.
FUZZ_EXAMPLES ?= 100
fuzz: install ## Property-based fuzzing of every HTTP input and queue message, and the attack suite, at FUZZ_EXAMPLES per operation
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/integration/test_fuzz_http.py \
		tests/integration/test_fuzz_queue.py tests/integration/test_attacks.py; \
	status=$$?; $(PY) -m reliability.report; exit $$status

soak: install ## Fault-injection simulation, ≥ 100,000 operations: writes reliability/results/simulation.json, latest.json and RELIABILITY.md
	$(PY) -m reliability.simulation --seeds $(SOAK_SEEDS) --operations $(SOAK_OPERATIONS) --jobs $(SOAK_JOBS) --keep-going; \
	status=$$?; $(PY) -m reliability.report; exit $$status

unit: install
	$(PY) -m pytest -q tests/unit

install: $(INSTALLED) $(NODE_INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt
	./scripts/ensure-system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(NODE_INSTALLED): package.json package-lock.json
	./scripts/ensure-system-packages.sh
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

reset: ## Delete the local cloud's data (DynamoDB tables, demo keys and card)
	rm -rf .local

tables-template: install ## Regenerate infrastructure/tables.json from the PynamoDB models
	$(PY) -m chalicelib.storage.schema > infrastructure/tables.json

PARAMETERS ?= infrastructure/examples/nagahama.parameters.json
onboard: install ## Onboard a municipality into the running local cloud from a stack parameter file (PARAMETERS=…)
	$(PY) -m tools.onboard $(PARAMETERS)

infrastructure-templates: install ## Regenerate infrastructure/platform.json from the Chalice app, .chalice/config.json and the models
	$(PY) -m tools.infrastructure

# The runtime's Python (3.12) that compiles the package's bytecode and runs pip; when empty, python3.12 on
# PATH or pyenv's 3.12. `make package` needs only that Python and pip, not `make install`.
PACKAGE_PYTHON ?=
package: ## Build build/lambda.zip, the Lambda package platform.json deploys (needs Python 3.12 with pip and PyPI; the JPKI trust anchors are committed in chalicelib/trust/)
	PACKAGE_PYTHON=$(PACKAGE_PYTHON) ./scripts/package-lambda.sh

data-inventory: install ## Regenerate docs/DATA.md from the models and their documented purposes
	$(PY) -m chalicelib.storage.inventory > docs/DATA.md

clean: reset
	rm -rf $(VENV) node_modules
