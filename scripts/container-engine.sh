#!/usr/bin/env bash
# Makes a Docker engine and Compose available for `make images` and `make test-containers`:
# installs Debian's docker.io, docker-compose (1.29) and debootstrap when missing (as root, with
# apt-get), and starts dockerd when no engine answers. Idempotent; prints what it did.
# Prints nothing else: callers use /usr/bin/docker (Debian's client; BuildKit built in) if
# present, else the docker on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.containers"
say() { printf 'container-engine: %s\n' "$*" >&2; }
die() { printf 'container-engine: ERROR: %s\n' "$*" >&2; exit 1; }
mkdir -p "$STATE"

need=()
command -v dockerd >/dev/null 2>&1 || [ -x /usr/bin/docker ] || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || die "missing ${need[*]}: install Docker and Compose (and debootstrap for the stand-in base images)"
  say "installing ${need[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >"$STATE/apt.log" 2>&1 || {
    say "apt-get install failed once, updating the package lists and retrying"
    apt-get update -q >>"$STATE/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >>"$STATE/apt.log" 2>&1 \
      || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get install ${need[*]} failed (log: $STATE/apt.log)"; }
  }
fi

DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker)"
if ! "$DOCKER" info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || die "no Docker engine answers and dockerd is not installed"
  [ "$(id -u)" = 0 ] || die "no Docker engine answers: start it (e.g. sudo systemctl start docker)"
  say "starting dockerd (log: $STATE/dockerd.log)"
  # setsid: the daemon outlives this script and its caller's process group.
  setsid dockerd >"$STATE/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 100); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.2; done
  "$DOCKER" info >/dev/null 2>&1 || { tail -n 20 "$STATE/dockerd.log" >&2; die "dockerd did not start"; }
fi
say "engine $("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null), $( (docker-compose version --short 2>/dev/null || docker compose version --short) | head -n1 | sed 's/^/compose /')"
