#!/usr/bin/env bash
# Loopback benchmarks of auth-service, token-vault and mcp-service (release builds), bounded in
# requests and time. Starts its own auth-service on free ports with a fresh database and Redis
# prefix, measures a no-op endpoint of the same server in the same run as the ceiling, prints
# throughput and p50/p99, and writes the JSON lines to target/bench/auth-service.jsonl (auth-service
# and token-vault) and target/bench/mcp-service.jsonl (mcp-service, its TypeScript SDK peer and the
# connector path). Results are recorded in docs/benchmarks.md.
#
#   BENCH_SECS=10 BENCH_CONCURRENCY=64 scripts/bench.sh
#   BENCH_SKIP_AUTH=1 BENCH_SECS=3 scripts/bench.sh   # only token-vault and mcp-service
#   BENCH_ONLY=device-poll BENCH_SECS=5 scripts/bench.sh  # only RFC 8628 polling under load
#   BENCH_ONLY=jwt BENCH_SECS=5 scripts/bench.sh      # only JWT access tokens: issuance over HTTP, sign/verify in-process
#   BENCH_ONLY=token_exchange scripts/bench.sh         # only RFC 8693 token exchange
#
# mcp-service (protocol 2025-11-25 with sessions, which both it and the TypeScript SDK 1.32 peer
# speak; one session per connection): tools/call whoami with a warm verification cache, the same
# call on examples/bench_noauth (the same rmcp service without authentication: the difference is
# what authentication costs), with every call introspected at auth-service
# (verifier.grpc.cache_ttl_ms = 0), and on tools/bench/ts-peer.mjs (the SDK's Streamable HTTP
# server behind its requireBearerAuth). Then a connector tool against `mcpauth-loadgen
# serve-upstream` beside the same upstream called directly (the difference is what the connector
# path costs: token verification, token-vault GetAccessToken, the upstream call by mcp-service).
# The throughput runs keep BENCH_CONCURRENCY requests in flight, BENCH_MCP_PIPELINE (default 4)
# per MCP connection. The differences (authentication, connector) are measured in pairs at a load
# that does not saturate the two cores, where queueing does not drown them: BENCH_LATENCY_CONCURRENCY
# (default 4) connections with one request in flight each.
#
# auth-service also gets /token at 32 keep-alive connections without pipelining (the tail most
# clients see), and every hot path (client_credentials, mcp-service tools/call) a memory series:
# BENCH_RSS_MILLIONS (default 2) runs of one million requests while nothing scrapes /metrics,
# with the RSS after each (target: flat after warm-up).
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
cargo build -q --release -p auth-service --example jwt_bench
AUTH="$ROOT/target/release/auth-service"
LOADGEN="$ROOT/target/release/mcpauth-loadgen"

PGADMIN="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="mcpauth_bench_$$"; DBURL="${PGADMIN%/*}/$DB"; PREFIX="mcpauth-bench-$$"
# The servers reach the loopback Postgres without TLS (sqlx's default, `prefer`, negotiates TLS
# with this server, which protects nothing on loopback and costs refresh rotation about a fifth
# of its throughput: 1,790 vs 2,180/s measured side by side). BENCH_PG_SSLMODE=prefer measures it.
SVC_DBURL="$DBURL?sslmode=${BENCH_PG_SSLMODE:-disable}"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HTTP_PORT="$(free_port)"; GRPC_PORT="$(free_port)"
BASE="http://127.0.0.1:$HTTP_PORT"
RESOURCE="http://127.0.0.1:8081/mcp"
# A resource whose access tokens are RFC 9068 JWTs (dev mode: an ephemeral ES256 key).
JWT_RESOURCE="https://jwt.bench.example/mcp"
CRED="bench-service-credential"
IAT="bench-initial-access-token"
EXCHANGE_TARGET="https://downstream.bench.example/api"
EXCHANGER_SECRET="bench-exchanger-secret-0123456789abcdef"
LOG="$OUT/auth-service.log"
pid=""
extra_pids=()
cleanup() {
  for p in "${extra_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
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
url = "$SVC_DBURL"
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
permissions = ["introspect"]
[registration]
# The bench backend registers for client_credentials with this initial access token (RFC 7591 §3).
initial_access_tokens_sha256 = ["$(printf '%s' "$IAT" | "$AUTH" hash-secret)"]
[tokens]
current_key = "k1"
[[tokens.keys]]
id = "k1"
secret = "$("$AUTH" generate-key)"
# Limits stay on (their Redis round trip is part of what is measured) but high enough not to trip.
[rate_limit]
register = 1000000
token = 100000000
token_per_client = 100000000
authorize = 100000000
login = 100000000
# token_exchange: the bench exchanger trades the backend's token for one at a downstream API.
[[resources]]
uri = "$RESOURCE"
scopes = ["mcp:tools.read", "mcp:tools.write"]
default_scopes = ["mcp:tools.read"]
[[resources]]
uri = "$JWT_RESOURCE"
scopes = ["mcp:tools.read"]
default_scopes = ["mcp:tools.read"]
token_format = "jwt"
[[resources]]
uri = "$EXCHANGE_TARGET"
scopes = ["down:read"]
[[token_exchange.policies]]
clients = ["bench-exchanger"]
from = ["$RESOURCE"]
to = "$EXCHANGE_TARGET"
scopes = { "mcp:tools.read" = ["down:read"] }
[[clients]]
client_id = "bench-exchanger"
client_secret_sha256 = "$(printf '%s' "$EXCHANGER_SECRET" | "$AUTH" hash-secret)"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
token_endpoint_auth_method = "client_secret_basic"
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
# A confidential client for client_credentials and introspection (of its own token: a client
# may introspect what was issued to it). Machine clients need an initial access token.
reg=$(curl -fsS -X POST "$BASE/register" -H 'content-type: application/json' -H "authorization: Bearer $IAT" \
  -d '{"client_name":"bench backend","grant_types":["client_credentials"],"response_types":[],"token_endpoint_auth_method":"client_secret_basic"}')
CID=$(echo "$reg" | json '["client_id"]'); CSECRET=$(echo "$reg" | json '["client_secret"]')
BASIC=$(printf '%s:%s' "$CID" "$CSECRET" | base64 -w0)
TOKEN=$(curl -fsS -X POST "$BASE/token" -H "authorization: Basic $BASIC" \
  -d "grant_type=client_credentials&resource=$RESOURCE" | json '["access_token"]')

# Memory while nothing scrapes /metrics (issue 12, 15b): BENCH_RSS_MILLIONS (default 2) runs of
# one million requests each on a server nobody scrapes during the series, the RSS after each.
# Target: flat after warm-up (the runs before the series are the warm-up).
RSS_MILLIONS="${BENCH_RSS_MILLIONS:-2}"
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
rss_series() { # results file, name, server pid, loadgen args...
  local results=$1 name=$2 spid=$3 i before after start; shift 3
  start=$(rss_kib "$spid"); before=$start
  say "$name without a scrape: RSS $((start / 1024)) MiB before $RSS_MILLIONS x 1M requests"
  for i in $(seq 1 "$RSS_MILLIONS"); do
    "$LOADGEN" "$@" --name "${name}_rss_run$i" --duration 600 --requests 1000000 --concurrency "$CONC" \
      --threads "$THREADS" --server-pid "$spid" | grep '^{' >>"$results"
    after=$(rss_kib "$spid")
    say "$name without a scrape: RSS after ${i}M requests $((after / 1024)) MiB ($(( (after - before) )) KiB over the last million)"
    echo "{\"name\":\"${name}_rss_no_scrape\",\"millions\":$i,\"rss_kib\":$after,\"growth_kib_last_million\":$((after - before)),\"growth_kib_total\":$((after - start))}" >>"$results"
    before=$after
  done
}
run() { # name, loadgen args... (BENCH_C overrides the concurrency)
  local name=$1; shift
  "$LOADGEN" "$@" --name "$name" --duration "$SECS" --requests "$MAXREQ" --concurrency "${BENCH_C:-$CONC}" \
    --threads "$THREADS" --server-pid "$pid" | tee /dev/stderr | grep '^{' >>"$RESULTS"
}
# RFC 8628 polling under load: one public device client polls one pending device code as fast as
# the generator can. After the first poll every answer is slow_down (each one adds 5 s to that
# code's interval in Redis), which is the worst a misbehaving device does. A poll must cost no
# Postgres round trip: the case counts the transactions Postgres committed in the bench database
# during the run (the replica's background work — revocation re-sync each second, the audit
# writer — is all there is) and records them beside the number of polls.
device_poll() {
  local dreg dcid dcode before after polls
  dreg=$(curl -fsS -X POST "$BASE/register" -H 'content-type: application/json' -H "authorization: Bearer $IAT" \
    -d '{"client_name":"bench device","grant_types":["urn:ietf:params:oauth:grant-type:device_code"],"response_types":[],"token_endpoint_auth_method":"none"}')
  dcid=$(echo "$dreg" | json '["client_id"]')
  dcode=$(curl -fsS -X POST "$BASE/device_authorization" -d "client_id=$dcid" | json '["device_code"]')
  local form="grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=$dcid&device_code=$dcode"
  curl -sS -X POST "$BASE/token" -d "$form" | grep -q authorization_pending
  before=$(psql "$DBURL" -Atqc "select xact_commit + xact_rollback from pg_stat_database where datname = '$DB'")
  run "device_poll$HTTP_SUFFIX" http "${HTTP_OPTS[@]}" --url "$BASE/token" --form "$form" \
    --expect-status 400 --expect-body '"slow_down"'
  # pg_stat_database is updated when a backend reports (at most every second): let it settle.
  sleep 2
  after=$(psql "$DBURL" -Atqc "select xact_commit + xact_rollback from pg_stat_database where datname = '$DB'")
  polls=$(tail -n 1 "$RESULTS" | json '["requests"]')
  say "device_poll: $polls polls, $((after - before)) Postgres transactions in the bench database meanwhile (background work only)"
  echo "{\"name\":\"device_poll_postgres\",\"polls\":$polls,\"postgres_transactions\":$((after - before))}" >>"$RESULTS"
}
# BENCH_ONLY=device-poll: only that case (with the auth-service set-up it needs), then stop.
if [ "${BENCH_ONLY:-}" = device-poll ]; then device_poll; say "results: $RESULTS"; exit 0; fi
# JWT access tokens (issue 13): client_credentials for the JWT resource over HTTP, and signing and
# local verification in-process (examples/jwt_bench.rs). BENCH_ONLY=jwt runs only these.
jwt_cases() {
  run "client_credentials_jwt$HTTP_SUFFIX" http "${HTTP_OPTS[@]}" --url "$BASE/token" -H "authorization: Basic $BASIC" \
    --form "grant_type=client_credentials&resource=$(python3 -c "import urllib.parse;print(urllib.parse.quote('$JWT_RESOURCE',safe=''))")" \
    --expect-status 200 ${EXPECT_TOKEN[@]+"${EXPECT_TOKEN[@]}"}
  "$ROOT/target/release/examples/jwt_bench" "$SECS" | tee /dev/stderr | grep '^{' >>"$RESULTS"
}
EXPECT_TOKEN=(); [ "$CLIENT" = lean ] && EXPECT_TOKEN=(--expect-body '"access_token":')
if [ "${BENCH_ONLY:-}" = jwt ]; then
  jwt_cases
  exit 0
fi
urlenc() { python3 -c "import urllib.parse,sys;print(urllib.parse.quote(sys.argv[1],safe=''))" "$1"; }
# RFC 8693 token exchange (issue 13): opens the subject token, checks the deny list, seals a new
# one; no Postgres or Redis on the request path (target ≥ 10,000/s). BENCH_ONLY=token_exchange
# runs this scenario alone and stops.
if { [ -z "${BENCH_ONLY:-}" ] && [ "${BENCH_SKIP_AUTH:-0}" != 1 ]; } || [ "${BENCH_ONLY:-}" = token_exchange ]; then
  EX_BASIC=$(printf '%s:%s' bench-exchanger "$EXCHANGER_SECRET" | base64 -w0)
  EX_TOKEN=(); [ "$CLIENT" = lean ] && EX_TOKEN=(--expect-body '"issued_token_type":')
  run "token_exchange$HTTP_SUFFIX" http "${HTTP_OPTS[@]}" --url "$BASE/token" -H "authorization: Basic $EX_BASIC" \
    --form "grant_type=$(urlenc urn:ietf:params:oauth:grant-type:token-exchange)&subject_token=$TOKEN&subject_token_type=$(urlenc urn:ietf:params:oauth:token-type:access_token)&resource=$(urlenc "$EXCHANGE_TARGET")" \
    --expect-status 200 "${EX_TOKEN[@]}"
fi
if [ -n "${BENCH_ONLY:-}" ]; then
  say "BENCH_ONLY=$BENCH_ONLY: done; results in $RESULTS"
  exit 0
fi
if [ "${BENCH_SKIP_AUTH:-0}" != 1 ]; then
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
jwt_cases
# The write-heavy scenarios each start from a settled database: the audit trail of the scenario
# before has been written (its writer drains the backlog after the load stops; how long that took
# is printed and recorded), and the autovacuum that load would trigger is done before, not
# during, the next measurement. (No CHECKPOINT: right after one, every page a scenario touches
# first costs a full-page image in the WAL, which would penalise the scenario that follows.)
quiesce() { # name of the scenario that just ran
  local started now n last=-1 stable=0
  started=$(date +%s.%N)
  for _ in $(seq 1 240); do
    n=$(psql "$DBURL" -Atqc "select count(*) from audit_events")
    if [ "$n" = "$last" ]; then stable=$((stable + 1)); [ "$stable" -ge 2 ] && break; else stable=0; fi
    last=$n; sleep 0.25
  done
  now=$(date +%s.%N)
  psql "$DBURL" -qc "VACUUM ANALYZE" >/dev/null
  # And the kernel's write-back of what that load dirtied, which would otherwise slow the next
  # scenario's WAL flushes for the following half minute.
  sync
  local drain; drain=$(python3 -c "print(round($now - $started - 0.5, 2))")
  say "after $1: audit trail complete ($n events) within ${drain}s of the load ending; vacuumed"
  echo "{\"name\":\"${1}_audit_drain\",\"audit_events\":$n,\"drain_s\":$drain}" >>"$RESULTS"
}
quiesce "client_credentials$HTTP_SUFFIX"
device_poll
# Tail latency the way most clients see it: 32 keep-alive connections, one request in flight on
# each (no pipelining), as wrk measures it.
BENCH_C=32 run client_credentials_keepalive_c32 http --client lean --pipeline 1 --url "$BASE/token" \
  -H "authorization: Basic $BASIC" \
  --form "grant_type=client_credentials&resource=$(python3 -c "import urllib.parse;print(urllib.parse.quote('$RESOURCE',safe=''))")" \
  --expect-status 200 "${EXPECT_TOKEN[@]}"
quiesce client_credentials_keepalive_c32
BENCH_C=$FLOW_CONC run refresh_rotation refresh-chain --issuer "$BASE" --resource "$RESOURCE"
quiesce refresh_rotation
BENCH_C=$FLOW_CONC run authorize_token_flow code-flow --issuer "$BASE" --resource "$RESOURCE"
RSS_AFTER_KB=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "{\"name\":\"rss_after_load\",\"rss_kib\":$RSS_AFTER_KB}" >>"$RESULTS"
AUDIT_ROWS=$(psql "$DBURL" -Atqc "select count(*) from audit_events")
say "RSS after load: $((RSS_AFTER_KB / 1024)) MiB; audit events written: $AUDIT_ROWS"
quiesce authorize_token_flow
rss_series "$RESULTS" client_credentials "$pid" http "${HTTP_OPTS[@]}" --url "$BASE/token" \
  -H "authorization: Basic $BASIC" \
  --form "grant_type=client_credentials&resource=$(python3 -c "import urllib.parse;print(urllib.parse.quote('$RESOURCE',safe=''))")" \
  --expect-status 200 "${EXPECT_TOKEN[@]}"
fi
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
url = "$SVC_DBURL"
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
extra_pids+=("$vpid")
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$VAULT_PORT) 2>/dev/null && break; sleep 0.1; done
# The seeded upstream token is also the one the connector benchmark's upstream API accepts.
UP_TOKEN="bench-upstream-$(head -c 24 /dev/urandom | base64 | tr -d '+/=')"
MCPAUTH_LOADGEN_UPSTREAM_TOKEN="$UP_TOKEN" \
"$LOADGEN" grpc-vault-get "${GRPC_OPTS[@]}" --addr "http://127.0.0.1:$VAULT_PORT" --credential "$CRED" \
  --token "$TOKEN" --provider bench --seed-user "$CID" --name grpc_vault_get --duration "$SECS" \
  --requests "$MAXREQ" --concurrency "$CONC" --threads "$THREADS" --server-pid "$vpid" \
  | tee /dev/stderr | grep '^{' >>"$RESULTS" || say "grpc_vault_get failed (see $OUT/token-vault.log)"
# The same with fewer calls in flight: the latency at a load that does not saturate the cores.
VLAT="${BENCH_VAULT_LATENCY_CONCURRENCY:-16}"
"$LOADGEN" grpc-vault-get "${GRPC_OPTS[@]}" --addr "http://127.0.0.1:$VAULT_PORT" --credential "$CRED" \
  --token "$TOKEN" --provider bench --name "grpc_vault_get_c$VLAT" --duration "$SECS" \
  --requests "$MAXREQ" --concurrency "$VLAT" --threads "$THREADS" --server-pid "$vpid" \
  | tee /dev/stderr | grep '^{' >>"$RESULTS" || say "grpc_vault_get_c$VLAT failed (see $OUT/token-vault.log)"
say "results: $RESULTS"

# --- mcp-service ------------------------------------------------------------------------------
MRESULTS="$OUT/mcp-service.jsonl"; : >"$MRESULTS"
say "building release binaries (mcp-service and its bench_noauth example)"
cargo build -q --release -p mcp-service --bin mcp-service --example bench_noauth
MCP="$ROOT/target/release/mcp-service"; NOAUTH="$ROOT/target/release/examples/bench_noauth"
MCP_PORT="$(free_port)"; COLD_PORT="$(free_port)"; NOAUTH_PORT="$(free_port)"
PEER_PORT="$(free_port)"; UP_PORT="$(free_port)"
MCP_PIPE="${BENCH_MCP_PIPELINE:-4}"; LAT_CONC="${BENCH_LATENCY_CONCURRENCY:-4}"
MCP_SUFFIX=""; [ "$MCP_PIPE" -gt 1 ] && MCP_SUFFIX="_pipelined$MCP_PIPE"
LAT_SUFFIX="_c$LAT_CONC"
# Background helpers are bounded too: they exit on their own after this long.
HELPER_SECS=$(( 20 * SECS + 600 ))
MCFG="$OUT/bench-mcp.toml"
# `resource` is the identifier auth-service issues tokens for (its default [[resources]]); the
# servers listen on free ports (a loopback resource accepts any loopback Host and port).
cat >"$MCFG" <<TOML
resource = "$RESOURCE"
authorization_servers = ["$BASE"]
[http]
addr = "127.0.0.1:$MCP_PORT"
allowed_origins = []
[log]
filter = "warn"
[verifier.grpc]
addr = "http://127.0.0.1:$GRPC_PORT"
credential = "$CRED"
[redis]
auth_key_prefix = "$PREFIX"
key_prefix = "$PREFIX-mcp"
[vault]
addr = "http://127.0.0.1:$VAULT_PORT"
credential = "$CRED"
key_prefix = "$PREFIX-vault"
[providers.bench]
display_name = "Bench API"
description = "the benchmark's upstream API"
[[connectors]]
name = "bench_item"
description = "Reads an item from the benchmark's upstream API."
provider = "bench"
url = "http://127.0.0.1:$UP_PORT/api/item"
TOML
wait_ready() { # name, url, pid, log
  for _ in $(seq 1 150); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$4" >&2; say "$1 did not become ready"; exit 1
}
wait_line() { # name, file, pid
  for _ in $(seq 1 150); do
    grep -q '^ready ' "$2" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$2" >&2; say "$1 did not start"; exit 1
}
"$MCP" --config "$MCFG" >>"$OUT/mcp-service.log" 2>&1 &
mpid=$!; extra_pids+=("$mpid")
# The same configuration, every call introspected: cache_ttl_ms = 0 stores nothing (verify/cache.rs).
MCPAUTH_MCP__HTTP__ADDR="127.0.0.1:$COLD_PORT" MCPAUTH_MCP__VERIFIER__GRPC__CACHE_TTL_MS=0 \
  "$MCP" --config "$MCFG" >>"$OUT/mcp-service-cold.log" 2>&1 &
cpid=$!; extra_pids+=("$cpid")
"$NOAUTH" --config "$MCFG" --addr "127.0.0.1:$NOAUTH_PORT" >>"$OUT/bench-noauth.log" 2>&1 &
npid=$!; extra_pids+=("$npid")
MCPAUTH_LOADGEN_UPSTREAM_TOKEN="$UP_TOKEN" "$LOADGEN" serve-upstream --addr "127.0.0.1:$UP_PORT" \
  --max-secs "$HELPER_SECS" >"$OUT/upstream.log" 2>&1 &
upid=$!; extra_pids+=("$upid")
wait_ready mcp-service "http://127.0.0.1:$MCP_PORT/readyz" "$mpid" "$OUT/mcp-service.log"
wait_ready "mcp-service (cold cache)" "http://127.0.0.1:$COLD_PORT/readyz" "$cpid" "$OUT/mcp-service-cold.log"
wait_ready bench_noauth "http://127.0.0.1:$NOAUTH_PORT/healthz" "$npid" "$OUT/bench-noauth.log"
wait_line serve-upstream "$OUT/upstream.log" "$upid"
# The TypeScript SDK peer (Node 22 and the SDK from scripts/install-tools.sh).
NODE="$ROOT/.tools/bin/node"; [ -x "$NODE" ] || NODE="$(command -v node || true)"
ppid_=""
if [ -n "$NODE" ] && [ -d "$ROOT/tests/e2e/node_modules/@modelcontextprotocol/sdk" ]; then
  PEER_TOKEN_FILE="$OUT/ts-peer.token"; PEER_TOKEN="bench-peer-$(head -c 24 /dev/urandom | base64 | tr -d '+/=')"
  ( umask 077; printf '%s' "$PEER_TOKEN" >"$PEER_TOKEN_FILE" )
  "$NODE" tools/bench/ts-peer.mjs "$PEER_PORT" "$PEER_TOKEN_FILE" "$HELPER_SECS" >"$OUT/ts-peer.log" 2>&1 &
  ppid_=$!; extra_pids+=("$ppid_")
  wait_line ts-peer "$OUT/ts-peer.log" "$ppid_"
  say "TypeScript SDK peer: node $("$NODE" --version), @modelcontextprotocol/sdk $("$NODE" -p 'require("./tests/e2e/node_modules/@modelcontextprotocol/sdk/package.json").version')"
else
  say "TypeScript SDK peer skipped: run scripts/install-tools.sh (Node 22 and tests/e2e/node_modules)"
fi

mrun() { # name, server pid, loadgen args... (BENCH_C overrides the concurrency)
  local name=$1 spid=$2; shift 2
  "$LOADGEN" "$@" --name "$name" --duration "$SECS" --requests "$MAXREQ" --concurrency "${BENCH_C:-$CONC}" \
    --threads "$THREADS" --server-pid "$spid" | tee /dev/stderr | grep '^{' >>"$MRESULTS"
}
metrics() { curl -fsS "$1/metrics" 2>/dev/null || true; }
# From two /metrics snapshots: the auth-step histogram's quantile bucket and the cache misses.
metrics_delta() { # before-file after-file
  python3 - "$1" "$2" <<'PY'
import re, sys
def load(path):
    buckets, miss, hit = {}, 0.0, 0.0
    for line in open(path):
        m = re.match(r'mcpauth_mcp_auth_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m: buckets[m.group(1)] = float(m.group(2))
        m = re.match(r'mcpauth_mcp_token_cache_total\{result="(hit|miss)"\} (\S+)', line)
        if m:
            if m.group(1) == "miss": miss = float(m.group(2))
            else: hit = float(m.group(2))
    return buckets, miss, hit
(b0, m0, h0), (b1, m1, h1) = load(sys.argv[1]), load(sys.argv[2])
d = {le: b1[le] - b0.get(le, 0.0) for le in b1}
order = sorted(d, key=lambda le: float("inf") if le == "+Inf" else float(le))
total = d.get("+Inf", 0.0)
def q(p):
    for le in order:
        if total and d[le] >= p * total:
            return "+Inf" if le == "+Inf" else "%g" % (float(le) * 1000)
    return "n/a"
print('"auth_step_count":%d,"auth_step_p50_le_ms":"%s","auth_step_p99_le_ms":"%s","cache_hits":%d,"cache_misses":%d'
      % (total, q(0.5), q(0.99), h1 - h0, m1 - m0))
PY
}
with_metrics() { # name, base url, server pid, loadgen args...
  local name=$1 base=$2 spid=$3; shift 3
  metrics "$base" >"$OUT/metrics.before"
  mrun "$name" "$spid" "$@"
  metrics "$base" >"$OUT/metrics.after"
  local d; d=$(metrics_delta "$OUT/metrics.before" "$OUT/metrics.after")
  say "$name, mcp-service's own view: $d"
  echo "{\"name\":\"${name}_server_metrics\",$d}" >>"$MRESULTS"
}

say "mcp-service scenarios: ${SECS}s each, $CONC requests in flight over $(( CONC / MCP_PIPE )) connections (one MCP session each, $MCP_PIPE pipelined), protocol 2025-11-25"
MCP_OPTS=(mcp-call --tool whoami --pipeline "$MCP_PIPE" --expect-body 'subject')
MCPAUTH_LOADGEN_TOKEN="$TOKEN" with_metrics "mcp_whoami_warm$MCP_SUFFIX" "http://127.0.0.1:$MCP_PORT" "$mpid" \
  "${MCP_OPTS[@]}" --url "http://127.0.0.1:$MCP_PORT/mcp"
MCPAUTH_LOADGEN_TOKEN="unused-no-auth" mrun "mcp_whoami_noauth$MCP_SUFFIX" "$npid" \
  "${MCP_OPTS[@]}" --url "http://127.0.0.1:$NOAUTH_PORT/mcp"
MCPAUTH_LOADGEN_TOKEN="$TOKEN" with_metrics "mcp_whoami_cold$MCP_SUFFIX" "http://127.0.0.1:$COLD_PORT" "$cpid" \
  "${MCP_OPTS[@]}" --url "http://127.0.0.1:$COLD_PORT/mcp"
if [ -n "$ppid_" ]; then
  MCPAUTH_LOADGEN_TOKEN="$PEER_TOKEN" mrun "ts_sdk_peer_whoami$MCP_SUFFIX" "$ppid_" \
    "${MCP_OPTS[@]}" --url "http://127.0.0.1:$PEER_PORT/mcp"
fi
say "latency pairs: $LAT_CONC connections, one request in flight on each"
LAT_OPTS=(mcp-call --tool whoami --pipeline 1 --expect-body 'subject')
MCPAUTH_LOADGEN_TOKEN="$TOKEN" BENCH_C=$LAT_CONC mrun "mcp_whoami_warm$LAT_SUFFIX" "$mpid" \
  "${LAT_OPTS[@]}" --url "http://127.0.0.1:$MCP_PORT/mcp"
MCPAUTH_LOADGEN_TOKEN="unused-no-auth" BENCH_C=$LAT_CONC mrun "mcp_whoami_noauth$LAT_SUFFIX" "$npid" \
  "${LAT_OPTS[@]}" --url "http://127.0.0.1:$NOAUTH_PORT/mcp"
# A cold-cache call (one gRPC introspection each) at the same unsaturated load: its latency.
MCPAUTH_LOADGEN_TOKEN="$TOKEN" BENCH_C=$LAT_CONC with_metrics "mcp_whoami_cold$LAT_SUFFIX" "http://127.0.0.1:$COLD_PORT" "$cpid" \
  "${LAT_OPTS[@]}" --url "http://127.0.0.1:$COLD_PORT/mcp"
BENCH_C=$LAT_CONC mrun "upstream_direct$LAT_SUFFIX" "$upid" http --client lean --pipeline 1 \
  --url "http://127.0.0.1:$UP_PORT/api/item" -H "Authorization: Bearer $UP_TOKEN" --expect-status 200 \
  --expect-body '"ok":true'
MCPAUTH_LOADGEN_TOKEN="$TOKEN" BENCH_C=$LAT_CONC mrun "mcp_connector_call$LAT_SUFFIX" "$mpid" \
  mcp-call --tool bench_item --pipeline 1 --expect-body 'mcpauth-loadgen upstream' \
  --url "http://127.0.0.1:$MCP_PORT/mcp"
MCPAUTH_LOADGEN_TOKEN="$TOKEN" rss_series "$MRESULTS" mcp_whoami "$mpid" \
  "${MCP_OPTS[@]}" --url "http://127.0.0.1:$MCP_PORT/mcp"

# The differences the targets are about: authentication (warm cache) and the connector path.
python3 - "$MRESULTS" "$MCP_SUFFIX" "$LAT_SUFFIX" <<'PY' | tee /dev/stderr >>"$MRESULTS"
import json, sys
path, ms, ls = sys.argv[1:]
rows = {}
for line in open(path):
    r = json.loads(line)
    rows[r["name"]] = r
def diff(name, a, b, what):
    if a in rows and b in rows:
        x, y = rows[a], rows[b]
        print(json.dumps({"name": name, "of": a, "over": b, "what": what,
                          "p50_ms": round(x["p50_ms"] - y["p50_ms"], 3),
                          "p99_ms": round(x["p99_ms"] - y["p99_ms"], 3)}))
diff("mcp_auth_cost", "mcp_whoami_warm" + ls, "mcp_whoami_noauth" + ls,
     "authentication with a warm cache (target: p99 <= 0.5 ms)")
diff("mcp_auth_cost_at_load", "mcp_whoami_warm" + ms, "mcp_whoami_noauth" + ms,
     "authentication with a warm cache, throughput runs (queueing-dominated)")
diff("mcp_connector_overhead", "mcp_connector_call" + ls, "upstream_direct" + ls,
     "a connector tool call over the upstream API called directly (target: p99 <= 2 ms)")
PY
say "results: $MRESULTS"
# BENCH_HOLD=<seconds>: keep every server running afterwards, for a profiler (perf record -p …).
if [ "${BENCH_HOLD:-0}" -gt 0 ]; then
  ( umask 077; cat >"$OUT/hold.env" <<ENV
MCPAUTH_LOADGEN_TOKEN=$TOKEN
AUTH_PID=$pid AUTH_HTTP=$BASE AUTH_GRPC=http://127.0.0.1:$GRPC_PORT
VAULT_PID=$vpid VAULT=http://127.0.0.1:$VAULT_PORT
MCP_PID=$mpid MCP=http://127.0.0.1:$MCP_PORT/mcp
UPSTREAM=http://127.0.0.1:$UP_PORT/api/item
ENV
  )
  say "holding the servers for ${BENCH_HOLD}s (addresses and the benchmark token in $OUT/hold.env)"
  sleep "$BENCH_HOLD"
fi
