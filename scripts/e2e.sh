#!/usr/bin/env bash
# End-to-end tests with clients nobody on this project wrote: starts a real auth-service (dev
# login) on free loopback ports with a fresh database and Redis prefix, runs the oauth4webapi flow
# and the MCP conformance suite's authorization-server checks against it, then cleans up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf 'e2e: %s\n' "$*"; }

PGADMIN="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="mcpauth_e2e_$$_$RANDOM"
DBURL="${PGADMIN%/*}/$DB"
PREFIX="mcpauth-e2e-$$-$RANDOM"
BIN="${AUTH_SERVICE_BIN:-$ROOT/target/debug/auth-service}"
LOG="$(mktemp -t auth-service-e2e.XXXXXX.log)"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HTTP_PORT="$(free_port)"; GRPC_PORT="$(free_port)"
ISSUER="http://127.0.0.1:$HTTP_PORT"
pid=""

cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  psql "$PGADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli --scan --pattern "$PREFIX:*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT

[ -x "$BIN" ] || { say "building auth-service"; cargo build -q -p auth-service; }
psql "$PGADMIN" -qc "CREATE DATABASE $DB" >/dev/null
export MCPAUTH__DATABASE__URL="$DBURL" MCPAUTH__REDIS__KEY_PREFIX="$PREFIX" \
  MCPAUTH__HTTP__ADDR="127.0.0.1:$HTTP_PORT" MCPAUTH__GRPC__ADDR="127.0.0.1:$GRPC_PORT" \
  MCPAUTH__ISSUER="$ISSUER" MCPAUTH__LOG__FORMAT=json
"$BIN" --config config/dev.toml migrate >>"$LOG" 2>&1
"$BIN" --config config/dev.toml serve >>"$LOG" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$ISSUER/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG" >&2; say "auth-service exited during start"; exit 1; }
  sleep 0.1
done
say "auth-service up at $ISSUER (log: $LOG)"

status=0
ISSUER="$ISSUER" node tests/e2e/oauth-flow.mjs || status=1
ISSUER="$ISSUER" node tests/e2e/conformance-authorization.mjs || status=1
if [ $status -ne 0 ]; then
  say "auth-service log tail:"; tail -n 30 "$LOG" >&2
fi
exit $status
