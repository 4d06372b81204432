#!/usr/bin/env node
// Runs the MCP conformance suite's authorization-server checks against a running auth-service,
// headlessly:
//
//   ISSUER=http://127.0.0.1:8080 RESOURCE=http://127.0.0.1:8081/mcp node tests/e2e/conformance-authorization.mjs
//
// `conformance authorization` (@modelcontextprotocol/conformance 0.2.0-alpha.12) runs two scenarios:
//   authorization-server-metadata-endpoint  GET <issuer origin>/.well-known/oauth-authorization-server<issuer path>
//                                           (then openid-configuration variants); 200, application/json,
//                                           issuer === --url byte for byte, authorization_endpoint,
//                                           token_endpoint, response_types_supported ∋ code,
//                                           code_challenge_methods_supported ∋ S256;
//                                           WARNING (not a failure) without client_id_metadata_document_supported
//   authorization-code-grant                needs --client-id of a client registered beforehand with the
//                                           redirect URI http://127.0.0.1:<--port>/callback; it prints an
//                                           authorization URL (PKCE S256, state, resource), listens on
//                                           127.0.0.1:<port>/callback for up to 5 minutes "for a browser",
//                                           checks the callback (one code/state/iss; iss === issuer), then
//                                           POSTs /token (client_id in the body: auth method none without
//                                           --client-secret) and checks 200, application/json,
//                                           Cache-Control no-store, access_token, token_type.
// This driver registers a public client by DCR with that redirect URI, starts the suite with Node 22,
// follows the authorization URL's redirects with fetch (redirect: 'manual') and delivers the last hop
// to the suite's callback port. Exit status: the suite's (non-zero on any FAILURE check).
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const ISSUER = process.env.ISSUER ?? 'http://127.0.0.1:8080';
const RESOURCE = process.env.RESOURCE ?? 'http://127.0.0.1:8081/mcp';
const TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS ?? 120000);
const HTTP_TIMEOUT_MS = 10000;
const CONFORMANCE_JS = join(HERE, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');

const log = (s) => console.log(`conformance-authorization: ${s}`);
function die(msg) {
  console.error(`conformance-authorization: ERROR: ${msg}`);
  console.log('conformance: 0 passed, 1 failed');
  process.exit(1);
}

/** Node >= 22 for the suite: NODE22, else .tools/bin/node, else this node if it is new enough. */
async function findNode22() {
  const candidates = [process.env.NODE22, join(ROOT, '.tools/bin/node'), process.execPath].filter(Boolean);
  for (const bin of candidates) {
    const v = await new Promise((res) => {
      const p = spawn(bin, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('error', () => res(undefined));
      p.on('close', () => res(out.trim()));
    });
    if (v && Number(v.replace(/^v/, '').split('.')[0]) >= 22) return { bin, version: v };
  }
  return undefined;
}

function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function getJson(url, init = {}) {
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
  if (code === 'ECONNREFUSED') return `connection refused (is auth-service running at ${ISSUER}?)`;
  if (e?.name === 'TimeoutError') return `no answer within ${HTTP_TIMEOUT_MS} ms`;
  return e?.message ?? String(e);
}

/**
 * Plays the browser: GET the authorization URL and follow redirects on the AS origin (keeping its
 * cookies) until one points at the suite's callback, then deliver that one.
 */
async function playBrowser(authUrl, callbackOrigin) {
  const cookies = new Map();
  const asOrigin = new URL(authUrl).origin;
  let url = new URL(authUrl);
  for (let hop = 1; hop <= 10; hop++) {
    const headers = {};
    if (cookies.size) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, { redirect: 'manual', headers, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    for (const sc of res.headers.getSetCookie?.() ?? []) {
      const [pair] = sc.split(';');
      const i = pair.indexOf('=');
      if (i > 0) cookies.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
    }
    const loc = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !loc) {
      const body = (await res.text()).replace(/\s+/g, ' ').slice(0, 300);
      throw new Error(`GET ${url.origin}${url.pathname} (hop ${hop}) answered ${res.status} without a redirect: ${body}` +
        (res.status === 200 ? ' (a login/consent page? auth-service must run in dev login mode)' : ''));
    }
    await res.arrayBuffer().catch(() => {});
    const next = new URL(loc, url);
    log(`browser: hop ${hop}: ${res.status} → ${next.origin}${next.pathname}${summarizeQuery(next)}`);
    if (next.origin === callbackOrigin) {
      // The suite prints the URL before its callback server is listening: retry a refused connection.
      let cb;
      for (let attempt = 1; ; attempt++) {
        try {
          cb = await fetch(next, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
          break;
        } catch (e) {
          if (attempt >= 50 || (e?.cause?.code ?? e?.code) !== 'ECONNREFUSED') throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await cb.text();
      log(`browser: delivered the redirect to the suite's callback (HTTP ${cb.status})`);
      return;
    }
    if (next.origin !== asOrigin) throw new Error(`redirected off the authorization server to ${next.href}`);
    url = next;
  }
  throw new Error('more than 10 redirects without reaching the callback');
}

function summarizeQuery(u) {
  const keys = [...u.searchParams.keys()];
  return keys.length ? ` (query: ${keys.join(', ')})` : '';
}

async function readChecks(outDir) {
  const results = [];
  let entries = [];
  try {
    entries = await readdir(outDir);
  } catch {
    return results;
  }
  // Folder names end in the scenario's start time: sort by that, i.e. in run order.
  const started = (d) => d.match(/-(\d{4}-\d{2}-\d{2}T[\d-]+Z)$/)?.[1] ?? d;
  for (const d of entries.sort((a, b) => started(a).localeCompare(started(b)))) {
    try {
      const checks = JSON.parse(await readFile(join(outDir, d, 'checks.json'), 'utf8'));
      const scenario = d.replace(/^authorization-server-/, '').replace(/-\d{4}-\d{2}-\d{2}T.*$/, '');
      results.push({ scenario, checks });
    } catch {
      // not a result folder
    }
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
log(`issuer ${ISSUER}, resource ${RESOURCE}, suite run by Node ${node22.version}`);

// 1. Metadata, for the registration endpoint (the suite fetches and checks it again itself).
let meta;
try {
  const wk = new URL(ISSUER);
  wk.pathname = `/.well-known/oauth-authorization-server${wk.pathname === '/' ? '' : wk.pathname}`;
  const { res, body, text } = await getJson(wk);
  if (res.status !== 200 || !body) die(`GET ${wk.href} answered ${res.status}: ${text.slice(0, 200)}`);
  meta = body;
} catch (e) {
  die(`discovery failed: ${netError(e)}`);
}

// 2. A public client whose redirect URI is the suite's callback.
const port = Number(process.env.CONFORMANCE_PORT ?? (await freePort()));
const redirectUri = `http://127.0.0.1:${port}/callback`;
let clientId = process.env.CLIENT_ID;
if (clientId) {
  log(`using CLIENT_ID ${clientId} (must have ${redirectUri} registered)`);
} else {
  if (!meta.registration_endpoint) die('metadata has no registration_endpoint; set CLIENT_ID and CONFORMANCE_PORT');
  try {
    const { res, body, text } = await getJson(meta.registration_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({
        client_name: 'MCP conformance suite (authorization)',
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      }),
    });
    if (res.status !== 201 || typeof body?.client_id !== 'string') {
      die(`POST ${meta.registration_endpoint} answered ${res.status}: ${text.slice(0, 300)}`);
    }
    clientId = body.client_id;
    log(`registered public client ${clientId} with redirect_uri ${redirectUri}`);
  } catch (e) {
    die(`registration failed: ${netError(e)}`);
  }
}

// 3. Run the suite; watch its output for the authorization URL.
const keepDir = process.env.CONFORMANCE_OUTPUT_DIR;
const outDir = keepDir ? resolve(keepDir) : await mkdtemp(join(tmpdir(), 'mcpauth-conformance-'));
const args = [CONFORMANCE_JS, 'authorization', '--url', ISSUER, '--client-id', clientId, '--resource', RESOURCE,
  '--port', String(port), '--output-dir', outDir];
log(`running: conformance ${args.slice(1).join(' ')}`);
const child = spawn(node22.bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
const timer = setTimeout(() => {
  console.error(`conformance-authorization: ERROR: the suite did not finish within ${TIMEOUT_MS} ms; stopping it`);
  child.kill('SIGTERM');
}, TIMEOUT_MS);

let browserError;
let sawUrl = false;
const authPrefix = typeof meta.authorization_endpoint === 'string' ? `${meta.authorization_endpoint}?` : undefined;
const onLine = (line) => {
  console.log(`  | ${line}`);
  const t = line.trim();
  const looksLikeAuthUrl = authPrefix ? t.startsWith(authPrefix) : /^https?:\/\/\S+\?\S*response_type=code/.test(t);
  if (!sawUrl && looksLikeAuthUrl) {
    sawUrl = true;
    setImmediate(() => {
      playBrowser(t, `http://127.0.0.1:${port}`).catch((e) => {
        browserError = e;
        console.error(`conformance-authorization: ERROR: browser step failed: ${netError(e)}`);
        child.kill('SIGTERM'); // otherwise the suite waits 5 minutes for a callback
      });
    });
  }
};
createInterface({ input: child.stdout }).on('line', onLine);
createInterface({ input: child.stderr }).on('line', (l) => console.log(`  ! ${l}`));
const exit = await new Promise((res) => child.on('close', (code, signal) => res({ code, signal })));
clearTimeout(timer);

// 4. Per-check results (the suite prints only per-scenario counts when it runs all scenarios).
const results = await readChecks(outDir);
let pass = 0;
let fail = 0;
let warn = 0;
log('checks:');
for (const { scenario, checks } of results) {
  for (const c of checks) {
    if (c.status === 'SUCCESS') pass++;
    else if (c.status === 'FAILURE') fail++;
    else if (c.status === 'WARNING') warn++;
    const msg = c.errorMessage ? `: ${String(c.errorMessage).replace(/\s+/g, ' ')}` : '';
    console.log(`  ${c.status.padEnd(8)} ${scenario} / ${c.id}${msg}`);
  }
}
if (!keepDir) await rm(outDir, { recursive: true, force: true });
else log(`results kept in ${outDir}`);

const problems = [];
if (exit.code !== 0) problems.push(`the suite exited with ${exit.code ?? exit.signal}`);
if (browserError) problems.push(`browser step: ${netError(browserError)}`);
if (!sawUrl) problems.push('the suite never printed an authorization URL');
if (results.length === 0) problems.push('no results were written');
if (fail === 0 && problems.length) fail = 1; // count the run itself as failed
for (const p of problems) log(`FAILED: ${p}`);
if (warn) log(`${warn} warning(s) (not failures), see above`);
console.log(`conformance: ${pass} passed, ${fail} failed`);
process.exit(problems.length || fail ? 1 : 0);
