# Keel. `make demo` runs the product on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/base.txt requirements/dev.txt | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test bench lint format migrate

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --no-input

# Demo data, a Celery worker on the filesystem broker, 20 sample tickets run
# through the demo pipeline on that worker, then the web server.
# The demo's workspaces may reach model and webhook servers on this machine.
demo: export KEEL_EGRESS_ALLOW_PRIVATE ?= 127.0.0.1/32
demo: migrate
	@trap 'kill $$WORKER 2>/dev/null' EXIT INT TERM; \
	$(BIN)/celery -A config worker --pool=solo --loglevel=WARNING & WORKER=$$!; \
	$(BIN)/python manage.py keel_demo --runs 20 || echo "The sample runs did not all settle; see the worker's output above."; \
	echo "Serving http://$(HOST):$(PORT)/admin/ and the reviewer app at /review/ (Ctrl-C stops the server and the worker)"; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench [ONLY=<benchmark>]: prints each figure and writes var/bench/<benchmark>.json
bench: install
	$(BIN)/python -m tests.bench $(ONLY)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
