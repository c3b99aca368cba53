# Developer entry points. The local stack (Kafka, Redis, PostgreSQL on 127.0.0.1) is
# deploy/local/stack; see its header for the knobs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STACK := deploy/local/stack
DATA := rater-data
WORKER_PID := $(DATA)/worker.pid
WORKER_LOG := $(DATA)/worker.log
# `make run`'s worker checks bearer tokens with a demo HS256 secret generated once into
# rater-data/; the demo's switch signs its token with the same secret.
DEMO_KEY := $(DATA)/demo-jwt.key
DEMO_JWT := RATER_JWT_ALGORITHM=HS256 RATER_JWT_KEY=@$(DEMO_KEY) RATER_JWT_ISSUER=rater-demo RATER_JWT_AUDIENCE=rater-demo
PYTEST_ARGS ?=
BENCH_ARGS ?=

# One set of ports for the stack and the rater (SPEC §10 defaults).
export KAFKA_PORT ?= 9092
export KAFKA_CONTROLLER_PORT ?= 9093
export REDIS_PORT ?= 6379
export PG_PORT ?= 5432
export RATER_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(KAFKA_PORT)
export RATER_REDIS_URL ?= redis://127.0.0.1:$(REDIS_PORT)/0
export RATER_HISTORY_DSN ?= postgresql://rater@127.0.0.1:$(PG_PORT)/rater
RATER_WEB_PORT ?= 6066

.PHONY: help venv stack-up stack-down test test-faults lint run stop bench

help:
	@echo "make venv        create .venv and install the package with its test extras"
	@echo "make stack-up    start Kafka, Redis and PostgreSQL on 127.0.0.1 (deploy/local/stack up)"
	@echo "make stack-down  stop them (deploy/local/stack down)"
	@echo "make test        the test suite against a real stack (PYTEST_ARGS=... passes on)"
	@echo "make test-faults the fault-injection suite on its own stack (Kafka 19092, Redis 16379,"
	@echo "                 Redis Cluster 17001-17003); kills and restarts them (~7 min)"
	@echo "make lint        ruff and mypy"
	@echo "make run         stack, topics, a worker in the background, the example data, a report"
	@echo "make stop        stop the worker started by 'make run' and the stack"
	@echo "make bench       benchmarks (python -m benchmarks; BENCH_ARGS=... passes on)"

venv: $(STAMP)

# Reinstalled only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

# 'stack with' brings the stack up, runs pytest, and takes the stack down again
# even when pytest fails, exiting with pytest's code. A stack that was already
# up is left up (it says so).
test: venv
	$(STACK) deps
	$(STACK) with -- $(BIN)/pytest --ignore=tests/faults $(PYTEST_ARGS)

# The fault suite starts and stops its own Kafka + Redis (deploy/local/stack on
# other ports, data and logs in rater-data/faults/) and Redis Cluster
# (deploy/local/redis-cluster): it never touches the default stack above.
test-faults: venv
	$(STACK) deps
	$(BIN)/pytest tests/faults -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check rater tests benchmarks
	$(BIN)/mypy

run: venv stack-up
	mkdir -p $(DATA)
	$(BIN)/rater console demo-key $(DEMO_KEY)
	$(BIN)/rater topics create
	@if [ -s $(WORKER_PID) ] && kill -0 "$$(cat $(WORKER_PID))" 2>/dev/null; then \
	    echo "worker already running (pid $$(cat $(WORKER_PID)))"; \
	else \
	    echo "starting rater worker (log $(WORKER_LOG))"; \
	    $(DEMO_JWT) RATER_HISTORY_SINK=on setsid bash -c 'echo $$$$ >"$$0"; exec "$$@"' $(WORKER_PID) \
	        $(BIN)/rater worker </dev/null >>$(WORKER_LOG) 2>&1 & \
	    for i in $$(seq 1 120); do \
	        pid="$$(cat $(WORKER_PID) 2>/dev/null || true)"; \
	        if [ -n "$$pid" ] && ! kill -0 "$$pid" 2>/dev/null; then \
	            tail -n 30 $(WORKER_LOG) >&2; echo "rater worker exited (log $(WORKER_LOG))" >&2; exit 1; \
	        fi; \
	        if (exec 3<>/dev/tcp/127.0.0.1/$(RATER_WEB_PORT)) 2>/dev/null; then break; fi; \
	        if [ "$$i" = 120 ]; then \
	            tail -n 30 $(WORKER_LOG) >&2; echo "rater worker not answering on port $(RATER_WEB_PORT) after 60s" >&2; exit 1; \
	        fi; \
	        sleep 0.5; \
	    done; \
	    echo "worker running (pid $$(cat $(WORKER_PID)), http://127.0.0.1:$(RATER_WEB_PORT))"; \
	fi
	$(BIN)/rater demo generate --out $(DATA)/demo
	$(BIN)/rater subscriptions load $(DATA)/demo/subscriptions.json --wait 60
	$(DEMO_JWT) $(BIN)/rater demo switch --dir $(DATA)/demo
	$(BIN)/rater replay $(DATA)/demo/cdrs.jsonl
	$(BIN)/rater demo report --dir $(DATA)/demo --wait 90
	@echo
	@echo "The worker keeps running (pid $$(cat $(WORKER_PID)), log $(WORKER_LOG))."
	@echo "  topics:   calls.cdr -> calls.rated, billing.overage-charges, subscriptions.alerts, calls.dlq"
	@echo "  API:      http://127.0.0.1:$(RATER_WEB_PORT)/v1/... (readiness /readyz, liveness /healthz)"
	@echo "  tokens:   $(DEMO_JWT) $(BIN)/rater token --sub me --secret --scope call_authorizer"
	@echo "  metrics:  http://127.0.0.1:$(RATER_WEB_PORT)/metrics"
	@echo "  stop it:  make stop"
	@echo
	@echo "The console (call history, cost management, the PAYG switch), signed in as:"
	@$(DEMO_JWT) $(BIN)/rater console links

stop:
	@if [ -s $(WORKER_PID) ] && pid="$$(cat $(WORKER_PID))" && kill -0 "$$pid" 2>/dev/null; then \
	    echo "stopping rater worker (pid $$pid)"; \
	    kill -TERM "$$pid" 2>/dev/null || true; \
	    for i in $$(seq 1 100); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.2; done; \
	    if kill -0 "$$pid" 2>/dev/null; then echo "worker still running after 20s; killing it"; kill -KILL "$$pid" || true; fi; \
	else \
	    echo "rater worker not running"; \
	fi
	rm -f $(WORKER_PID)
	$(STACK) down

BENCH_STAMP := $(VENV)/.bench-stamp

# the bench extra (py-spy, matplotlib) only for those who run the benchmarks
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

# vegeta, the compiled fixed-rate HTTP load generator of phase f, built once with Go into a
# cache outside the repository (never committed); BENCH_TOOLS moves that cache
VEGETA_VERSION := v12.13.0
BENCH_TOOLS ?= $(HOME)/.cache/rater-bench
VEGETA := $(BENCH_TOOLS)/vegeta-$(VEGETA_VERSION)/vegeta

# without Go the other phases still run; phase f then says that vegeta is missing
$(VEGETA):
	@if command -v go >/dev/null 2>&1; then \
	    echo "building vegeta $(VEGETA_VERSION) into $(dir $(VEGETA))"; \
	    GOBIN="$(abspath $(dir $(VEGETA)))" go install github.com/tsenart/vegeta/v12@$(VEGETA_VERSION); \
	else \
	    echo "go not found: phase f needs vegeta; install Go once and make bench builds it" >&2; \
	fi

bench: venv $(BENCH_STAMP) $(VEGETA)
	BENCH_VEGETA="$(abspath $(VEGETA))" $(STACK) with -- $(BIN)/python -m benchmarks $(BENCH_ARGS)
