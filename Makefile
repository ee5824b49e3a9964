# CoursePulse: `make demo` and `make test` are all the setup a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit test-integration test-fault lint typecheck schemas clean reports operator-screenshot

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its test extras

demo: $(STAMP) ## run the demo: embedded broker + Redis, a worker, simulated traffic, live view
	$(BIN)/coursepulse demo $(ARGS)

test: $(STAMP) ## run every test (unit, integration on Tansu + Redis, end to end) on two processes
	$(BIN)/python -m pytest -n 2 --dist loadfile $(ARGS)

test-unit: $(STAMP) ## unit tests only (nothing running needed)
	$(BIN)/python -m pytest tests/unit $(ARGS)

test-integration: $(STAMP) ## integration and end-to-end tests
	$(BIN)/python -m pytest tests/integration tests/e2e $(ARGS)

test-fault: $(STAMP) ## the whole fault matrix (kills workers, broker, Redis; ~10 min; table at the end)
	COURSEPULSE_FAULT_MATRIX=full $(BIN)/python -m pytest tests/fault -m fault $(ARGS)

lint: $(STAMP) ## ruff over the tree, docstrings of the public API included (installs ruff into the venv)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check .

typecheck: $(STAMP) ## mypy --strict on schemas/ and models/ (exemptions in pyproject.toml; installs mypy into the venv)
	$(BIN)/python -m pip install --quiet mypy
	$(BIN)/mypy --strict schemas models

schemas: $(STAMP) ## write the JSON Schema of every topic to docs/schemas
	$(BIN)/coursepulse schemas --out docs/schemas

operator-screenshot: $(STAMP) ## redraw docs/operator-page.png (a live worker in headless Chromium; needs chromium)
	COURSEPULSE_OPERATOR_SCREENSHOT=$(CURDIR)/docs/operator-page.png $(BIN)/python -m pytest tests/integration/test_operations.py -k operator_page $(ARGS)

clean: ## remove the venv and caches
	rm -rf $(VENV) var .pytest_cache .hypothesis .mypy_cache .ruff_cache

reports: $(STAMP) ## regenerate docs/eval (OULAD, simulator and its profiles; ~40 min)
	$(BIN)/coursepulse datasets oulad ../shared/data/oulad --out out/oulad
	$(BIN)/coursepulse eval out/oulad/events.jsonl --labels out/oulad/labels.csv --as-of 2014-01-01T00:00:00Z \
		--report docs/eval/oulad --title "CoursePulse on OULAD (real data, CC-BY 4.0)"
	$(BIN)/coursepulse simulate --users 3000 --days 120 --seed 7 --start 2025-01-01 \
		--out out/sim/events.jsonl --truth-dir out/sim/truth
	$(BIN)/coursepulse eval out/sim/events.jsonl --labels out/sim/truth/labels.csv --as-of 2025-03-15T00:00:00Z \
		--report docs/eval/simulator --title "CoursePulse on the simulator (3000 users, 120 days, seed 7)"
	for p in small-popular binge-large mooc; do \
		$(BIN)/coursepulse simulate --profile $$p --users 3000 --days 90 --seed 7 --start 2025-01-01 \
			--out out/$$p/events.jsonl --truth-dir out/$$p/truth && \
		$(BIN)/coursepulse eval out/$$p/events.jsonl --labels out/$$p/truth/labels.csv --report docs/eval/$$p \
			--title "CoursePulse on the simulator, profile $$p (3000 users, 90 days, seed 7)" || exit 1; \
	done
