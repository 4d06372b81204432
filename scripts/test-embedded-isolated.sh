#!/usr/bin/env bash
# Proof that `make run`'s embedded mode needs neither Postgres nor Redis: `mcpauth dev`, exactly as
# `make run` starts it (built-in dev configuration, default ports), runs in a network namespace of
# its own — only a loopback interface, on which nothing else listens — with the Postgres and Redis
# addresses of every service also pointed at a name that does not resolve. The official MCP
# TypeScript SDK client then completes its whole flow (tests/e2e/mcp-ts-sdk.mjs: discovery, DCR,
# PKCE, dev login, tools, refresh, revocation, re-authorization) inside the same namespace; then the
# process is restarted on the same data directory and a client registered before the restart is
# still known (the SQLite store survives a restart); SIGTERM stops it cleanly both times.
#
# Needs `unshare` (util-linux) and either root or unprivileged user namespaces. Exit 1 on failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf 'embedded-isolated: %s\n' "$*"; }

BIN="${MCPAUTH_BIN:-$ROOT/target/debug/mcpauth}"
[ -x "$BIN" ] || { say "building mcpauth"; nice -n 19 cargo build -q -p mcpauth; }
command -v unshare >/dev/null || { say "unshare (util-linux) is required"; exit 1; }
NODE="$(command -v node)" || { say "node is required (scripts/install-tools.sh)"; exit 1; }

if [ "$(id -u)" = 0 ]; then NS=(unshare --net); else NS=(unshare --user --map-root-user --net); fi
if ! "${NS[@]}" true 2>/dev/null; then
  say "cannot create a network namespace here (${NS[*]}): not root and no unprivileged user namespaces"
  exit 1
fi

TMP="$(mktemp -d --suffix=.mcpauth-isolated)"
status=1
cleanup() {
  if [ "$status" -ne 0 ] || [ "${E2E_KEEP_LOGS:-0}" = 1 ]; then say "logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# Everything below runs inside the namespace; the process tree dies with it.
export BIN NODE TMP ROOT
"${NS[@]}" bash -euo pipefail -c '
say() { printf "embedded-isolated: %s\n" "$*"; }
ip link set lo up
# Nothing answers where the shared Postgres and Redis of this machine listen.
for port in 5432 6379; do
  if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex((\"127.0.0.1\", $port)) == 0 else 1)"; then
    say "port $port answers inside the namespace: not isolated"; exit 1
  fi
done
say "no Postgres (5432) and no Redis (6379) reachable"
# And every configured address of them points nowhere.
export MCPAUTH_AUTH__DATABASE__URL=postgres://postgres@nowhere.invalid:5432/mcpauth \
  MCPAUTH_AUTH__REDIS__URL=redis://nowhere.invalid:6379 \
  MCPAUTH_VAULT__DATABASE__URL=postgres://postgres@nowhere.invalid:5432/mcpauth \
  MCPAUTH_VAULT__REDIS__URL=redis://nowhere.invalid:6379 \
  MCPAUTH_MCP__REDIS__URL=redis://nowhere.invalid:6379

start() {
  "$BIN" dev --data-dir "$TMP/data" >>"$TMP/mcpauth-dev.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$TMP/mcpauth-dev.log" >&2; say "mcpauth dev exited during start"; exit 1; }
    sleep 0.1
  done
  tail -n 30 "$TMP/mcpauth-dev.log" >&2; say "mcpauth dev not ready"; exit 1
}
stop() {
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then say "mcpauth dev did not stop on SIGTERM within 10 s"; kill -KILL "$pid"; exit 1; fi
  wait "$pid" || { say "mcpauth dev exited with $? on SIGTERM"; exit 1; }
}
start
grep -q "data .*$TMP/data" "$TMP/mcpauth-dev.log" || { say "the banner does not say where the data lives"; exit 1; }
say "mcpauth dev up; MCP TypeScript SDK client flow:"
ISSUER=http://127.0.0.1:8080 MCP_URL=http://127.0.0.1:8081/mcp "$NODE" "$ROOT/tests/e2e/mcp-ts-sdk.mjs"

# A client registered and a token issued before a restart are still known after it.
reg=$(curl -fsS -H "content-type: application/json" -d "{\"redirect_uris\":[\"http://127.0.0.1:9/cb\"],\"token_endpoint_auth_method\":\"none\",\"client_name\":\"restart-probe\"}" http://127.0.0.1:8080/register)
client_id=$(printf "%s" "$reg" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"client_id\"])")
stop
start
code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:8080/authorize?response_type=code&client_id=$client_id&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&resource=http%3A%2F%2F127.0.0.1%3A8081%2Fmcp&state=s")
[ "$code" = 302 ] || { say "client $client_id registered before the restart is unknown after it (/authorize answered $code)"; exit 1; }
say "a client registered before a restart is still known after it"
stop
'
status=0
say "passed: the embedded mode ran the SDK client flow with no Postgres and no Redis reachable"
