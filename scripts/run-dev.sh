#!/usr/bin/env bash
# `make run`: the local stack in dev mode, logs of both services in this terminal, Ctrl-C stops all.
#   auth-service  http://127.0.0.1:8080 (issuer), gRPC 127.0.0.1:9090
#   mcp-service   http://127.0.0.1:8081/mcp (protected resource, config/mcp-service.dev.toml)
# Each service reads its own environment prefix (MCPAUTH_AUTH__, MCPAUTH_VAULT__, MCPAUTH_MCP__),
# so one shell can configure all three: MCPAUTH_AUTH__RATE_LIMIT__TOKEN=100 make run.
#   token-vault   gRPC 127.0.0.1:9091 (config/token-vault.dev.toml: a public dev-only key)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
AUTH=target/debug/auth-service
MCP=target/debug/mcp-service
VAULT=target/debug/token-vault
pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$AUTH" --config config/dev.toml migrate
"$AUTH" --config config/dev.toml serve 2>&1 | sed -u 's/^/[auth] /' &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
"$VAULT" --config config/token-vault.dev.toml migrate
"$VAULT" --config config/token-vault.dev.toml serve 2>&1 | sed -u 's/^/[vault] /' &
pids+=($!)
"$MCP" --config config/mcp-service.dev.toml serve 2>&1 | sed -u 's/^/[mcp]  /' &
pids+=($!)
cat <<'TXT'
mcpauth dev stack:
  auth-service  http://127.0.0.1:8080   (dev login: user "dev", no password, consent automatic)
  gRPC          127.0.0.1:9090          (credential: dev-service-credential)
  token-vault   127.0.0.1:9091          (gRPC, same credential; dev-only encryption key)
  mcp-service   http://127.0.0.1:8081/mcp
Point an MCP client at http://127.0.0.1:8081/mcp. Ctrl-C stops everything.
TXT
wait -n "${pids[@]}" || true
