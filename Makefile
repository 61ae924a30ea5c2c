# Chengxin — `make run` serves the demo on SQLite; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export CHENGXIN_INSTANCE ?= $(CURDIR)/instance
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test install assets db demo lint bench bench-all clean translations

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed webapp/translations/en/LC_MESSAGES/messages.mo

# UI catalogues (zh_CN is the source language; English is compiled from its .po file).
webapp/translations/en/LC_MESSAGES/messages.mo: webapp/translations/en/LC_MESSAGES/messages.po $(BIN)/.installed
	$(BIN)/pybabel compile -d webapp/translations

translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o webapp/translations/messages.pot .
	$(BIN)/pybabel update -i webapp/translations/messages.pot -d webapp/translations --no-location

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

webapp/static/dist/.built: node_modules/.installed $(shell find assets -type f 2>/dev/null)
	npm run --silent build
	touch $@

assets: webapp/static/dist/.built

# The embedded demo: schema, organisation, archive, the bureau's flows, then web + worker.
demo: install assets
	env -u DATABASE_URL $(BIN)/chengxin init-db
	env -u DATABASE_URL $(BIN)/chengxin seed-demo
	env -u DATABASE_URL $(BIN)/chengxin deploy processes forms --note "演示部署"

run: demo
	@echo ""
	@echo "  诚信 Chengxin: http://$(HOST):$(PORT)/"
	@echo "  演示账号（密码 demo123）: registrar 登记员, handler 承办人, chief 股室负责人, legal 法制审核员,"
	@echo "  liaison 信用联络员, deputy 分管领导, director 局长, analyst 业务分析员, supervisor 督查员, admin 管理员"
	@echo ""
	env -u DATABASE_URL $(BIN)/chengxin worker & \
	  worker=$$!; trap "kill $$worker 2>/dev/null" EXIT INT TERM; \
	  env -u DATABASE_URL $(BIN)/chengxin serve --host $(HOST) --port $(PORT)

# The suite runs on SQLite, and once more on PostgreSQL when DATABASE_URL is set (as in CI).
test: install assets
	env -u DATABASE_URL $(BIN)/python -m pytest -q $(PYTEST_ARGS)
	@if [ -n "$$DATABASE_URL" ]; then \
	  echo "== again on $$DATABASE_URL =="; \
	  $(BIN)/python -m pytest -q $(PYTEST_ARGS); \
	fi

lint: install
	$(BIN)/ruff check engine webapp tests bench
	$(BIN)/ruff format --check engine webapp tests bench

bench: install
	$(BIN)/python -m bench.run

# Every figure of bench/RESULTS*.md in one go (about 2 hours on 2 cores). BENCH_PG must name a
# database of its own: each step DROPS its schema. Output: bench/out/*.json, *.md and plans.
BENCH_PG ?= postgresql+psycopg://postgres@127.0.0.1:5432/chengxin_bench
BENCH_OUT ?= bench/out
bench-all: install
	mkdir -p $(BENCH_OUT)
	$(BIN)/python -m bench.run --json-out $(BENCH_OUT)/engine_sqlite.json > $(BENCH_OUT)/engine_sqlite.md
	$(BIN)/python -m bench.run --db $(BENCH_PG) --reset --json-out $(BENCH_OUT)/engine_postgresql.json > $(BENCH_OUT)/engine_postgresql.md
	$(BIN)/python -m bench.http_load --db $(BENCH_PG) --db sqlite --users 1,4,16 --seconds 20 --json-out $(BENCH_OUT)/http.json
	$(BIN)/python -m bench.sizes --db $(BENCH_PG) --plans-out $(BENCH_OUT)/plans.txt --json-out $(BENCH_OUT)/sizes.json
	$(BIN)/python -m bench.memory --db $(BENCH_PG) --json-out $(BENCH_OUT)/memory.json
	$(BIN)/python -m bench.scaleout --db $(BENCH_PG) --json-out $(BENCH_OUT)/scaleout.json

clean:
	rm -rf $(VENV) node_modules webapp/static/dist
