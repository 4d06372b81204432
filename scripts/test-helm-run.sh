#!/usr/bin/env bash
# `make test-helm-run` (part of `make test`): runs what the Helm chart renders, as containers,
# since no Kubernetes cluster runs here (tests/helm/run_rendered.py says exactly what it checks).
# Installs and starts what it needs, reusing the container scripts of issue 10:
#   1. Docker engine (+ debootstrap)                scripts/container-engine.sh
#   2. stand-in base images when absent             scripts/standin-images.sh (debian, postgres:15, redis:7),
#                                                   tests/helm/standins/busybox (busybox:1.36, the helm test Pod)
#   3. release binaries and the three images        scripts/images.sh (IMAGES_SKIP_CARGO=1 reuses target/release)
#   4. helm + kubernetes-validate, the MCP SDK      scripts/install-helm-tools.sh, scripts/install-tools.sh
# Needs openssl (the test CA) and root (bind-mounted Secret files get the pods' fsGroup).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
die() { printf 'test-helm-run: FAIL: %s\n' "$*" >&2; exit 1; }
for s in container-engine.sh standin-images.sh images.sh; do
  [ -x "scripts/$s" ] || die "scripts/$s missing (the container images of issue 10)"
done
command -v openssl >/dev/null 2>&1 || die "openssl not found (it makes the test CA and certificates)"
scripts/container-engine.sh
scripts/standin-images.sh debian postgres redis
# The `helm test` Pod's image (busybox:1.36): a local stand-in when no image of that name exists.
DOCKER=/usr/bin/docker; [ -x "$DOCKER" ] || DOCKER="$(command -v docker)"
if ! "$DOCKER" image inspect busybox:1.36 >/dev/null 2>&1; then
  DOCKER_BUILDKIT=1 "$DOCKER" build -q -t busybox:1.36 tests/helm/standins/busybox >/dev/null \
    || die "building the busybox:1.36 stand-in failed"
fi
scripts/images.sh
scripts/install-helm-tools.sh >/dev/null
scripts/install-tools.sh >/dev/null
HELM="$ROOT/.tools/helm/bin/helm" exec "$ROOT/.tools/helm/venv/bin/python" tests/helm/run_rendered.py
