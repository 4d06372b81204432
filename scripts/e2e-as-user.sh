#!/usr/bin/env bash
# End to end "as the user": the whole product with a real upstream. Starts, on free loopback ports,
# with fresh databases and Redis prefixes:
#   two upstream OpenID providers   tests/e2e/upstream-idp.mjs (panva's oidc-provider): "corp", the
#                                   organisation's identity provider users log in with, and "crm",
#                                   a further provider users connect from inside the conversation
#   two upstream APIs               tests/e2e/upstream-api.mjs, each accepting only its provider's
#                                   tokens
#   auth-service                    login delegated to corp (login.provider = "upstream")
#   token-vault                     both providers' token endpoints
#   mcp-service                     connector tools for both providers, gRPC introspection
# then runs tests/e2e/as-the-user.mjs (the official MCP TypeScript SDK client), then
# tests/e2e/device-flow.mjs (RFC 8628 with oauth4webapi as the device), and after them a
# scan of every Postgres table and Redis key for the tokens the run saw (scripts/scan-plaintext.py).
# Cleans up on exit (logs kept on failure or with E2E_KEEP_LOGS=1). Exit 1 on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf 'e2e-as-user: %s\n' "$*"; }

PGADMIN="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
TAG="$$_$RANDOM"
DB_AUTH="mcpauth_e2e_auth_$TAG"; DB_VAULT="mcpauth_e2e_vault_$TAG"
URL_AUTH="${PGADMIN%/*}/$DB_AUTH"; URL_VAULT="${PGADMIN%/*}/$DB_VAULT"
PREFIX="mcpauth-e2eu-$TAG"
AUTH_BIN="${AUTH_SERVICE_BIN:-$ROOT/target/debug/auth-service}"
MCP_BIN="${MCP_SERVICE_BIN:-$ROOT/target/debug/mcp-service}"
VAULT_BIN="${TOKEN_VAULT_BIN:-$ROOT/target/debug/token-vault}"
TMP="$(mktemp -d --suffix=.mcpauth-e2e-user)"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P_CORP="$(free_port)"; P_CRM="$(free_port)"; P_API1="$(free_port)"; P_API2="$(free_port)"
P_HTTP="$(free_port)"; P_GRPC="$(free_port)"; P_VAULT="$(free_port)"; P_MCP="$(free_port)"
ISSUER="http://127.0.0.1:$P_HTTP"
CORP="http://127.0.0.1:$P_CORP"; CRM="http://127.0.0.1:$P_CRM"
API1="http://127.0.0.1:$P_API1"; API2="http://127.0.0.1:$P_API2"
MCP_URL="http://127.0.0.1:$P_MCP/mcp"
# Service credentials: each service its own, each with only the permissions it needs.
CRED_MCP="e2e-mcp-service-credential-$RANDOM$RANDOM"
CRED_AUTH="e2e-auth-service-credential-$RANDOM$RANDOM"
CRED_VAULT="e2e-token-vault-credential-$RANDOM$RANDOM"
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
VAULT_KEY="$(head -c 32 /dev/urandom | base64)"
pids=(); status=1

stop() {
  local p="$1"
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
cleanup() {
  for ((i=${#pids[@]}-1; i>=0; i--)); do stop "${pids[$i]}"; done
  for db in "$DB_AUTH" "$DB_VAULT"; do psql "$PGADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  redis-cli --scan --pattern "$PREFIX*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
  if [ "${E2E_KEEP_LOGS:-0}" = "1" ] || [ "$status" -ne 0 ]; then say "logs and configs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

for b in "$AUTH_BIN:auth-service" "$MCP_BIN:mcp-service" "$VAULT_BIN:token-vault"; do
  [ -x "${b%%:*}" ] || { say "building ${b##*:}"; nice -n 19 cargo build -q -p "${b##*:}"; }
done

# A node process that prints `ready …` on its first line: start it, wait for that line. Its stdin
# is a FIFO held open here (upstream-idp.mjs exits when its stdin ends).
mkfifo "$TMP/hold"; exec 9<>"$TMP/hold"
start_node() { # name, args…
  local name="$1"; shift
  node "$@" >"$TMP/$name.log" 2>&1 <&9 &
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q '^ready ' "$TMP/$name.log" 2>/dev/null && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$TMP/$name.log" >&2; say "$name did not start"; exit 1
}
wait_http() { # name, url, pid, log
  for _ in $(seq 1 150); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 30 "$4" >&2; say "$1 did not become ready"; exit 1
}
wait_port() { # name, port, pid, log
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 30 "$4" >&2; say "$1 did not start listening"; exit 1
}
# Services read only their own file: none of the caller's MCPAUTH_ variables.
clean_env=()
while IFS='=' read -r name _; do case "$name" in MCPAUTH_*) clean_env+=(-u "$name") ;; esac; done < <(env)

start_node upstream-corp tests/e2e/upstream-idp.mjs "$P_CORP" --redirect-uri "$ISSUER/upstream/callback"
start_node upstream-crm tests/e2e/upstream-idp.mjs "$P_CRM" --redirect-uri "$ISSUER/upstream/callback"
start_node api-corp tests/e2e/upstream-api.mjs "$P_API1" "$CORP"
start_node api-crm tests/e2e/upstream-api.mjs "$P_API2" "$CRM"
say "upstream providers at $CORP (corp) and $CRM (crm); APIs at $API1 and $API2"

psql "$PGADMIN" -qc "CREATE DATABASE $DB_AUTH" >/dev/null
psql "$PGADMIN" -qc "CREATE DATABASE $DB_VAULT" >/dev/null

cat >"$TMP/auth-service.toml" <<EOF
issuer = "$ISSUER"
dev_mode = false

[http]
addr = "127.0.0.1:$P_HTTP"
workers = 2

[grpc]
addr = "127.0.0.1:$P_GRPC"

[[grpc.callers]]
name = "mcp-service"
credential_sha256 = "$(sha "$CRED_MCP")"
permissions = ["introspect", "start_connect"]
resources = ["$MCP_URL"]

[[grpc.callers]]
name = "token-vault"
credential_sha256 = "$(sha "$CRED_VAULT")"
permissions = ["introspect"]

[database]
url = "$URL_AUTH"
max_connections = 8

[redis]
key_prefix = "$PREFIX"

[log]
format = "json"

[tokens]
current_key = "e2e"

[[tokens.keys]]
id = "e2e"
secret = "$(head -c 32 /dev/urandom | base64)"

[login]
provider = "upstream"
upstream_provider = "corp"

[upstream.providers.corp]
kind = "oidc"
display_name = "Corp SSO"
issuer = "$CORP"
client_id = "mcpauth"
client_secret = "mcpauth-secret"
scopes = ["openid", "profile", "email", "offline_access"]

[upstream.providers.crm]
kind = "oauth2"
display_name = "Acme CRM"
issuer = "$CRM"
authorization_endpoint = "$CRM/auth"
token_endpoint = "$CRM/token"
userinfo_endpoint = "$CRM/me"
client_id = "mcpauth"
client_secret = "mcpauth-secret"
scopes = ["openid", "servicenow", "offline_access"]
subject_claim = "result.sys_id"
username_claim = "result.user_name"

[vault]
addr = "http://127.0.0.1:$P_VAULT"
credential = "$CRED_AUTH"

[[resources]]
uri = "$MCP_URL"
scopes = ["mcp:tools.read", "mcp:tools.write"]
default_scopes = ["mcp:tools.read"]

# The device of tests/e2e/device-flow.mjs (RFC 8628; a public client the operator configured).
[[clients]]
client_id = "e2e-device"
client_name = "E2E living-room TV"
grant_types = ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]
token_endpoint_auth_method = "none"
EOF

cat >"$TMP/token-vault.toml" <<EOF
[grpc]
addr = "127.0.0.1:$P_VAULT"

[[grpc.callers]]
name = "auth-service"
credential_sha256 = "$(sha "$CRED_AUTH")"
permissions = ["put"]

[[grpc.callers]]
name = "mcp-service"
credential_sha256 = "$(sha "$CRED_MCP")"
permissions = ["get"]

[database]
url = "$URL_VAULT"
max_connections = 8

[redis]
key_prefix = "$PREFIX-vault"
auth_key_prefix = "$PREFIX"

[log]
format = "json"

[introspection]
addr = "http://127.0.0.1:$P_GRPC"
credential = "$CRED_VAULT"
accepted_resources = ["$MCP_URL"]

[encryption]
current_key = "e2e"

[[encryption.keys]]
id = "e2e"
secret = "$VAULT_KEY"

[providers.corp]
token_endpoint = "$CORP/token"
revocation_endpoint = "$CORP/token/revocation"
client_id = "mcpauth"
client_secret = "mcpauth-secret"

[providers.crm]
token_endpoint = "$CRM/token"
revocation_endpoint = "$CRM/token/revocation"
client_id = "mcpauth"
client_secret = "mcpauth-secret"
EOF

cat >"$TMP/mcp-service.toml" <<EOF
resource = "$MCP_URL"
authorization_servers = ["$ISSUER"]

[http]
addr = "127.0.0.1:$P_MCP"
allowed_origins = ["http://127.0.0.1:$P_MCP"]

[log]
format = "json"

[verifier.grpc]
addr = "http://127.0.0.1:$P_GRPC"
credential = "$CRED_MCP"

[redis]
auth_key_prefix = "$PREFIX"
key_prefix = "$PREFIX-mcp"

[vault]
addr = "http://127.0.0.1:$P_VAULT"
credential = "$CRED_MCP"
key_prefix = "$PREFIX-vault"

[providers.corp]
display_name = "Corp SSO"
description = "your profile and items in the Corp API"

[providers.crm]
display_name = "Acme CRM"
description = "customer records in Acme CRM"

[[connectors]]
name = "corp_profile"
description = "Your profile in the Corp API."
provider = "corp"
method = "GET"
url = "$API1/api/profile"

[[connectors]]
name = "corp_create_item"
description = "Create an item in the Corp API."
provider = "corp"
method = "POST"
url = "$API1/api/items"
body = ["title"]
scopes = ["mcp:tools.write"]
input_schema = '{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}'

[[connectors]]
name = "crm_record"
description = "A customer record in Acme CRM."
provider = "crm"
method = "GET"
url = "$API2/api/items/{id}"
query = ["q"]
input_schema = '{"type":"object","properties":{"id":{"type":"string"},"q":{"type":"string"}},"required":["id"]}'
EOF

env "${clean_env[@]}" "$AUTH_BIN" --config "$TMP/auth-service.toml" migrate >>"$TMP/auth-service.log" 2>&1
env "${clean_env[@]}" "$AUTH_BIN" --config "$TMP/auth-service.toml" serve >>"$TMP/auth-service.log" 2>&1 &
pids+=($!); wait_http auth-service "$ISSUER/readyz" "${pids[-1]}" "$TMP/auth-service.log"
env "${clean_env[@]}" "$VAULT_BIN" --config "$TMP/token-vault.toml" migrate >>"$TMP/token-vault.log" 2>&1
env "${clean_env[@]}" "$VAULT_BIN" --config "$TMP/token-vault.toml" serve >>"$TMP/token-vault.log" 2>&1 &
pids+=($!); wait_port token-vault "$P_VAULT" "${pids[-1]}" "$TMP/token-vault.log"
env "${clean_env[@]}" "$MCP_BIN" --config "$TMP/mcp-service.toml" >>"$TMP/mcp-service.log" 2>&1 &
pids+=($!); wait_http mcp-service "http://127.0.0.1:$P_MCP/readyz" "${pids[-1]}" "$TMP/mcp-service.log"
say "auth-service $ISSUER, token-vault 127.0.0.1:$P_VAULT, mcp-service $MCP_URL"

failed=()
if ! env ISSUER="$ISSUER" MCP_URL="$MCP_URL" CORP="$CORP" CRM="$CRM" API1="$API1" API2="$API2" \
  SECRETS_FILE="$TMP/secrets.tsv" node tests/e2e/as-the-user.mjs; then
  failed+=(as-the-user)
fi
say "--- device flow (RFC 8628, oauth4webapi as the device)"
if ! env ISSUER="$ISSUER" MCP_URL="$MCP_URL" CORP="$CORP" DEVICE_CLIENT="e2e-device" \
  SECRETS_FILE="$TMP/secrets.tsv" node tests/e2e/device-flow.mjs; then
  failed+=(device-flow)
fi
# The scan runs whatever the driver's outcome, over what it saw (MCP tokens) and what the upstream
# providers issued (their access and refresh tokens).
for idp in "$CORP" "$CRM"; do
  curl -fsS "$idp/test/issued" | python3 -c 'import json, sys
for t in json.load(sys.stdin): print(t["label"] + "\t" + t["value"])' >>"$TMP/secrets.tsv" || failed+=(issued-tokens)
done
say "--- plaintext scan"
if ! python3 scripts/scan-plaintext.py --secrets "$TMP/secrets.tsv" --db "$URL_AUTH" --db "$URL_VAULT" \
  --redis-pattern "$PREFIX*"; then
  failed+=(plaintext-scan)
fi
# No log line may carry a token either.
if python3 - "$TMP/secrets.tsv" "$TMP"/*.log <<'PY'
import sys
secrets = [l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1]) if "\t" in l]
bad = 0
for path in sys.argv[2:]:
    if "/upstream-" in path or "/api-" in path:
        continue  # the upstream fixtures are not ours
    text = open(path, errors="replace").read()
    for label, value in secrets:
        if value and value in text:
            print(f"e2e-as-user: FOUND {label} in {path.rsplit('/', 1)[-1]}")
            bad += 1
sys.exit(1 if bad else 0)
PY
then say "no token in the services' logs"; else failed+=(log-scan); fi

if [ ${#failed[@]} -eq 0 ]; then
  status=0; say "all passed"
else
  say "FAILED: ${failed[*]}"
  for s in auth-service token-vault mcp-service; do say "$s log tail:"; tail -n 20 "$TMP/$s.log" >&2; done
fi
exit $status
