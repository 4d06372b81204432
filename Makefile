# mcpauth — the verbs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
DEV_DB ?= postgres://postgres@127.0.0.1:5432/mcpauth

.PHONY: help run test test-rust test-e2e test-containers images bench lint fmt build release check-services tools

help:
	@echo "make run     start the local stack in dev mode (auth-service :8080/:9090, mcp-service :8081/mcp; Ctrl-C stops)"
	@echo "make test    every test: unit, integration (real Postgres + Redis), end-to-end, conformance"
	@echo "make images  the three service images (Dockerfile, host-built release binaries); sizes and start times"
	@echo "make bench   loopback benchmarks, results printed and written to target/bench/"
	@echo "make lint    rustfmt --check and clippy -D warnings"

check-services:
	@scripts/check-services.sh

tools:
	@scripts/install-tools.sh

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --workspace

## Dev mode: loopback only, dev login (user "dev", auto-consent), open registration.
run: check-services build
	@psql "$(DEV_DB:/mcpauth=/postgres)" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'mcpauth'" | grep -q 1 \
		|| psql "$(DEV_DB:/mcpauth=/postgres)" -qc "CREATE DATABASE mcpauth"
	scripts/run-dev.sh

## Every test. Creates its own databases and Redis prefixes and removes them afterwards.
test: check-services tools test-rust test-e2e test-containers

test-rust:
	$(CARGO) nextest run --workspace --no-fail-fast

test-e2e: build
	scripts/e2e.sh

## Images and docker-compose.yml end to end: installs/starts Docker if needed, builds stand-in
## base images when no registry is reachable, the release binaries and the three images.
test-containers:
	scripts/test-containers.sh

## mcpauth/{auth-service,token-vault,mcp-service}:<version> and :latest, from the Dockerfile with
## binaries built by the host's cargo (scripts/images.sh).
images:
	scripts/images.sh

bench: check-services tools
	scripts/bench.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
