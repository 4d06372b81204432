#!/usr/bin/env bash
# `make test-containers` (part of `make test`): the images and the top-level docker-compose.yml,
# end to end, from a machine with nothing started. Installs and starts what it needs:
#   1. Docker engine + Compose (+ debootstrap)          scripts/container-engine.sh
#   2. stand-in base images when absent                  scripts/standin-images.sh
#   3. release binaries (host cargo) and the 3 images    scripts/images.sh
#   4. the MCP TypeScript SDK                            scripts/install-tools.sh
# then `docker compose up` (project mcpauth-test) and checks:
#   - every service healthy, the one-shot services exited 0
#   - each image: numeric non-root user (image and running processes), OCI labels, --help,
#     check-config on the compose configuration (and a broken one refused in one line),
#     `healthcheck` ok against the running service and failing without one
#   - the SDK client's whole flow with the demo user through the login form
#     (tests/e2e/docker-compose-flow.mjs), `restart auth-service` (graceful stop on SIGTERM)
#     then the refresh token still works, `down` + `up` keeps secrets and registered clients
#   - `down -v` removes the volumes
# Idempotent; cleans up (down -v) on success and failure. Ports 8080 and 8081 on 127.0.0.1 must
# be free (the compose file publishes the issuer and the MCP endpoint there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/.containers"
mkdir -p "$STATE"
T0=$SECONDS
say() { printf 'test-containers [%3ds]: %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf 'test-containers: FAIL: %s\n' "$*" >&2; exit 1; }
PROJECT=mcpauth-test
DEMO_PASSWORD="mcpauth-demo"
export MCPAUTH_DEMO_PASSWORD="$DEMO_PASSWORD" MCPAUTH_TAG=latest

say "1/4 container engine"
scripts/container-engine.sh
DOCKER=/usr/bin/docker; [ -x "$DOCKER" ] || DOCKER="$(command -v docker)"
if command -v docker-compose >/dev/null 2>&1; then COMPOSE=(docker-compose); else COMPOSE=("$DOCKER" compose); fi
COMPOSE+=(-p "$PROJECT" -f "$ROOT/docker-compose.yml")
compose() { "${COMPOSE[@]}" "$@"; }

say "2/4 stand-in base images (built only when absent)"
scripts/standin-images.sh debian postgres redis
say "3/4 release binaries and images"
scripts/images.sh 2>&1 | tee "$STATE/images-report.txt"
[ "${PIPESTATUS[0]}" = 0 ] || die "scripts/images.sh failed"
say "4/4 the MCP TypeScript SDK"
scripts/install-tools.sh >"$STATE/install-tools.log" 2>&1 || { tail -n 20 "$STATE/install-tools.log"; die "scripts/install-tools.sh failed"; }
NODE="$ROOT/.tools/bin/node"; [ -x "$NODE" ] || NODE=node

# --- the stack ----------------------------------------------------------------------------------
status=1
cleanup() {
  if [ "$status" != 0 ]; then
    say "logs of the failed run (last 40 lines per service):"
    compose logs --no-color --tail 40 2>&1 | sed 's/^/  /' || true
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -f "$STATE/flow-state.json"
  say "cleaned up (down -v); total $((SECONDS - T0)) s"
}
compose down -v --remove-orphans >/dev/null 2>&1 || true # a previous aborted run
trap cleanup EXIT
for port in 8080 8081; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "127.0.0.1:$port is in use (make run?): docker-compose.yml publishes the issuer and MCP endpoint there"
  fi
done

LONG_RUNNING=(postgres redis auth-service token-vault mcp-service)
ONE_SHOT=(init-secrets auth-migrate vault-migrate)
cid() { compose ps -q "$1" 2>/dev/null | head -n1; }
wait_healthy() { # timeout seconds
  local deadline=$((SECONDS + $1)) s st
  while :; do
    local pending=()
    for s in "${LONG_RUNNING[@]}"; do
      st="$("$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$(cid "$s")" 2>/dev/null || echo absent)"
      [ "$st" = healthy ] || pending+=("$s=$st")
    done
    [ ${#pending[@]} = 0 ] && return 0
    [ $SECONDS -lt $deadline ] || die "not healthy within $1 s: ${pending[*]}"
    sleep 1
  done
}
one_shots_succeeded() {
  local s st
  for s in "${ONE_SHOT[@]}"; do
    st="$("$DOCKER" inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$(cid "$s")" 2>/dev/null || echo absent)"
    [ "$st" = "exited 0" ] || die "one-shot service $s: $st (expected exited 0)"
  done
}
up() {
  local start=$SECONDS
  compose up -d --no-build >"$STATE/compose-up.log" 2>&1 || { cat "$STATE/compose-up.log"; die "compose up failed"; }
  wait_healthy 180
  one_shots_succeeded
  say "all healthy $((SECONDS - start)) s after \`up\` (${LONG_RUNNING[*]}); ${ONE_SHOT[*]} exited 0"
}
flow() { # phase
  STATE_FILE="$STATE/flow-state.json" PHASE="$1" MCP_URL=http://localhost:8081/mcp ISSUER=http://localhost:8080 \
    DEMO_USER=demo DEMO_PASSWORD="$DEMO_PASSWORD" timeout 120 "$NODE" tests/e2e/docker-compose-flow.mjs | sed 's/^/  /'
  [ "${PIPESTATUS[0]}" = 0 ] || die "SDK flow, phase $1"
}

say "compose up (fresh volumes)"
up

# --- the images ---------------------------------------------------------------------------------
secrets_volume="${PROJECT}_secrets"
run_image() { # image, args… (no network; compose configs and generated secrets mounted)
  local image="$1"; shift
  "$DOCKER" run --rm --network none -v "$secrets_volume:/var/lib/mcpauth/secrets:ro" \
    -v "$ROOT/deploy/compose:/etc/mcpauth:ro" "$image" "$@"
}
version="$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $2; exit}' Cargo.toml)"
printf '[redis]\npool_size = "many"\n' >"$STATE/broken.toml"
chmod 0644 "$STATE/broken.toml"
for s in auth-service token-vault mcp-service; do
  image="mcpauth/$s:latest"
  user="$("$DOCKER" image inspect -f '{{.Config.User}}' "$image")"
  [ "$user" = "10001:10001" ] || die "$image: USER is '$user', expected 10001:10001"
  uids="$("$DOCKER" top "$(cid "$s")" -eo pid,uid | awk 'NR>1{print $2}' | sort -u | tr '\n' ' ')"
  [ "$uids" = "10001 " ] || die "$s: its processes run as uid(s) $uids, expected only 10001"
  labels="$("$DOCKER" image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}} {{index .Config.Labels "org.opencontainers.image.revision"}} {{index .Config.Labels "org.opencontainers.image.source"}}' "$image")"
  read -r l_version l_revision l_source <<<"$labels"
  [ "$l_version" = "$version" ] && [ "${l_revision:0:7}" = "$(git rev-parse --short=7 HEAD)" ] && [ -n "$l_source" ] \
    || die "$image: OCI labels '$labels' (expected version $version, revision $(git rev-parse --short HEAD), a source)"
  entry="$("$DOCKER" image inspect -f '{{json .Config.Entrypoint}}' "$image")"
  [ "$entry" = "[\"/usr/bin/tini\",\"--\",\"/usr/local/bin/$s\"]" ] || die "$image: entrypoint $entry"
  help="$(run_image "$image" --help)" || die "$image --help failed"
  grep -q '^Usage: ' <<<"$help" || die "$image --help: no usage line"
  grep -q 'healthcheck' <<<"$help" || die "$image --help does not list healthcheck"
  out="$(run_image "$image" --config "/etc/mcpauth/$s.toml" check-config 2>&1)" \
    || die "$image check-config on deploy/compose/$s.toml: $out"
  [ "$out" = "configuration ok" ] || die "$image check-config: $out"
  rc=0; out="$("$DOCKER" run --rm --network none -v "$STATE/broken.toml:/etc/mcpauth/broken.toml:ro" \
    "$image" --config /etc/mcpauth/broken.toml check-config 2>&1)" || rc=$?
  [ $rc = 2 ] && [ "$(wc -l <<<"$out")" = 1 ] && grep -q 'redis.pool_size' <<<"$out" \
    || die "$image check-config with a bad value: exit $rc, '$out' (expected exit 2, one line naming redis.pool_size)"
  hc="$("$DOCKER" exec "$(cid "$s")" "/usr/local/bin/$s" --config "/etc/mcpauth/$s.toml" healthcheck 2>&1)" \
    || die "$s healthcheck in the running container: $hc"
  [ "$hc" = ok ] || die "$s healthcheck printed '$hc'"
  rc=0; hc="$(run_image "$image" --config "/etc/mcpauth/$s.toml" healthcheck 2>&1)" || rc=$?
  [ $rc = 1 ] && grep -q "^$s: unhealthy: GET http://127.0.0.1:[0-9]*/readyz: cannot connect" <<<"$hc" \
    || die "$s healthcheck with nothing listening: exit $rc, '$hc'"
  say "image $image: user 10001:10001 (processes too), labels, --help, check-config, healthcheck ok"
done
# The ops endpoints live on the admin listeners (8180/8181/8182), which are never published: the
# published ports serve OAuth and MCP only.
for port in 8080 8081; do
  for path in /readyz /healthz /metrics; do
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$port$path")"
    [ "$code" = 404 ] || die "GET http://localhost:$port$path from the host answered $code (the admin paths must not be public)"
  done
done
code="$(curl -s -o /dev/null -w '%{http_code}' http://localhost:8080/.well-known/oauth-authorization-server)"
[ "$code" = 200 ] || die "the AS metadata answered $code from the host"
for s in auth-service mcp-service; do
  published="$("$DOCKER" port "$(cid "$s")" | awk '{print $1}' | sort | tr '\n' ' ')"
  case "$s" in auth-service) want="8080/tcp " ;; mcp-service) want="8081/tcp " ;; esac
  [ "$published" = "$want" ] || die "$s publishes '$published', expected only '$want'"
done
for s in postgres redis token-vault; do
  [ -z "$("$DOCKER" port "$(cid "$s")")" ] || die "compose publishes $s on the host: $("$DOCKER" port "$(cid "$s")")"
done
say "admin paths 404 on the published ports; only 8080 and 8081 published; postgres, redis, token-vault not"

# --- the MCP flow, restarts, persistence ----------------------------------------------------------
say "SDK flow: discovery → registration → login form → token → tools/list → tools/call"
flow first

start=$SECONDS
compose restart auth-service >/dev/null 2>&1 || die "compose restart auth-service failed"
restart_s=$((SECONDS - start))
[ $restart_s -lt 25 ] || die "restart auth-service took $restart_s s: SIGTERM did not stop it (stop_grace_period is 30 s)"
auth_log="$(compose logs --no-color auth-service 2>&1)"
grep -q '"shutdown signal received, draining"' <<<"$auth_log" && grep -q '"auth-service stopped"' <<<"$auth_log" \
  || die "auth-service did not log a graceful stop on SIGTERM"
wait_healthy 60
say "restart auth-service: ${restart_s} s (graceful stop on SIGTERM), healthy again $((SECONDS - start)) s after the restart began"
flow after-restart

compose down >/dev/null 2>&1 || die "compose down failed"
for v in secrets postgres-data redis-data; do
  "$DOCKER" volume inspect "${PROJECT}_$v" >/dev/null 2>&1 || die "volume ${PROJECT}_$v did not survive down"
done
say "down: volumes kept; up again"
up
init_log="$(compose logs --no-color init-secrets 2>&1)"
grep -q 'kept token-key-k1' <<<"$init_log" && ! grep -q 'created' <<<"$init_log" \
  || die "init-secrets regenerated secrets on the second up: $init_log"
flow after-recreate

compose down -v >/dev/null 2>&1 || die "compose down -v failed"
for v in secrets postgres-data redis-data; do
  "$DOCKER" volume inspect "${PROJECT}_$v" >/dev/null 2>&1 && die "volume ${PROJECT}_$v survived down -v"
done
status=0
say "PASS: images, compose up, SDK flow, restart, down/up persistence, down -v"
