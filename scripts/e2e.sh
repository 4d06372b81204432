#!/usr/bin/env bash
# End-to-end tests with clients nobody on this project wrote. Starts a real auth-service (dev
# login) and a real mcp-service on free loopback ports, with a fresh database and Redis prefix, then
# runs, in order:
#   tests/e2e/oauth-flow.mjs                 auth-service with oauth4webapi
#   tests/e2e/conformance-authorization.mjs  the MCP conformance suite's authorization-server checks
#   tests/e2e/mcp-ts-sdk.mjs                 mcp-service + auth-service with the MCP TypeScript SDK client
#   tests/e2e/mcp-conformance.mjs            the suite's server scenarios against mcp-service, through
#   tests/e2e/jwt-access-tokens.mjs          RFC 9068 JWT access tokens verified by jose against jwks_uri
#                                            a bearer-injecting proxy
#   scripts/e2e-as-user.sh                   its own stack with token-vault and real upstream providers
#                                            and APIs: tests/e2e/as-the-user.mjs, then plaintext scans
# and cleans up (both services, the database, the Redis keys, the generated configs), on failure too.
# Exit 1 if any script fails.
#
# E2E_BACKEND=embedded runs the same first four drivers against the embedded single-process mode
# instead (`mcpauth dev`: SQLite and in-process state, no Postgres, no Redis); `make test-e2e`
# runs both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf 'e2e: %s\n' "$*"; }

PGADMIN="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="mcpauth_e2e_$$_$RANDOM"
DBURL="${PGADMIN%/*}/$DB"
PREFIX="mcpauth-e2e-$$-$RANDOM"
BIN="${AUTH_SERVICE_BIN:-$ROOT/target/debug/auth-service}"
MCP_BIN="${MCP_SERVICE_BIN:-$ROOT/target/debug/mcp-service}"
MCPAUTH_BIN="${MCPAUTH_BIN:-$ROOT/target/debug/mcpauth}"
BACKEND="${E2E_BACKEND:-stack}"
case "$BACKEND" in stack|embedded) ;; *) say "E2E_BACKEND must be stack or embedded, not $BACKEND"; exit 2 ;; esac
TMP="$(mktemp -d --suffix=.mcpauth-e2e)"
LOG="$TMP/auth-service.log"
MCP_LOG="$TMP/mcp-service.log"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HTTP_PORT="$(free_port)"; GRPC_PORT="$(free_port)"; MCP_PORT="$(free_port)"; PROXY_PORT="$(free_port)"
VAULT_PORT="$(free_port)"
ISSUER="http://127.0.0.1:$HTTP_PORT"
INTROSPECTOR_SECRET="e2e-introspector-secret-$RANDOM$RANDOM"
EXCHANGER_SECRET="e2e-exchanger-secret-$RANDOM$RANDOM"
MCP_URL="http://127.0.0.1:$MCP_PORT/mcp"
JWT_RESOURCE="https://jwt-e2e.example/mcp"
pid=""; mcp_pid=""; status=1 # until the scripts have run

stop() { # pid: TERM, wait up to 10 s, then KILL
  local p="$1"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() {
  stop "$mcp_pid"
  stop "$pid"
  psql "$PGADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  for pattern in "$PREFIX:*" "$PREFIX-mcp:*"; do
    redis-cli --scan --pattern "$pattern" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
  done
  # Logs and generated configs stay after a failure (or with E2E_KEEP_LOGS=1).
  if [ "${E2E_KEEP_LOGS:-0}" = "1" ] || [ "$status" -ne 0 ]; then say "logs and configs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

[ -x "$BIN" ] || { say "building auth-service"; nice -n 19 cargo build -q -p auth-service; }
[ -x "$MCP_BIN" ] || { say "building mcp-service"; nice -n 19 cargo build -q -p mcp-service; }
if [ "$BACKEND" = embedded ]; then
  [ -x "$MCPAUTH_BIN" ] || { say "building mcpauth"; nice -n 19 cargo build -q -p mcpauth; }
fi

# auth-service takes one --config file: config/dev.toml plus the resources it must know. The
# built-in default resource stays (the first two scripts use it by default); mcp-service's is added.
# The dev caller (mcp-service's gRPC credential) may introspect tokens of mcp-service's resource too.
grep -q '^resources = \["http://127.0.0.1:8081/mcp"\]$' config/dev.toml \
  || { say "config/dev.toml: the dev caller's resources line changed; update scripts/e2e.sh"; exit 1; }
{
  sed -e "s|^resources = \[\"http://127.0.0.1:8081/mcp\"\]\$|resources = [\"http://127.0.0.1:8081/mcp\", \"$MCP_URL\"]|" config/dev.toml
  cat <<EOF

# --- added by scripts/e2e.sh ---
[[resources]]
uri = "http://127.0.0.1:8081/mcp"
scopes = ["mcp:tools.read", "mcp:tools.write"]
default_scopes = ["mcp:tools.read"]

[[resources]]
uri = "$MCP_URL"
scopes = ["mcp:tools.read", "mcp:tools.write"]
default_scopes = ["mcp:tools.read"]

# jwt-access-tokens.mjs: RFC 9068 JWT access tokens for this resource (dev mode: an ephemeral key).
[[resources]]
uri = "$JWT_RESOURCE"
scopes = ["mcp:tools.read"]
default_scopes = ["mcp:tools.read"]
token_format = "jwt"

# oauth-flow.mjs introspects the public client's tokens as a configured introspection client: a
# dynamically registered client sees only its own tokens (docs/configuration.md "Introspection").
[introspection]
clients = ["e2e-introspector"]

# tests/e2e/token-exchange.mjs (from oauth-flow.mjs): RFC 8693 exchange of a user's token for a
# downstream API's audience by a confidential client the policy names.
[[resources]]
uri = "https://downstream.e2e.example/api"
scopes = ["down:read"]

[[token_exchange.policies]]
clients = ["e2e-exchanger"]
from = ["http://127.0.0.1:8081/mcp"]
to = "https://downstream.e2e.example/api"
scopes = { "mcp:tools.read" = ["down:read"] }

[[clients]]
client_id = "e2e-exchanger"
client_secret_sha256 = "$(printf '%s' "$EXCHANGER_SECRET" | "$BIN" hash-secret)"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
token_endpoint_auth_method = "client_secret_basic"

[[clients]]
client_id = "e2e-introspector"
client_secret_sha256 = "$(printf '%s' "$INTROSPECTOR_SECRET" | "$BIN" hash-secret)"
grant_types = ["client_credentials"]
token_endpoint_auth_method = "client_secret_basic"
EOF
} >"$TMP/auth-service.toml"

# mcp-service: the resource on its port, the e2e auth-service as issuer and verifier (gRPC
# introspection with the dev credential), its revocations through the same Redis prefix, and the
# conformance proxy's origin allowed (dns-rebinding-protection sends Origin http://127.0.0.1:<proxy>).
cat >"$TMP/mcp-service.toml" <<EOF
# Loopback only, with the public dev credential: dev mode.
dev_mode = true
# The conformance suite's reference tools, for tests/e2e/mcp-conformance.mjs (dev mode only).
conformance_tools = true
resource = "$MCP_URL"
authorization_servers = ["$ISSUER"]

[http]
addr = "127.0.0.1:$MCP_PORT"
allowed_origins = ["http://127.0.0.1:$MCP_PORT", "http://localhost:$MCP_PORT", "http://127.0.0.1:$PROXY_PORT", "http://localhost:$PROXY_PORT"]

[log]
format = "json"

[verifier.grpc]
addr = "http://127.0.0.1:$GRPC_PORT"
credential = "dev-service-credential"

[redis]
auth_key_prefix = "$PREFIX"
key_prefix = "$PREFIX-mcp"
EOF

export MCPAUTH_AUTH__HTTP__ADDR="127.0.0.1:$HTTP_PORT" MCPAUTH_AUTH__GRPC__ADDR="127.0.0.1:$GRPC_PORT" \
  MCPAUTH_AUTH__ISSUER="$ISSUER" MCPAUTH_AUTH__LOG__FORMAT=json
wait_ready() { # url, pid, log, name
  for _ in $(seq 1 300); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; say "$4 exited during start"; exit 1; }
    sleep 0.1
  done
  tail -n 20 "$3" >&2; say "$4 not ready"; exit 1
}
if [ "$BACKEND" = embedded ]; then
  # One process: the three services of `mcpauth dev` with their own configuration files, token-vault
  # on a free port and introspecting at this auth-service; data in a fresh directory.
  sed -e "s|^addr = \"127.0.0.1:9091\"|addr = \"127.0.0.1:$VAULT_PORT\"|" \
    -e "s|^addr = \"http://127.0.0.1:9090\"|addr = \"http://127.0.0.1:$GRPC_PORT\"|" \
    config/token-vault.dev.toml >"$TMP/token-vault.toml"
  grep -q "127.0.0.1:$VAULT_PORT" "$TMP/token-vault.toml" && grep -q "127.0.0.1:$GRPC_PORT" "$TMP/token-vault.toml" \
    || { say "could not point token-vault at the e2e ports"; exit 1; }
  "$MCPAUTH_BIN" dev --data-dir "$TMP/data" --auth-config "$TMP/auth-service.toml" \
    --vault-config "$TMP/token-vault.toml" --mcp-config "$TMP/mcp-service.toml" >>"$LOG" 2>&1 &
  pid=$!
  wait_ready "$ISSUER/readyz" "$pid" "$LOG" "mcpauth dev"
  wait_ready "http://127.0.0.1:$MCP_PORT/readyz" "$pid" "$LOG" "mcpauth dev (mcp-service)"
  say "mcpauth dev (embedded) up: $ISSUER, $MCP_URL, data in $TMP/data"
else
  psql "$PGADMIN" -qc "CREATE DATABASE $DB" >/dev/null
  export MCPAUTH_AUTH__DATABASE__URL="$DBURL" MCPAUTH_AUTH__REDIS__KEY_PREFIX="$PREFIX"
  "$BIN" --config "$TMP/auth-service.toml" migrate >>"$LOG" 2>&1
  "$BIN" --config "$TMP/auth-service.toml" serve >>"$LOG" 2>&1 &
  pid=$!
  wait_ready "$ISSUER/readyz" "$pid" "$LOG" "auth-service"
  say "auth-service up at $ISSUER"

  # mcp-service reads only its own file: none of the MCPAUTH_ variables above (or the caller's).
  unset_env=()
  while IFS='=' read -r name _; do
    case "$name" in MCPAUTH_*) unset_env+=(-u "$name") ;; esac
  done < <(env)
  env "${unset_env[@]}" "$MCP_BIN" --config "$TMP/mcp-service.toml" >>"$MCP_LOG" 2>&1 &
  mcp_pid=$!
  wait_ready "http://127.0.0.1:$MCP_PORT/readyz" "$mcp_pid" "$MCP_LOG" "mcp-service"
  say "mcp-service up at $MCP_URL"
fi

status=0
failed=(); ran=()
run() { # name, command…  (E2E_ONLY=name,name runs only those drivers)
  local name="$1"; shift
  if [ -n "${E2E_ONLY:-}" ] && [[ ",$E2E_ONLY," != *",$name,"* ]]; then say "--- $name: skipped (E2E_ONLY=$E2E_ONLY)"; return 0; fi
  ran+=("$name")
  say "--- $name"
  if ! "$@"; then status=1; failed+=("$name"); fi
}
run oauth-flow env ISSUER="$ISSUER" INTROSPECT_CLIENT_ID=e2e-introspector INTROSPECT_CLIENT_SECRET="$INTROSPECTOR_SECRET" \
  E2E_EXCHANGE_CLIENT_ID=e2e-exchanger E2E_EXCHANGE_CLIENT_SECRET="$EXCHANGER_SECRET" \
  E2E_EXCHANGE_TARGET=https://downstream.e2e.example/api node tests/e2e/oauth-flow.mjs
run jwt-access-tokens env ISSUER="$ISSUER" JWT_RESOURCE="$JWT_RESOURCE" CLIENT_ID=e2e-introspector \
  CLIENT_SECRET="$INTROSPECTOR_SECRET" node tests/e2e/jwt-access-tokens.mjs
run conformance-authorization env ISSUER="$ISSUER" node tests/e2e/conformance-authorization.mjs
run mcp-ts-sdk env ISSUER="$ISSUER" MCP_URL="$MCP_URL" node tests/e2e/mcp-ts-sdk.mjs
run mcp-conformance env ISSUER="$ISSUER" MCP_URL="$MCP_URL" PROXY_PORT="$PROXY_PORT" node tests/e2e/mcp-conformance.mjs
# The whole product with a real upstream: its own stack (scripts/e2e-as-user.sh).
[ "$BACKEND" = stack ] && run as-the-user bash scripts/e2e-as-user.sh
if [ $status -ne 0 ]; then
  say "FAILED ($BACKEND): ${failed[*]}"
  say "auth-service log tail:"; tail -n 30 "$LOG" >&2
  [ -f "$MCP_LOG" ] && { say "mcp-service log tail:"; tail -n 30 "$MCP_LOG" >&2; }
else
  say "all passed ($BACKEND): ${ran[*]}"
fi
exit $status
