#!/usr/bin/env node
// The official MCP TypeScript SDK client against the top-level docker-compose.yml stack, from the
// host, as a user would: run by scripts/test-containers.sh in three phases around restarts.
//
//   PHASE=first          discovery (401 → PRM → AS metadata) → dynamic registration → /authorize →
//                        the real login form (POST /login, the demo user) → consent → code →
//                        /token → initialize → tools/list → tools/call whoami
//   PHASE=after-restart  (after `docker compose restart auth-service`) the saved refresh token
//                        still refreshes; whoami with the new access token, same user and client
//   PHASE=after-recreate (after `docker compose down` + `up`) the registered client still exists:
//                        refresh works, and a new authorization with the same client_id (no new
//                        registration) goes through the login form again
//
//   STATE_FILE=/tmp/x.json PHASE=first MCP_URL=http://localhost:8081/mcp \
//     DEMO_USER=demo DEMO_PASSWORD=mcpauth-demo node tests/e2e/docker-compose-flow.mjs
//
// The client's registration and tokens are kept in STATE_FILE between phases (as a desktop client
// keeps them on disk). No token is printed. Exit status 1 on any failed step.
import { readFileSync, writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Browser } from './lib/browser.mjs';

const PHASE = process.env.PHASE ?? 'first';
const MCP_URL = process.env.MCP_URL ?? 'http://localhost:8081/mcp';
const ISSUER = process.env.ISSUER ?? 'http://localhost:8080';
const STATE_FILE = process.env.STATE_FILE;
const USER = process.env.DEMO_USER ?? 'demo';
const PASSWORD = process.env.DEMO_PASSWORD ?? 'mcpauth-demo';
const REDIRECT_URI = 'http://127.0.0.1:47615/callback'; // never listened on: the 302 is read
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 15000);
if (!STATE_FILE) {
  console.error('docker-compose-flow: set STATE_FILE');
  process.exit(2);
}
const mcpUrl = new URL(MCP_URL);

// --- the wire, for checks; tokens remembered so they can be redacted -------------------------
const wire = [];
const secrets = new Set();
async function recordingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  let rpc;
  if (method === 'POST' && typeof init.body === 'string' && url.pathname === mcpUrl.pathname) {
    try {
      rpc = JSON.parse(init.body).method;
    } catch {
      // not JSON
    }
  }
  const res = await fetch(input, { ...init, signal: init.signal ?? AbortSignal.timeout(TIMEOUT_MS) });
  const entry = { method, origin: url.origin, path: url.pathname, status: res.status, rpc };
  if (url.pathname.endsWith('/token')) {
    const body = await res.clone().json().catch(() => ({}));
    for (const t of [body.access_token, body.refresh_token]) if (t) secrets.add(t);
    entry.grant = init.body instanceof URLSearchParams ? init.body.get('grant_type') : new URLSearchParams(String(init.body ?? '')).get('grant_type');
    entry.error = body.error;
  }
  wire.push(entry);
  return res;
}
const mark = () => wire.length;
const since = (i) => wire.slice(i);
const describeWire = (es) => es.map((e) => `${e.method} ${e.path}${e.rpc ? ` ${e.rpc}` : ''}${e.grant ? ` ${e.grant}` : ''} → ${e.status}`).join(', ');
const redact = (s) => [...secrets].reduce((r, t) => r.split(t).join('<token>'), String(s));

// --- an OAuth client provider persisted in STATE_FILE --------------------------------------------
class FileProvider {
  constructor(state) {
    this.s = state;
    this.authUrl = undefined;
  }
  save() {
    writeFileSync(STATE_FILE, JSON.stringify(this.s), { mode: 0o600 });
  }
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: 'mcpauth docker compose test (MCP TypeScript SDK)',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    return (this.s.state = crypto.randomUUID());
  }
  clientInformation() {
    return this.s.client;
  }
  saveClientInformation(info) {
    this.s.client = info;
    this.save();
  }
  tokens() {
    return this.s.tokens;
  }
  saveTokens(t) {
    for (const v of [t.access_token, t.refresh_token]) if (v) secrets.add(v);
    this.s.tokens = t;
    this.save();
  }
  redirectToAuthorization(url) {
    this.authUrl = url;
  }
  saveCodeVerifier(v) {
    this.s.verifier = v;
    this.save();
  }
  codeVerifier() {
    return this.s.verifier;
  }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') delete this.s.client;
    if (scope === 'all' || scope === 'tokens') delete this.s.tokens;
    this.save();
  }
}

// --- steps ---------------------------------------------------------------------------------------
let passed = 0;
let failed = 0;
class CheckFailed extends Error {}
class StepFailed extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new CheckFailed(msg);
};
async function step(name, fn) {
  const notes = [];
  try {
    const v = await fn((s) => notes.push(s));
    passed++;
    console.log(`ok   ${name}${notes.length ? ` (${redact(notes.join('; '))})` : ''}`);
    return v;
  } catch (e) {
    failed++;
    const code = e?.cause?.code ?? e?.code;
    const msg = code === 'ECONNREFUSED' ? `connection refused (${MCP_URL} / ${ISSUER} not published?)` : e?.message ?? String(e);
    console.log(`FAIL ${name}: ${redact(msg.replace(/\s+/g, ' '))}`);
    if (process.env.E2E_DEBUG && e?.stack) console.error(redact(e.stack));
    throw new StepFailed();
  }
}

/** The browser part: authorization URL → login form (the demo user) → consent → the code. */
async function loginThroughTheForm(authUrl, note) {
  const browser = new Browser({ timeoutMs: TIMEOUT_MS });
  const stop = (u) => u.startsWith(REDIRECT_URI);
  let page = await browser.navigate(authUrl.href, { stop });
  check(page.status === 200 && /action="login"/.test(page.html), `GET /authorize did not show the login form (HTTP ${page.status}${page.stoppedAt ? ', redirected straight back: dev login?' : ''})`);
  check(!/name="password"[^>]*value=/.test(page.html), 'the login form is prefilled');
  // A wrong password first: the form comes back with an error, nothing is issued.
  const wrong = await browser.submit(page, { fields: { username: USER, password: `${PASSWORD}-wrong` }, stop });
  check(wrong.status === 401 && !wrong.stoppedAt && /action="login"/.test(wrong.html), `a wrong password was not refused with 401 and the form again (HTTP ${wrong.status})`);
  page = await browser.submit(wrong, { fields: { username: USER, password: PASSWORD }, stop });
  if (!page.stoppedAt) {
    check(page.status === 200 && /name="decision"/.test(page.html), `after POST /login: HTTP ${page.status}, neither consent nor the redirect: ${page.html.slice(0, 200)}`);
    note('consent page');
    page = await browser.submit(page, { button: { decision: 'allow' }, stop });
  }
  check(page.stoppedAt, `no redirect to the client after login (HTTP ${page.status})`);
  const cb = new URL(page.stoppedAt);
  check(!cb.searchParams.has('error'), `error=${cb.searchParams.get('error')}`);
  check(cb.searchParams.get('iss') === ISSUER, `iss ${cb.searchParams.get('iss')}, expected ${ISSUER}`);
  const code = cb.searchParams.get('code');
  check(code, 'no code in the redirect');
  return code;
}

function whoamiOf(result) {
  check(!result.isError, `whoami isError: ${JSON.stringify(result.content).slice(0, 200)}`);
  const text = result.content?.find((c) => c.type === 'text')?.text;
  check(typeof text === 'string', 'whoami returned no text');
  return JSON.parse(text);
}

/** initialize → tools/list → tools/call whoami with the provider's current tokens. */
async function useTools(provider, note) {
  const client = new Client({ name: 'mcpauth-compose-test', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
  const m = mark();
  await client.connect(transport);
  const { tools } = await client.listTools();
  check(tools.some((t) => t.name === 'whoami'), `tools/list: ${tools.map((t) => t.name).join(', ')}`);
  const who = whoamiOf(await client.callTool({ name: 'whoami', arguments: {} }));
  check(who.client_id === provider.clientInformation().client_id, `whoami client_id ${who.client_id}`);
  check(typeof who.subject === 'string' && who.subject, 'whoami without a subject');
  const calls = since(m).filter((e) => e.rpc);
  check(calls.every((e) => e.status === (e.rpc.startsWith('notifications/') ? 202 : 200)), `MCP requests: ${describeWire(calls)}`);
  note(`${describeWire(calls)}; subject ${who.subject}`);
  await transport.terminateSession().catch(() => {});
  await client.close().catch(() => {});
  return who;
}

/** The SDK's own refresh (auth() with a stored refresh token and no code). */
async function refresh(provider, note) {
  const before = provider.tokens();
  check(before?.refresh_token, 'no saved refresh token');
  const m = mark();
  const result = await auth(provider, { serverUrl: mcpUrl, fetchFn: recordingFetch });
  check(result === 'AUTHORIZED', `auth() returned ${result}`);
  const tok = since(m).filter((e) => e.path.endsWith('/token'));
  check(tok.length === 1 && tok[0].grant === 'refresh_token' && tok[0].status === 200, `token requests: ${describeWire(tok)} ${tok[0]?.error ?? ''}`);
  check(since(m).every((e) => !e.path.endsWith('/register')), 'the SDK registered again');
  const after = provider.tokens();
  check(after.refresh_token && after.refresh_token !== before.refresh_token, 'the refresh token was not rotated');
  note('refresh_token grant → 200, rotated');
}

// --- phases --------------------------------------------------------------------------------------
const state = PHASE === 'first' ? {} : JSON.parse(readFileSync(STATE_FILE, 'utf8'));
for (const t of [state.tokens?.access_token, state.tokens?.refresh_token]) if (t) secrets.add(t);
const provider = new FileProvider(state);
console.log(`compose-flow ${PHASE}: MCP TypeScript SDK → ${MCP_URL} (issuer ${ISSUER}, user ${USER})`);

try {
  if (PHASE === 'first') {
    const client = new Client({ name: 'mcpauth-compose-test', version: '0.0.0' });
    const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
    await step('connect without a token: 401 → PRM → AS metadata → dynamic registration → authorization URL', async (note) => {
      let err;
      await client.connect(transport).catch((e) => (err = e));
      check(err instanceof UnauthorizedError, `connect: ${err ? err.message : 'succeeded without a token'}`);
      const seen = describeWire(wire);
      check(wire[0]?.path === mcpUrl.pathname && wire[0].status === 401, `first request: ${seen}`);
      check(wire.some((e) => e.path === '/.well-known/oauth-protected-resource/mcp' && e.status === 200), `no PRM: ${seen}`);
      check(wire.some((e) => e.path === '/.well-known/oauth-authorization-server' && e.status === 200 && e.origin === ISSUER), `no AS metadata at ${ISSUER}: ${seen}`);
      check(wire.some((e) => e.path === '/register' && e.status === 201), `no registration: ${seen}`);
      check(provider.clientInformation()?.client_id, 'no client_id saved');
      check(provider.authUrl?.href.startsWith(`${ISSUER}/authorize`), `authorization URL ${provider.authUrl}`);
      note(seen);
    });
    const code = await step('login through the real form (wrong password refused, then the demo user) → consent → code', (note) => loginThroughTheForm(provider.authUrl, note));
    await step('the SDK exchanges the code at /token (PKCE)', async (note) => {
      const m = mark();
      await transport.finishAuth(code);
      const tok = since(m).filter((e) => e.path.endsWith('/token'));
      check(tok.length === 1 && tok[0].status === 200 && tok[0].grant === 'authorization_code', `token requests: ${describeWire(tok)}`);
      check(provider.tokens()?.access_token && provider.tokens().refresh_token, 'no access and refresh token');
      note('authorization_code → 200');
    });
    const who = await step('initialize → tools/list → tools/call whoami', (note) => useTools(provider, note));
    state.subject = who.subject;
    provider.save();
  } else {
    await step(`the saved refresh token still works (${PHASE})`, (note) => refresh(provider, note));
    await step('tools/call whoami with the refreshed token: same user and client', async (note) => {
      const who = await useTools(provider, note);
      check(who.subject === state.subject, `subject ${who.subject}, before ${state.subject}`);
    });
    if (PHASE === 'after-recreate') {
      await step('the registered client survived: a new authorization with the same client_id, no registration', async (note) => {
        const clientId = provider.clientInformation().client_id;
        delete state.tokens;
        provider.save();
        const client = new Client({ name: 'mcpauth-compose-test', version: '0.0.0' });
        const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
        const m = mark();
        let err;
        await client.connect(transport).catch((e) => (err = e));
        check(err instanceof UnauthorizedError, `connect: ${err ? err.message : 'succeeded without a token'}`);
        check(since(m).every((e) => !e.path.endsWith('/register')), `registered again: ${describeWire(since(m))}`);
        check(provider.authUrl?.searchParams.get('client_id') === clientId, 'another client_id');
        const code = await loginThroughTheForm(provider.authUrl, note);
        await transport.finishAuth(code);
        const who = await useTools(provider, note);
        check(who.subject === state.subject && who.client_id === clientId, `whoami ${JSON.stringify(who)}`);
      });
    }
  }
} catch (e) {
  if (!(e instanceof StepFailed)) {
    failed++;
    console.log(`FAIL unexpected: ${redact(e?.message ?? e)}`);
  }
}
console.log(`compose-flow ${PHASE}: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
