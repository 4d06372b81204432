#!/usr/bin/env node
// Runs the MCP conformance suite's server scenarios against a running mcp-service:
//
//   ISSUER=http://127.0.0.1:8080 MCP_URL=http://127.0.0.1:8081/mcp PROXY_PORT=8091 node tests/e2e/mcp-conformance.mjs
//
// `conformance server --url <url> --scenario <name>` (@modelcontextprotocol/conformance 0.2.0-alpha.12)
// sends no Authorization header, and mcp-service answers 401 before any dispatch. So this driver
//   1. gets a real access token for MCP_URL from auth-service through the dev login flow
//      (PRM → AS metadata → DCR of a public client → /authorize with PKCE S256 and resource,
//      redirects followed by hand → /token);
//   2. starts a bearer-injecting reverse proxy on 127.0.0.1:PROXY_PORT that forwards every request
//      to mcp-service unchanged (method, path, body, every header as the suite sent it, Host and
//      Origin included) plus `Authorization: Bearer <token>`, and streams the answer back (SSE too);
//   3. runs the suite once per protocol revision mcp-service advertises (REVISIONS: 2025-06-18,
//      2025-11-25, 2026-07-28), each run one process: `conformance server --suite all
//      --spec-version <rev>` (every server scenario that applies at that revision), and prints one
//      table scenario × revision → passed / failed / n/a (the suite does not run it there) /
//      n/a* (a capability mcp-service deliberately does not offer: NOT_OFFERED below) /
//      PENDING (applies, not yet supported: PENDING below, reported, never counted as passed).
//
// mcp-service must run with `conformance_tools = true` (dev mode only): the suite's tool scenarios
// call its reference tools by name (services/mcp-service/src/conformance.rs).
//
// Host and Origin reach mcp-service exactly as the suite sent them, so `dns-rebinding-protection`
// tests mcp-service's own checks: it sends Host/Origin `evil.example.com` (expects 4xx) and then
// Host `127.0.0.1:PROXY_PORT` + Origin `http://127.0.0.1:PROXY_PORT` (expects 2xx). mcp-service
// accepts any loopback Host with any port, but an Origin only if it is listed in its
// `http.allowed_origins`: that list must contain `http://127.0.0.1:<PROXY_PORT>` (scripts/e2e.sh
// writes such a config). Exit 1 on any FAILURE check, a failed setup, or a scenario without results
// or without a passed check.
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const ISSUER = process.env.ISSUER ?? 'http://127.0.0.1:8080';
const MCP_URL = process.env.MCP_URL ?? process.env.RESOURCE ?? 'http://127.0.0.1:8081/mcp';
// The protocol revisions mcp-service advertises (tools.rs `supported_protocol_versions`).
const REVISIONS = (process.env.REVISIONS ?? '2025-06-18,2025-11-25,2026-07-28')
  .split(',').map((s) => s.trim()).filter(Boolean);
// Empty: every server scenario the suite has; else only these (comma-separated).
const ONLY = (process.env.SCENARIOS ?? '').split(',').map((s) => s.trim()).filter(Boolean);

// Scenarios that test a capability mcp-service deliberately does not offer: listed in the table as
// "n/a" with this reason (and in tests/e2e/README.md), never run silently or counted.
const NOT_OFFERED = [
  [/^resources-/, 'no resources capability: mcp-service serves tools only'],
  [/^prompts-/, 'no prompts capability: mcp-service serves tools only'],
  [/^sep-2640-skills-/, 'skills extension (SEP-2640) not offered'],
  [/^tasks-/, 'tasks extension (SEP-2663) not offered'],
  [/^input-required-result-non-tool-request$/, 'exercises prompts/get: no prompts capability'],
  [/^completion-complete$/, 'no completions capability: completion/complete completes prompt and resource-template arguments, and mcp-service offers neither'],
];
// Single checks of a scenario that otherwise applies, for a capability mcp-service does not offer:
// reported as n/a* with the reason, not counted. `caching` asks prompts/list, resources/list and
// resources/templates/list for caching hints whatever the server declared; mcp-service answers
// them -32601, as server-stateless (SEP-2575) requires of a server without those capabilities.
const NOT_OFFERED_CHECKS = [
  ['caching', /^sep-2549-(prompts-list|resources-list|resources-templates-list|resources-read)-caching-hints$/,
    'no prompts or resources capability: those lists answer -32601 (SEP-2575)'],
];
function checkNotOffered(scenario, id) {
  return NOT_OFFERED_CHECKS.find(([s, re]) => s === scenario && re.test(id))?.[2];
}
function notOffered(scenario) {
  return NOT_OFFERED.find(([re]) => re.test(scenario))?.[1];
}
// Scenarios that apply but are not yet supported: shown as "PENDING" with the reason, not counted
// as passed; CONFORMANCE_STRICT=1 counts them as failures. Keep this list empty when you can.
const PENDING = JSON.parse(process.env.CONFORMANCE_PENDING_JSON ?? 'null') ?? [
  [/^server-sse-polling$/, 'SEP-1699 resumption (test_reconnection: server closes the SSE stream mid-call, client resumes with Last-Event-ID) is not offered yet: a tool cannot name its own rmcp stream, and resume has no cross-replica event store (tests/e2e/README.md, issue 15)'],
].map(([re, why]) => [re instanceof RegExp ? re : new RegExp(re), why]);
function pending(scenario) {
  return process.env.CONFORMANCE_STRICT === '1' ? undefined : PENDING.find(([re]) => re.test(scenario))?.[1];
}
const REDIRECT_URI = process.env.REDIRECT_URI ?? 'http://127.0.0.1:47615/callback';
const HTTP_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 10000);
const SCENARIO_TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS ?? 60000);
const CONFORMANCE_JS = join(HERE, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');

const mcpUrl = new URL(MCP_URL);
const log = (s) => console.log(`mcp-conformance: ${s}`);
let token; // never printed
const redact = (s) => (token ? String(s).split(token).join('<token>') : String(s));
function die(msg) {
  console.error(`mcp-conformance: ERROR: ${redact(msg)}`);
  console.log('mcp-conformance: 0 passed, 1 failed');
  process.exit(1);
}

/** Node >= 22 for the suite: NODE22, else .tools/bin/node, else this node if it is new enough. */
async function findNode22() {
  for (const bin of [process.env.NODE22, join(ROOT, '.tools/bin/node'), process.execPath].filter(Boolean)) {
    const v = await new Promise((res) => {
      const p = spawn(bin, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let o = '';
      p.stdout.on('data', (d) => (o += d));
      p.on('error', () => res(undefined));
      p.on('close', () => res(o.trim()));
    });
    if (v && Number(v.replace(/^v/, '').split('.')[0]) >= 22) return { bin, version: v };
  }
  return undefined;
}

function freePort() {
  return new Promise((res, rej) => {
    const srv = createNetServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function http(url, init = {}) {
  const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS), ...init });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { res, text, body };
}

function netError(e) {
  const code = e?.cause?.code ?? e?.code;
  if (code === 'ECONNREFUSED') return `connection refused (${e?.cause?.address ?? ''}:${e?.cause?.port ?? ''}; are auth-service at ${ISSUER} and mcp-service at ${MCP_URL} running?)`;
  if (e?.name === 'TimeoutError') return `no answer within ${HTTP_TIMEOUT_MS} ms`;
  return e?.message ?? String(e);
}

/** A real access token for MCP_URL, through the dev login flow (as an MCP client would get it). */
async function obtainToken() {
  const prmUrl = `${mcpUrl.origin}/.well-known/oauth-protected-resource${mcpUrl.pathname.replace(/\/$/, '')}`;
  const prm = await http(prmUrl);
  if (prm.res.status !== 200 || !prm.body) throw new Error(`GET ${prmUrl} answered ${prm.res.status}: ${prm.text.slice(0, 200)}`);
  if (prm.body.resource !== MCP_URL) throw new Error(`PRM resource ${prm.body.resource} is not MCP_URL ${MCP_URL}`);
  const issuer = prm.body.authorization_servers?.[0];
  if (issuer !== ISSUER) throw new Error(`PRM authorization_servers[0] ${issuer} is not ISSUER ${ISSUER}`);
  const wk = new URL(issuer);
  wk.pathname = `/.well-known/oauth-authorization-server${wk.pathname === '/' ? '' : wk.pathname}`;
  const md = await http(wk);
  if (md.res.status !== 200 || !md.body) throw new Error(`GET ${wk.href} answered ${md.res.status}`);
  const as = md.body;

  const reg = await http(as.registration_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      client_name: 'mcpauth e2e: conformance suite proxy',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  if (reg.res.status !== 201 || !reg.body?.client_id) throw new Error(`POST /register answered ${reg.res.status}: ${reg.text.slice(0, 300)}`);
  const clientId = reg.body.client_id;

  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const authz = new URL(as.authorization_endpoint);
  const scope = (prm.body.scopes_supported ?? []).join(' ');
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state,
    resource: MCP_URL,
    ...(scope ? { scope } : {}),
  })) authz.searchParams.set(k, v);
  let next = authz;
  let code;
  for (let hop = 1; hop <= 10 && !code; hop++) {
    const r = await fetch(next, { redirect: 'manual', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    const loc = r.headers.get('location');
    await r.arrayBuffer();
    if (!loc) throw new Error(`GET ${next.pathname} (hop ${hop}) answered ${r.status} without a redirect (is auth-service in dev login mode?)`);
    next = new URL(loc, next);
    if (next.href.startsWith(REDIRECT_URI)) {
      if (next.searchParams.get('error')) throw new Error(`authorization error=${next.searchParams.get('error')} ${next.searchParams.get('error_description') ?? ''}`);
      if (next.searchParams.get('state') !== state) throw new Error('state not returned unchanged');
      code = next.searchParams.get('code');
    }
  }
  if (!code) throw new Error('no code from /authorize');

  const tok = await http(as.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT_URI, client_id: clientId, resource: MCP_URL }),
  });
  if (tok.res.status !== 200 || !tok.body?.access_token) throw new Error(`POST /token answered ${tok.res.status}: ${tok.body?.error ?? tok.text.slice(0, 200)}`);
  return { accessToken: tok.body.access_token, clientId, scope: tok.body.scope, expiresIn: tok.body.expires_in };
}

/**
 * The bearer-injecting proxy: every request goes to mcp-service with the suite's headers untouched
 * (raw names and values, Host and Origin included) plus our Authorization; the answer streams back.
 */
function startProxy(port) {
  const counts = { requests: 0, byStatus: {} };
  const server = createServer((req, res) => {
    counts.requests++;
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i].toLowerCase() !== 'authorization') headers.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
    }
    headers.push('Authorization', `Bearer ${token}`);
    const up = httpRequest(
      { host: mcpUrl.hostname.replace(/^\[|\]$/g, ''), port: mcpUrl.port || 80, method: req.method, path: req.url, headers, setHost: false },
      (upRes) => {
        counts.byStatus[upRes.statusCode] = (counts.byStatus[upRes.statusCode] ?? 0) + 1;
        res.writeHead(upRes.statusCode, upRes.statusMessage, upRes.rawHeaders);
        res.flushHeaders();
        upRes.pipe(res);
      },
    );
    up.on('error', (e) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${e.message}`);
      } else {
        res.destroy();
      }
    });
    res.on('close', () => up.destroy()); // the suite hung up (e.g. an SSE stream): hang up upstream
    req.pipe(up);
  });
  return new Promise((ok, fail) => {
    server.on('error', fail);
    server.listen(port, '127.0.0.1', () => ok({ server, counts }));
  });
}

/** checks.json files under outDir, in run order. */
async function readChecks(outDir) {
  const results = [];
  let entries = [];
  try {
    entries = await readdir(outDir);
  } catch {
    return results;
  }
  for (const d of entries.sort()) {
    try {
      results.push({ dir: d, checks: JSON.parse(await readFile(join(outDir, d, 'checks.json'), 'utf8')) });
    } catch {
      // not a result folder
    }
  }
  return results;
}

/** `conformance list --server`: [{ name, versions: ['2025-06-18', …] or ['extension'] }]. */
async function listScenarios(node22) {
  const out = await new Promise((res, rej) => {
    const p = spawn(node22.bin, [CONFORMANCE_JS, 'list', '--server'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let o = '';
    p.stdout.on('data', (d) => (o += d));
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res(o) : rej(new Error(`conformance list --server exited with ${code}`))));
  });
  const scenarios = [];
  for (const line of out.replace(/\x1b\[[0-9;]*m/g, '').split('\n')) {
    const m = line.match(/^\s*-\s+([a-z0-9-]+)\s+\[([^\]]*)\]/);
    if (m) scenarios.push({ name: m[1], versions: m[2].split(',').map((v) => v.trim()) });
  }
  if (!scenarios.length) throw new Error('conformance list --server listed no scenarios');
  return scenarios;
}

/**
 * One suite process for one revision: `conformance server --suite all --spec-version <rev>` runs
 * every scenario applicable at that revision, one after another, and writes a checks.json per
 * scenario under outDir (`server-<scenario>-<timestamp>/`).
 */
function runRevision(node22, revision, url, outDir) {
  const args = [CONFORMANCE_JS, 'server', '--url', url, '--suite', 'all', '--spec-version', revision,
    '--output-dir', outDir, '--timeout', String(SCENARIO_TIMEOUT_MS)];
  log(`running: conformance ${args.slice(1).join(' ')}`);
  const child = spawn(node22.bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  // The suite colours its output whatever NO_COLOR says: strip the escapes.
  const plain = (l) => redact(l.replace(/\x1b\[[0-9;]*m/g, ''));
  const verbose = process.env.CONFORMANCE_VERBOSE === '1';
  createInterface({ input: child.stdout }).on('line', (l) => {
    const t = plain(l);
    if (verbose || /^=== Running scenario/.test(t)) console.log(`  | ${t}`);
  });
  createInterface({ input: child.stderr }).on('line', (l) => console.log(`  ! ${plain(l)}`));
  const limit = 40 * (SCENARIO_TIMEOUT_MS + 5000);
  const timer = setTimeout(() => {
    console.error(`mcp-conformance: ERROR: the ${revision} run did not finish within ${limit} ms; stopping it`);
    child.kill('SIGTERM');
  }, limit);
  return new Promise((res) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    res({ code, signal });
  }));
}

/** checks.json of each scenario under outDir: Map scenario → checks. */
async function readResults(outDir) {
  const results = new Map();
  for (const r of await readChecks(outDir)) {
    const m = r.dir.match(/^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/);
    if (m) results.set(m[1], r.checks);
  }
  return results;
}

// --- main ----------------------------------------------------------------------------------------
const node22 = await findNode22();
if (!node22) die('no Node >= 22 found: run scripts/install-tools.sh (or set NODE22=/path/to/node)');
try {
  await readFile(CONFORMANCE_JS);
} catch {
  die(`${CONFORMANCE_JS} missing: run scripts/install-tools.sh`);
}
const proxyPort = Number(process.env.PROXY_PORT ?? (await freePort()));
const proxyUrl = `http://127.0.0.1:${proxyPort}${mcpUrl.pathname}`;
log(`mcp-service ${MCP_URL}, authorization server ${ISSUER}, proxy ${proxyUrl}, suite run by Node ${node22.version}`);

// 1. A real token.
try {
  const t = await obtainToken();
  token = t.accessToken;
  log(`token for ${MCP_URL} obtained via the dev login flow (client ${t.clientId}, scope ${t.scope ?? '(default)'}, expires_in ${t.expiresIn})`);
} catch (e) {
  die(`could not get a token: ${netError(e)}`);
}

// 2. The proxy, and two sanity checks through it: the token is accepted, and the proxy's own
// origin passes mcp-service's Origin check (otherwise dns-rebinding-protection cannot pass).
let proxy;
try {
  proxy = await startProxy(proxyPort);
} catch (e) {
  die(`cannot listen on 127.0.0.1:${proxyPort}: ${e.message}`);
}
const problems = [];
try {
  const probe = (extra) => http(proxyUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...extra },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  const plain = await probe({});
  if (plain.res.status === 401 || plain.res.status === 403) {
    problems.push(`through the proxy mcp-service still answers ${plain.res.status} (${plain.res.headers.get('www-authenticate') ?? plain.text.slice(0, 200)}): the token is refused`);
  } else {
    log(`proxy check: a request with the injected token passes authentication (HTTP ${plain.res.status} for a sessionless ping)`);
  }
  const origin = `http://127.0.0.1:${proxyPort}`;
  const withOrigin = await probe({ origin });
  if (withOrigin.res.status === 403) {
    log(`WARNING: mcp-service refuses Origin ${origin} (${withOrigin.text.slice(0, 120)}); add it to http.allowed_origins, ` +
      'or dns-rebinding-protection / localhost-host-valid-accepted fails');
  } else {
    log(`proxy check: Origin ${origin} passes mcp-service's Origin check`);
  }
} catch (e) {
  problems.push(`proxy check failed: ${netError(e)}`);
}

// 3. Every server scenario × every revision: one suite process per revision.
const keepDir = process.env.CONFORMANCE_OUTPUT_DIR;
const outDir = keepDir ? resolve(keepDir) : await mkdtemp(join(tmpdir(), 'mcpauth-mcp-conformance-'));
let pass = 0;
let fail = 0;
let warn = 0;
const summary = [];
const table = []; // [scenario, {revision: cell}]
const notes = new Map(); // reason → scenarios
const timings = [];
if (!problems.length) {
  let scenarios = [];
  try {
    scenarios = await listScenarios(node22);
  } catch (e) {
    problems.push(e.message);
  }
  if (ONLY.length) {
    for (const o of ONLY) if (!scenarios.some((s) => s.name === o)) problems.push(`SCENARIOS: the suite has no server scenario ${o}`);
    scenarios = scenarios.filter((s) => ONLY.includes(s.name));
  }
  const byRevision = new Map();
  for (const revision of REVISIONS) {
    const dir = join(outDir, revision);
    const started = Date.now();
    const exit = await runRevision(node22, revision, proxyUrl, dir);
    timings.push([revision, Date.now() - started]);
    if (exit.signal) problems.push(`the ${revision} run was stopped (${exit.signal})`);
    byRevision.set(revision, await readResults(dir));
  }
  for (const { name, versions } of scenarios) {
    const row = {};
    for (const revision of REVISIONS) {
      // The suite's own applicability: the revisions it lists for the scenario (extensions have
      // no revision and are not run with --spec-version).
      const why = notOffered(name);
      const extension = versions.includes('extension');
      if (!versions.includes(revision) && !(extension && why)) {
        row[revision] = 'n/a';
        continue;
      }
      if (why) {
        row[revision] = 'n/a*';
        notes.set(why, [...new Set([...(notes.get(why) ?? []), name])]);
        continue;
      }
      const checks = byRevision.get(revision)?.get(name);
      const later = pending(name);
      if (later) {
        const failed = (checks ?? []).filter((c) => c.status === 'FAILURE').length;
        row[revision] = 'PENDING';
        notes.set(`PENDING: ${later}`, [...new Set([...(notes.get(`PENDING: ${later}`) ?? []), name])]);
        summary.push(`  PENDING  ${revision} ${name}: ${failed} failing check(s) not counted (${later})`);
        continue;
      }
      if (!checks) {
        row[revision] = 'failed';
        fail++;
        problems.push(`${revision} ${name}: the suite wrote no results`);
        continue;
      }
      let sf = 0;
      for (const c of checks) {
        const skip = checkNotOffered(name, c.id);
        if (skip) {
          summary.push(`  n/a*     ${revision} ${name} / ${c.id} (${c.status}, not counted): ${skip}`);
          continue;
        }
        if (c.status === 'SUCCESS') pass++;
        else if (c.status === 'FAILURE') sf++;
        else if (c.status === 'WARNING') warn++;
        if (c.status !== 'SUCCESS' && c.status !== 'INFO') {
          const msg = c.errorMessage ? `: ${redact(String(c.errorMessage).replace(/\s+/g, ' ')).slice(0, 400)}` : '';
          summary.push(`  ${c.status.padEnd(8)} ${revision} ${name} / ${c.id}${msg}`);
        }
      }
      fail += sf;
      const passedOne = checks.some((c) => c.status === 'SUCCESS' && !checkNotOffered(name, c.id));
      row[revision] = sf ? 'failed' : passedOne ? 'passed' : 'no checks';
      if (!sf && !passedOne) {
        fail++;
        problems.push(`${revision} ${name}: no check passed`);
      }
    }
    table.push([name, row]);
  }
}
proxy.server.closeAllConnections?.();
proxy.server.close();
log(`proxy forwarded ${proxy.counts.requests} request(s); mcp-service answered ${JSON.stringify(proxy.counts.byStatus)}`);

if (summary.length) {
  log('checks that did not pass (warnings are SHOULDs, not failures):');
  for (const line of summary) console.log(line);
}
if (table.length) {
  const w = Math.max(...table.map(([n]) => n.length), 'scenario'.length);
  const cols = REVISIONS.map((r) => Math.max(r.length, 7));
  const line = (cells) => `| ${cells[0].padEnd(w)} | ${cells.slice(1).map((c, i) => c.padEnd(cols[i])).join(' | ')} |`;
  console.log('\nmcp-conformance: scenario × revision (n/a: the suite does not run it at that revision; n/a*: a capability mcp-service does not offer)');
  console.log(line(['scenario', ...REVISIONS]));
  console.log(`|${'-'.repeat(w + 2)}|${cols.map((c) => '-'.repeat(c + 2)).join('|')}|`);
  for (const [name, row] of table) console.log(line([name, ...REVISIONS.map((r) => row[r])]));
  for (const [why, names] of notes) console.log(`  ${why.startsWith('PENDING') ? '' : 'n/a*: '}${why}: ${names.join(', ')}`);
  console.log(`  time per revision: ${timings.map(([r, ms]) => `${r} ${(ms / 1000).toFixed(1)} s`).join(', ')}\n`);
}
if (!keepDir) await rm(outDir, { recursive: true, force: true });
else log(`results kept in ${outDir}`);
if (problems.length && fail === 0) fail = 1;
for (const p of problems) log(`FAILED: ${redact(p)}`);
if (warn) log(`${warn} warning(s) (not failures), see above`);
console.log(`mcp-conformance: ${pass} passed, ${fail} failed`);
process.exit(fail || problems.length ? 1 : 0);
