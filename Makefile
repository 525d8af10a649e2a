# minyi: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_HOME ?= $(CURDIR)/.minyi/prefect

.PHONY: install demo chart ui-check test test-fast lint format faults bench bench-matrix migration clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Prefect creates its home without parents: on a fresh checkout .minyi/ does not exist yet, and a command that
# does not create it first (the benchmarks) would fail with "Failed to create the Prefect home directory".
install: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"

demo: install
	$(BIN)/minyi demo

# The chart a duty officer sees (README): the demo month's last assessment chart, copied under docs/.
chart: demo
	cp $${MINYI_REPORTS_DIR:-reports}/2026-11-13/assessment.png docs/chart.png

# The operator UI in a real browser (not part of `make test`): needs Debian's Chromium,
# `apt-get update && apt-get install -y chromium`; screenshots under reports/ui/.
ui-check: install
	$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/python -m pip install --quiet -c constraints.txt playwright
	$(BIN)/python -m tests.ui_check

# Every store test runs on SQLite and on PostgreSQL (MINYI_TEST_PG_URL, default the local server).
# Three pytest workers on two cores (TEST_WORKERS=1 for one): the end-to-end tests wait on processes and servers
# much of the time (quiet 2-core machine: 455 s with 3, 678 s with 2 under a helper's load, 1,369 s serial in CI).
TEST_WORKERS ?= 3
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not faults" -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

# The fault suite in full: every seed of the kill tests (marker `faults`), the upstream and store faults,
# the bad-input corpus with 10x the examples, then the long end-to-end variants marked `faults` elsewhere
# (tests.support.PG_IN_TEST: the long end-to-end tests' SQLite runs, e.g. the lifecycle through the CLI; the
# files delivery's whole loop); `make test` runs the reduced form (no marker).
faults: install
	MINYI_FAULTS_FULL=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_faults.py tests/test_bad_input.py
	$(BIN)/python -m pytest -q -p no:cacheprovider -m faults --ignore=tests/test_faults.py --ignore=tests/test_bad_input.py tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole daily loop on N synthetic records (docs/performance.md), e.g. `make bench RECORDS=1000000 DB=postgres`.
# `make bench-matrix` runs every shape the performance goals name (1M both shapes both databases, 3M SQLite).
RECORDS ?= 100000
DB      ?= sqlite
SHAPE   ?= city
bench: install
	$(BIN)/python -m benchmarks.daily_loop --records $(RECORDS) --db $(DB) --shape $(SHAPE) --json bench-results/daily-loop-$(DB)-$(SHAPE)-$(RECORDS).json

bench-matrix: install
	for run in "1000000 sqlite city" "1000000 sqlite one" "1000000 postgres city" "1000000 postgres one" "3000000 sqlite city"; do \
	  set -- $$run; $(BIN)/python -m benchmarks.daily_loop --records $$1 --db $$2 --shape $$3 --json bench-results/daily-loop-$$2-$$3-$$1.json || exit 1; \
	done

# A new migration revision from the models' changes: make migration MSG="add orders.priority"
migration: install
	@test -n "$(MSG)" || { echo 'usage: make migration MSG="what changed"' >&2; exit 2; }
	$(BIN)/python -m minyi.devtools revision "$(MSG)"
	$(BIN)/ruff format schemas/migrations/versions
	$(BIN)/ruff check --fix --quiet schemas/migrations/versions || true

clean:
	rm -rf $(VENV) .minyi reports .pytest_cache
