#!/usr/bin/env bash
# `make images`: the three service images from the repository's Dockerfile, with binaries built
# by the host's cargo (BINARIES=prebuilt: no rust image needed), then their sizes and cold start
# times. The one place the release binaries are built (`make test-containers` calls this too).
#
#   scripts/images.sh            engine check, stand-in base if absent, cargo build, 3 images, report
#   IMAGES_SKIP_CARGO=1 …        reuse target/release as it is
#
# Tags: mcpauth/<service>:<workspace version> and mcpauth/<service>:latest (docker-compose.yml
# uses :latest, or $MCPAUTH_TAG). Labels: org.opencontainers.image.{source,version,revision}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/.containers"
mkdir -p "$STATE"
say() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: ERROR: %s\n' "$*" >&2; exit 1; }
SERVICES=(auth-service token-vault mcp-service)
CARGO="${CARGO:-cargo}"

scripts/container-engine.sh
DOCKER=/usr/bin/docker; [ -x "$DOCKER" ] || DOCKER="$(command -v docker)"
# Without a registry the base is a local stand-in (docker pull debian:bookworm-slim first to use
# the real one: a present image is never replaced).
scripts/standin-images.sh debian

if [ "${IMAGES_SKIP_CARGO:-0}" != 1 ]; then
  start=$SECONDS
  say "cargo build --release of the three services (the first time: minutes)"
  nice -n 10 "$CARGO" build --release --locked -q -p auth-service -p token-vault -p mcp-service \
    || die "cargo build --release failed"
  say "release binaries ready in $((SECONDS - start)) s"
fi
# Staged for the build context without their debug line tables (a third of their size), as the
# Dockerfile's own build stage does.
mkdir -p target/docker-bin
for s in "${SERVICES[@]}"; do
  [ -x "target/release/$s" ] || die "target/release/$s missing (run without IMAGES_SKIP_CARGO)"
  if command -v strip >/dev/null 2>&1; then
    strip --strip-debug -o "target/docker-bin/$s.tmp" "target/release/$s"
  else
    cp "target/release/$s" "target/docker-bin/$s.tmp"
  fi
  mv -f "target/docker-bin/$s.tmp" "target/docker-bin/$s"
done

version="$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $2; exit}' Cargo.toml)"
source_url="$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^repository *=/{print $2; exit}' Cargo.toml)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- 2>/dev/null || revision="$revision-dirty"
for s in "${SERVICES[@]}"; do
  start=$SECONDS
  DOCKER_BUILDKIT=1 "$DOCKER" build -q --target "$s" \
    --build-arg BINARIES=prebuilt \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg SOURCE="$source_url" \
    -t "mcpauth/$s:$version" -t "mcpauth/$s:latest" . >"$STATE/build-$s.log" 2>&1 \
    || { tail -n 30 "$STATE/build-$s.log" >&2; die "docker build --target $s failed (log: $STATE/build-$s.log)"; }
  say "built mcpauth/$s:$version (:latest) in $((SECONDS - start)) s"
done

# Report: size, and cold start = `docker run --rm IMAGE --version` from create to exit (the
# container runtime's share of a start; the services' own start is measured by
# scripts/test-containers.sh, to healthy).
printf '%-26s %10s %12s\n' image size cold-start
for s in "${SERVICES[@]}"; do
  bytes="$("$DOCKER" image inspect -f '{{.Size}}' "mcpauth/$s:latest")"
  t0=$(date +%s%N)
  "$DOCKER" run --rm "mcpauth/$s:latest" --version >/dev/null
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  awk -v n="mcpauth/$s" -v b="$bytes" -v ms="$ms" 'BEGIN{printf "%-26s %7.1f MB %9d ms\n", n, b / 1e6, ms}'
done
