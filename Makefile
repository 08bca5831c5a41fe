# Roster's entry points. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/roster-target
CARGO ?= cargo

.PHONY: run build test lint fmt fuzz services services-stop migrate bench

## Start Roster with embedded defaults (SQLite + the embedded event log in ./roster-data).
run:
	$(CARGO) run --release -p roster -- serve

build:
	$(CARGO) build --release -p roster

## The whole suite: unit, real-database and black-box integration tests; the integration suite
## (crates/roster/tests/it) runs on all three backends: SQLite, Postgres, and Postgres + Kafka
## with two ingress, two projector and one licensing process per server. Starts the local
## Postgres and Kafka it needs (scripts/services.sh).
test:
	@eval "$$(scripts/services.sh start)" && \
	  export ROSTER_TEST_DATABASE_URL="$$ROSTER_DATABASE_URL" ROSTER_TEST_KAFKA_BROKERS="$$ROSTER_KAFKA_BROKERS" && \
	  unset ROSTER_DATABASE_URL ROSTER_KAFKA_BROKERS && \
	  SECONDS=0 && ROSTER_IT_BACKEND=sqlite $(CARGO) test --workspace && \
	  echo "make test: workspace (integration suite on sqlite) passed in $${SECONDS}s" && \
	  for backend in postgres kafka; do \
	    SECONDS=0 && ROSTER_IT_BACKEND=$$backend $(CARGO) test -p roster --test it || exit 1; \
	    echo "make test: integration suite on $$backend passed in $${SECONDS}s"; \
	  done

## Fuzzes each parser for FUZZ_SECONDS (default 300) per target with cargo-fuzz on nightly (CI runs
## `scripts/fuzz.sh 10`). Seeds: fuzz/corpus; crashes land in fuzz/artifacts. See docs/security.md.
FUZZ_SECONDS ?= 300
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Micro-benchmarks and the simulator suite; writes docs/benchmarks.md and docs/benchmarks/*.svg (~20 min).
## Measures the split Kafka + Postgres deployment too when `make services` is up. Knobs: scripts/bench.sh.
bench:
	CARGO="$(CARGO)" scripts/bench.sh

## Local Kafka (KRaft, from Maven Central jars) and Postgres on 127.0.0.1; prints the exports to use.
services:
	@scripts/services.sh start

services-stop:
	@scripts/services.sh stop

migrate:
	$(CARGO) run --release -p roster -- migrate
