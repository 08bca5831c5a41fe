# Roster's entry points. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/roster-target
CARGO ?= cargo

.PHONY: run build test lint fmt services services-stop migrate

## Start Roster with embedded defaults (SQLite + the embedded event log in ./roster-data).
run:
	$(CARGO) run --release -p roster -- serve

build:
	$(CARGO) build --release -p roster

## The whole suite: unit, real-database and black-box integration tests. Starts the local
## Postgres it needs (scripts/services.sh) so Postgres-backed tests run too.
test:
	@eval "$$(ROSTER_SERVICES=postgres scripts/services.sh start)" && \
	  export ROSTER_TEST_DATABASE_URL="$$ROSTER_DATABASE_URL" && unset ROSTER_DATABASE_URL && \
	  $(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Local Kafka (KRaft, from Maven Central jars) and Postgres on 127.0.0.1; prints the exports to use.
services:
	@scripts/services.sh start

services-stop:
	@scripts/services.sh stop

migrate:
	$(CARGO) run --release -p roster -- migrate
