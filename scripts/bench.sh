#!/usr/bin/env bash
# Loopback benchmarks of auth-service (release build), bounded in requests and time. Starts its
# own auth-service on free ports with a fresh database and Redis prefix, measures a no-op endpoint
# of the same server in the same run as the ceiling, prints throughput and p50/p99, and writes the
# JSON lines to target/bench/auth-service.jsonl. Results are recorded in docs/benchmarks.md.
#
#   BENCH_SECS=10 BENCH_CONCURRENCY=64 scripts/bench.sh
#
# The generator shares the two cores with the server, so by default it uses its lean clients
# (tools/loadgen/README.md): HTTP/1.1 pipelined BENCH_PIPELINE deep over CONCURRENCY/PIPELINE
# connections, gRPC on h2 with CONCURRENCY/BENCH_GRPC_CONNECTIONS streams per connection, on
# BENCH_THREADS runtime threads. BENCH_CLIENT=classic selects the earlier clients (one connection
# per worker, tonic), BENCH_PIPELINE=1 plain keep-alive. Every result line carries the CPU the
# generator and the server spent per request.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf 'bench: %s\n' "$*"; }

SECS="${BENCH_SECS:-10}"
CONC="${BENCH_CONCURRENCY:-64}"
# Flows that write to Postgres saturate it with fewer workers; more only queue on row locks.
FLOW_CONC="${BENCH_FLOW_CONCURRENCY:-16}"
MAXREQ="${BENCH_MAX_REQUESTS:-2000000}"
CLIENT="${BENCH_CLIENT:-lean}"
PIPE="${BENCH_PIPELINE:-16}"
GRPC_CONNS="${BENCH_GRPC_CONNECTIONS:-2}"
THREADS="${BENCH_THREADS:-1}"
case "$CLIENT" in
  lean) HTTP_OPTS=(--client lean --pipeline "$PIPE"); GRPC_OPTS=(--client lean --connections "$GRPC_CONNS")
        HTTP_SUFFIX=""; [ "$PIPE" -gt 1 ] && HTTP_SUFFIX="_pipelined$PIPE" ;;
  classic) HTTP_OPTS=(--client classic); GRPC_OPTS=(--client classic); HTTP_SUFFIX="_classic" ;;
  *) echo "bench: BENCH_CLIENT must be lean or classic" >&2; exit 2 ;;
esac
OUT="$ROOT/target/bench"; mkdir -p "$OUT"
RESULTS="$OUT/auth-service.jsonl"; : >"$RESULTS"

say "building release binaries (auth-service, mcpauth-loadgen)"
cargo build -q --release -p auth-service -p mcpauth-loadgen
AUTH="$ROOT/target/release/auth-service"
LOADGEN="$ROOT/target/release/mcpauth-loadgen"

PGADMIN="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="mcpauth_bench_$$"; DBURL="${PGADMIN%/*}/$DB"; PREFIX="mcpauth-bench-$$"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HTTP_PORT="$(free_port)"; GRPC_PORT="$(free_port)"
BASE="http://127.0.0.1:$HTTP_PORT"
RESOURCE="http://127.0.0.1:8081/mcp"
CRED="bench-service-credential"
LOG="$OUT/auth-service.log"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  psql "$PGADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli --scan --pattern "$PREFIX:*" 2>/dev/null | xargs -r -n 500 redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql "$PGADMIN" -qc "CREATE DATABASE $DB" >/dev/null
CFG="$OUT/bench.toml"
cat >"$CFG" <<TOML
dev_mode = true
issuer = "$BASE"
[log]
format = "json"
filter = "warn"
[database]
url = "$DBURL"
max_connections = 32
[redis]
key_prefix = "$PREFIX"
[http]
addr = "127.0.0.1:$HTTP_PORT"
[grpc]
addr = "127.0.0.1:$GRPC_PORT"
[[grpc.callers]]
name = "bench"
credential_sha256 = "$(printf '%s' "$CRED" | "$AUTH" hash-secret)"
[tokens]
current_key = "k1"
[[tokens.keys]]
id = "k1"
secret = "$("$AUTH" generate-key)"
# Limits stay on (their Redis round trip is part of what is measured) but high enough not to trip.
[rate_limit]
register = 1000000
token = 100000000
authorize = 100000000
login = 100000000
TOML
"$AUTH" --config "$CFG" migrate >>"$LOG" 2>&1
"$AUTH" --config "$CFG" serve >>"$LOG" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
RSS_IDLE_KB=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
say "auth-service pid $pid, idle RSS $((RSS_IDLE_KB / 1024)) MiB ($RSS_IDLE_KB kB)"
echo "{\"name\":\"idle_rss\",\"rss_kib\":$RSS_IDLE_KB}" >>"$RESULTS"

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
# A confidential client for client_credentials and introspection.
reg=$(curl -fsS -X POST "$BASE/register" -H 'content-type: application/json' \
  -d '{"client_name":"bench backend","grant_types":["client_credentials"],"response_types":[],"token_endpoint_auth_method":"client_secret_basic"}')
CID=$(echo "$reg" | json '["client_id"]'); CSECRET=$(echo "$reg" | json '["client_secret"]')
BASIC=$(printf '%s:%s' "$CID" "$CSECRET" | base64 -w0)
TOKEN=$(curl -fsS -X POST "$BASE/token" -H "authorization: Basic $BASIC" \
  -d "grant_type=client_credentials&resource=$RESOURCE" | json '["access_token"]')

run() { # name, loadgen args... (BENCH_C overrides the concurrency)
  local name=$1; shift
  "$LOADGEN" "$@" --name "$name" --duration "$SECS" --requests "$MAXREQ" --concurrency "${BENCH_C:-$CONC}" \
    --threads "$THREADS" --server-pid "$pid" | tee /dev/stderr | grep '^{' >>"$RESULTS"
}
say "scenarios: ${SECS}s each (at most $MAXREQ requests), $CONC requests in flight ($FLOW_CONC for the write-heavy flows), $CLIENT clients (HTTP: ${HTTP_OPTS[*]}; gRPC: ${GRPC_OPTS[*]}), $THREADS generator thread(s), on $(nproc) cores shared with the server"
run "http_noop_healthz$HTTP_SUFFIX" http "${HTTP_OPTS[@]}" --url "$BASE/healthz" --expect-status 200
EXPECT_ACTIVE=(); [ "$CLIENT" = lean ] && EXPECT_ACTIVE=(--expect-body '"active":true')
run "http_introspect$HTTP_SUFFIX" http "${HTTP_OPTS[@]}" --url "$BASE/introspect" -H "authorization: Basic $BASIC" \
  --form "token=$TOKEN" --expect-status 200 "${EXPECT_ACTIVE[@]}"
run grpc_noop_health grpc-health "${GRPC_OPTS[@]}" --addr "http://127.0.0.1:$GRPC_PORT"
run grpc_introspect grpc-introspect "${GRPC_OPTS[@]}" --addr "http://127.0.0.1:$GRPC_PORT" --credential "$CRED" \
  --token "$TOKEN" --expected-resource "$RESOURCE"
EXPECT_TOKEN=(); [ "$CLIENT" = lean ] && EXPECT_TOKEN=(--expect-body '"access_token":')
run "client_credentials$HTTP_SUFFIX" http "${HTTP_OPTS[@]}" --url "$BASE/token" -H "authorization: Basic $BASIC" \
  --form "grant_type=client_credentials&resource=$(python3 -c "import urllib.parse;print(urllib.parse.quote('$RESOURCE',safe=''))")" \
  --expect-status 200 "${EXPECT_TOKEN[@]}"
BENCH_C=$FLOW_CONC run refresh_rotation refresh-chain --issuer "$BASE" --resource "$RESOURCE"
BENCH_C=$FLOW_CONC run authorize_token_flow code-flow --issuer "$BASE" --resource "$RESOURCE"
RSS_AFTER_KB=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "{\"name\":\"rss_after_load\",\"rss_kib\":$RSS_AFTER_KB}" >>"$RESULTS"
AUDIT_ROWS=$(psql "$DBURL" -Atqc "select count(*) from audit_events")
say "RSS after load: $((RSS_AFTER_KB / 1024)) MiB; audit events written: $AUDIT_ROWS"
# token-vault: GetAccessToken for a stored, valid upstream token (no refresh), introspecting the
# client_credentials token above at this auth-service (cached after the first call).
cargo build -q --release -p token-vault
VAULT="$ROOT/target/release/token-vault"; VAULT_PORT="$(free_port)"; VCFG="$OUT/bench-vault.toml"
cat >"$VCFG" <<TOML
[log]
filter = "warn"
[grpc]
addr = "127.0.0.1:$VAULT_PORT"
[[grpc.callers]]
name = "bench"
credential_sha256 = "$(printf '%s' "$CRED" | "$VAULT" hash-secret)"
permissions = ["put", "get"]
[database]
url = "$DBURL"
[redis]
key_prefix = "$PREFIX-vault"
auth_key_prefix = "$PREFIX"
[introspection]
addr = "http://127.0.0.1:$GRPC_PORT"
credential = "$CRED"
accepted_resources = ["$RESOURCE"]
[encryption]
current_key = "k1"
[[encryption.keys]]
id = "k1"
secret = "$("$VAULT" generate-key)"
[providers.bench]
token_endpoint = "http://127.0.0.1:9/token"
client_id = "bench"
token_endpoint_auth_method = "none"
TOML
"$VAULT" --config "$VCFG" migrate >>"$OUT/token-vault.log" 2>&1
"$VAULT" --config "$VCFG" serve >>"$OUT/token-vault.log" 2>&1 &
vpid=$!
trap 'kill -TERM "$vpid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$VAULT_PORT) 2>/dev/null && break; sleep 0.1; done
"$LOADGEN" grpc-vault-get "${GRPC_OPTS[@]}" --addr "http://127.0.0.1:$VAULT_PORT" --credential "$CRED" \
  --token "$TOKEN" --provider bench --seed-user "$CID" --name grpc_vault_get --duration "$SECS" \
  --requests "$MAXREQ" --concurrency "$CONC" --threads "$THREADS" --server-pid "$vpid" \
  | tee /dev/stderr | grep '^{' >>"$RESULTS" || say "grpc_vault_get failed (see $OUT/token-vault.log)"
kill -TERM "$vpid"; wait "$vpid" 2>/dev/null || true
say "results: $RESULTS"
