# Keel. `make demo` runs the product on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/base.txt requirements/dev.txt | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test bench bench-compare lint format migrate

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --no-input

# Demo data and 20 sample tickets (run here, in this process), then the web server,
# a Celery worker and Celery beat together (Procfile, run by honcho; Ctrl-C stops
# all three). The embedded default: SQLite and the filesystem broker under var/.
# The demo's workspaces may reach model and webhook servers on this machine.
demo: export KEEL_EGRESS_ALLOW_PRIVATE ?= 127.0.0.1/32
# Prometheus scrapes /metrics with this token (docs/operations.md); a production install sets its own.
demo: export KEEL_METRICS_TOKEN ?= keel-demo-metrics
demo: migrate
	$(BIN)/python manage.py keel_demo --runs 20 --inline
	@echo "Serving http://$(HOST):$(PORT)/ (your home page), the admin at /admin/, the reviewer app at /review/," \
		"the auditor's desk at /audit/ and the API docs at /api/docs/; Ctrl-C stops the web server, the worker and beat"
	@echo "Metrics for Prometheus: curl -H 'Authorization: Bearer $$KEEL_METRICS_TOKEN' http://$(HOST):$(PORT)/metrics"
	HOST=$(HOST) $(BIN)/honcho start --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench [ONLY=<benchmark>]: prints each figure and writes var/bench/<benchmark>.json
# (docs/benchmarks.md); exits non-zero naming any benchmark that failed.
bench: install
	$(BIN)/python -m tests.bench $(ONLY)

# make bench-compare BASE=<other checkout with its own .venv>: the api, e2e and
# queue figures of BASE's servers (before) and this checkout's (after), in turn;
# writes var/bench/compare.json.
bench-compare: install
	@test -n "$(BASE)" || { echo "make bench-compare BASE=/path/to/other/checkout"; exit 2; }
	$(BIN)/python -m tests.bench --compare $(BASE) $(ONLY)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
