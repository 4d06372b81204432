#!/usr/bin/env node
// End to end against a running mcp-service and auth-service with the official MCP TypeScript SDK
// client (@modelcontextprotocol/sdk), headless:
//
//   ISSUER=http://127.0.0.1:8080 MCP_URL=http://127.0.0.1:8081/mcp node tests/e2e/mcp-ts-sdk.mjs
//
// connect → 401 → PRM → AS metadata → DCR → /authorize (redirects followed by hand, fetch
// redirect:'manual') → finishAuth → /token → initialize → tools/list → tools/call whoami → a refresh
// forced through the SDK's own auth() → /revoke of the access token (the SDK sees 401 and refreshes)
// → /revoke of the refresh token (the whole grant: the SDK sees 401, its refresh fails with
// invalid_grant, it starts a new authorization and throws UnauthorizedError) → re-authorization.
// Every HTTP exchange the SDK makes goes through a recording fetch, so the wire is checked too.
//
// auth-service must run in dev login mode (GET /authorize answers 302 straight to the redirect URI)
// with MCP_URL among its [[resources]]; mcp-service's verifier must reach that auth-service and
// share its Redis key prefix (revocations). See README.md. Exit status 1 on any failed step.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const ISSUER = process.env.ISSUER ?? 'http://127.0.0.1:8080';
const MCP_URL = process.env.MCP_URL ?? process.env.RESOURCE ?? 'http://127.0.0.1:8081/mcp';
// Nothing has to listen here: the script reads the 302 Location itself.
const REDIRECT_URI = process.env.REDIRECT_URI ?? 'http://127.0.0.1:47614/callback';
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 10000);
// How long a revocation may take to reach mcp-service (Redis fan-out; documented "within a second").
const REVOCATION_MS = Number(process.env.REVOCATION_TIMEOUT_MS ?? 2000);
const EXPECTED_SCOPE = process.env.EXPECTED_SCOPE ?? 'mcp:tools.read';

const mcpUrl = new URL(MCP_URL);
const prmUrl = `${mcpUrl.origin}/.well-known/oauth-protected-resource${mcpUrl.pathname.replace(/\/$/, '')}`;

// --- output: every line goes through out(), so the run can prove no token was printed ----------
const printed = [];
const out = (s) => {
  printed.push(s);
  console.log(s);
};

// --- tokens: remembered (never printed) and named for the log ----------------------------------
const secrets = new Map(); // token → label ("access#1", "refresh#2", …)
const counters = { access: 0, refresh: 0 };
function remember(kind, token) {
  if (typeof token === 'string' && token && !secrets.has(token)) secrets.set(token, `${kind}#${++counters[kind]}`);
}
const label = (token) => (token ? (secrets.get(token) ?? 'an unknown token') : 'no token');

// --- the wire: a fetch that records what the SDK sends and gets ------------------------------
const wire = [];
async function recordingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  const authz = headers.get('authorization');
  let form;
  if (init.body instanceof URLSearchParams) form = init.body;
  else if (typeof init.body === 'string' && headers.get('content-type')?.includes('x-www-form-urlencoded')) form = new URLSearchParams(init.body);
  const entry = {
    method,
    path: url.pathname,
    query: url.search,
    bearer: authz?.startsWith('Bearer ') ? authz.slice(7) : undefined,
    form: form && {
      grant_type: form.get('grant_type'),
      resource: form.getAll('resource'),
      client_id: form.get('client_id'),
      has_code_verifier: form.has('code_verifier'),
      refresh_token: form.get('refresh_token') ?? undefined,
    },
  };
  if (method === 'POST' && url.pathname === mcpUrl.pathname && typeof init.body === 'string') {
    try {
      entry.rpc = JSON.parse(init.body).method;
    } catch {
      // not JSON
    }
  }
  const res = await fetch(input, { ...init, signal: init.signal ?? AbortSignal.timeout(TIMEOUT_MS) });
  entry.status = res.status;
  entry.wwwAuthenticate = res.headers.get('www-authenticate') ?? undefined;
  if (url.pathname.startsWith('/.well-known/') || url.pathname.endsWith('/register') || url.pathname.endsWith('/token')) {
    try {
      const body = await res.clone().json();
      if (url.pathname.endsWith('/token')) {
        remember('access', body.access_token);
        remember('refresh', body.refresh_token);
        entry.body = { keys: Object.keys(body).sort(), token_type: body.token_type, error: body.error, scope: body.scope };
      } else {
        entry.body = body;
      }
    } catch {
      // not JSON
    }
  }
  wire.push(entry);
  return res;
}
const mark = () => wire.length;
const since = (i) => wire.slice(i);
const describeWire = (entries) =>
  entries.map((e) => `${e.method} ${e.path}${e.rpc ? ` ${e.rpc}` : ''}${e.form?.grant_type ? ` ${e.form.grant_type}` : ''} → ${e.status}`).join(', ');

// --- the OAuth client provider: in memory; redirectToAuthorization only captures the URL --------
class HeadlessProvider {
  constructor() {
    this.authUrl = undefined;
    this.redirects = 0;
    this.invalidated = [];
    this._tokens = undefined;
    this._client = undefined;
    this._verifier = undefined;
    this._state = undefined;
  }
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: 'mcpauth e2e (MCP TypeScript SDK)',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this._state = crypto.randomUUID();
    return this._state;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info; // kept as given (the SDK stamps it with the issuer)
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(t) {
    remember('access', t.access_token);
    remember('refresh', t.refresh_token);
    this._tokens = t;
  }
  redirectToAuthorization(url) {
    this.authUrl = url;
    this.redirects++;
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    if (scope === 'all' || scope === 'client') this._client = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
  }
}

// --- step runner ---------------------------------------------------------------------------------
class CheckFailed extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new CheckFailed(msg);
};
const clip = (v, n = 300) => {
  let s;
  try {
    s = typeof v === 'string' ? v : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > n ? `${s.slice(0, n)}…` : s;
};
function describe(e) {
  let msg = e?.message ?? String(e);
  if (e?.name === 'TimeoutError') msg = `no answer within ${TIMEOUT_MS} ms`;
  const code = e?.cause?.code ?? e?.cause?.cause?.code ?? e?.code;
  if (code === 'ECONNREFUSED') msg = `connection refused (are mcp-service at ${MCP_URL} and auth-service at ${ISSUER} running?)`;
  if (e && !(e instanceof CheckFailed) && e.constructor?.name && e.constructor.name !== 'Error') msg = `${e.constructor.name}: ${msg}`;
  return redact(msg.replace(/\s+/g, ' '));
}
/** Belt and braces: no token ever reaches the output, even inside an error message. */
function redact(s) {
  let r = s;
  for (const [t, l] of secrets) r = r.split(t).join(`<${l}>`);
  return r;
}

let passed = 0;
let failed = 0;
class StepFailed extends Error {}
async function step(name, fn) {
  const notes = [];
  try {
    const value = await fn((s) => notes.push(s));
    passed++;
    out(`ok   ${name}${notes.length ? ` (${redact(notes.join('; '))})` : ''}`);
    return value;
  } catch (e) {
    failed++;
    out(`FAIL ${name}: ${describe(e)}`);
    if (process.env.E2E_DEBUG && e?.stack) console.error(redact(e.stack));
    throw new StepFailed();
  }
}

/** Plays the browser: GET the authorization URL, follow redirects by hand until redirect_uri. */
async function driveAuthorize(authUrl) {
  let next = new URL(authUrl);
  const asOrigin = next.origin;
  for (let hop = 1; hop <= 10; hop++) {
    const res = await fetch(next, { redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
    const loc = res.headers.get('location');
    const text = await res.text();
    if (res.status < 300 || res.status >= 400 || !loc) {
      throw new CheckFailed(`GET ${next.pathname} (hop ${hop}) answered ${res.status} without a redirect: ${clip(text.replace(/\s+/g, ' '), 200)}` +
        (res.status === 200 ? ' (a login page? auth-service must run in dev login mode)' : ''));
    }
    const abs = new URL(loc, next);
    if (abs.href.startsWith(REDIRECT_URI)) return { callback: abs, hops: hop };
    if (abs.origin !== asOrigin) throw new CheckFailed(`redirected off the authorization server to ${abs.origin}${abs.pathname}`);
    next = abs;
  }
  throw new CheckFailed('more than 10 redirects without reaching redirect_uri');
}

/** One raw MCP request with a given token (no SDK): for the revocation latency probes. */
async function rawMcp(token, sessionId, protocolVersion) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    authorization: `Bearer ${token}`,
  };
  if (sessionId) headers['mcp-session-id'] = sessionId;
  if (protocolVersion) headers['mcp-protocol-version'] = protocolVersion;
  const res = await fetch(mcpUrl, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 'probe', method: 'ping' }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const body = await res.text().catch(() => '');
  return { status: res.status, wwwAuthenticate: res.headers.get('www-authenticate'), body };
}

/** Polls until mcp-service refuses `token` with 401; returns the latency in ms. */
async function waitRefused(token, sessionId, protocolVersion) {
  const start = Date.now();
  for (;;) {
    const r = await rawMcp(token, sessionId, protocolVersion);
    if (r.status === 401) {
      check(/^Bearer /.test(r.wwwAuthenticate ?? ''), `401 without a Bearer challenge: ${r.wwwAuthenticate}`);
      check(/error="invalid_token"/.test(r.wwwAuthenticate), `401 challenge lacks error="invalid_token": ${r.wwwAuthenticate}`);
      return Date.now() - start;
    }
    if (Date.now() - start > REVOCATION_MS) {
      throw new CheckFailed(`still accepted ${REVOCATION_MS} ms after /revoke (last answer HTTP ${r.status}); ` +
        'is mcp-service subscribed to this auth-service\'s revocations (redis.auth_key_prefix)?');
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function revoke(as, clientId, token, hint) {
  const res = await fetch(as.revocation_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ token, token_type_hint: hint, client_id: clientId }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  check(res.status === 200, `POST ${new URL(as.revocation_endpoint).pathname} answered ${res.status}: ${clip(text)}`);
}

/** whoami's answer: the first text block, as JSON. */
function whoamiOf(result) {
  check(!result.isError, `whoami returned isError: ${clip(result.content)}`);
  const text = result.content?.find((c) => c.type === 'text')?.text;
  check(typeof text === 'string', `whoami returned no text content: ${clip(result.content)}`);
  for (const [t, l] of secrets) check(!text.includes(t), `whoami's answer contains the ${l.split('#')[0]} token`);
  let who;
  try {
    who = JSON.parse(text);
  } catch {
    throw new CheckFailed(`whoami's text is not JSON: ${clip(text)}`);
  }
  return who;
}

// --- the run -------------------------------------------------------------------------------------
const hardStop = setTimeout(() => {
  out(`FAIL the run did not finish within ${TIMEOUT_MS * 12} ms`);
  out(`mcp-e2e: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, TIMEOUT_MS * 12);
hardStop.unref();

out(`mcp-e2e: MCP TypeScript SDK client → ${MCP_URL} (authorization server ${ISSUER})`);
const provider = new HeadlessProvider();
const client = new Client({ name: 'mcpauth-e2e-ts-sdk', version: '0.0.0' });
let transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
let as;
let clientId;
let protocolVersion;

try {
  // 1. The first connect: 401, discovery, registration, then redirectToAuthorization + UnauthorizedError.
  const m0 = mark();
  await step('connect without a token → the SDK throws UnauthorizedError after discovery and DCR', async (note) => {
    let err;
    try {
      await client.connect(transport);
    } catch (e) {
      err = e;
    }
    check(err instanceof UnauthorizedError, err ? `connect threw ${describe(err)}, expected UnauthorizedError` : 'connect succeeded without a token');
    check(provider.authUrl, 'redirectToAuthorization was never called');
    note(`wire: ${describeWire(since(m0))}`);
  });

  await step('401 from mcp-service: Bearer challenge with resource_metadata and scope, no error code', async (note) => {
    const first = since(m0).find((e) => e.path === mcpUrl.pathname);
    check(first, 'the SDK never called /mcp');
    check(first.bearer === undefined, 'the first /mcp request already carried a token');
    check(first.status === 401, `first POST ${mcpUrl.pathname} answered ${first.status}`);
    const h = first.wwwAuthenticate ?? '';
    check(h.startsWith('Bearer '), `WWW-Authenticate does not start with "Bearer ": ${h}`);
    check(h.includes(`resource_metadata="${prmUrl}"`), `WWW-Authenticate lacks resource_metadata="${prmUrl}": ${h}`);
    const scope = h.match(/scope="([^"]*)"/)?.[1];
    check(scope !== undefined, `WWW-Authenticate lacks scope: ${h}`);
    check(!/error=/.test(h), `RFC 6750 §3.1: a request without credentials gets no error code: ${h}`);
    note(`scope="${scope}"`);
  });

  await step('protected resource metadata (RFC 9728) fetched from the header URL', async (note) => {
    const prm = since(m0).find((e) => e.method === 'GET' && e.path === new URL(prmUrl).pathname);
    check(prm, `the SDK never fetched ${prmUrl}`);
    check(prm.status === 200, `GET ${prm.path} answered ${prm.status}`);
    check(prm.body?.resource === MCP_URL, `resource ${clip(prm.body?.resource)}, expected ${MCP_URL}`);
    check(Array.isArray(prm.body?.authorization_servers) && prm.body.authorization_servers[0] === ISSUER,
      `authorization_servers ${clip(prm.body?.authorization_servers)}, expected [${ISSUER}] (byte-identical to the issuer)`);
    check(prm.body.scopes_supported?.includes(EXPECTED_SCOPE), `scopes_supported ${clip(prm.body.scopes_supported)} lacks ${EXPECTED_SCOPE}`);
    note(`authorization_servers ${clip(prm.body.authorization_servers)}, scopes_supported ${clip(prm.body.scopes_supported)}`);
  });

  as = await step('authorization server metadata (RFC 8414)', async (note) => {
    const md = since(m0).find((e) => e.method === 'GET' && e.path.startsWith('/.well-known/oauth-authorization-server') && e.status === 200);
    check(md, `no successful GET of ${ISSUER}/.well-known/oauth-authorization-server: ${describeWire(since(m0))}`);
    check(md.body?.issuer === ISSUER, `issuer ${clip(md.body?.issuer)}, expected ${ISSUER}`);
    for (const f of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'revocation_endpoint']) {
      check(typeof md.body[f] === 'string', `metadata has no ${f}`);
    }
    check(md.body.code_challenge_methods_supported?.includes('S256'), 'code_challenge_methods_supported lacks S256');
    note(`issuer ${md.body.issuer}`);
    return md.body;
  });

  clientId = await step('dynamic client registration (RFC 7591): 201, public client', async (note) => {
    const regs = since(m0).filter((e) => e.method === 'POST' && e.path === new URL(as.registration_endpoint).pathname);
    check(regs.length === 1, `${regs.length} registrations`);
    check(regs[0].status === 201, `POST /register answered ${regs[0].status}`);
    const info = provider.clientInformation();
    check(typeof info?.client_id === 'string', 'no client_id saved');
    check(!info.client_secret, 'a public client (token_endpoint_auth_method none) got a client_secret');
    check(info.redirect_uris?.includes(REDIRECT_URI), `redirect_uris not echoed: ${clip(info.redirect_uris)}`);
    note(`client_id ${info.client_id}`);
    return info.client_id;
  });

  const callback = await step('/authorize: PKCE S256, state, resource, challenged scope; 302 to redirect_uri with code, state, iss', async (note) => {
    const u = new URL(provider.authUrl);
    check(u.href.startsWith(as.authorization_endpoint), `authorization URL ${u.origin}${u.pathname} is not ${as.authorization_endpoint}`);
    const p = u.searchParams;
    check(p.get('response_type') === 'code', `response_type ${p.get('response_type')}`);
    check(p.get('client_id') === clientId, 'client_id differs from the registered one');
    check(p.get('code_challenge_method') === 'S256' && p.get('code_challenge'), 'no S256 code_challenge');
    check(p.get('redirect_uri') === REDIRECT_URI, `redirect_uri ${p.get('redirect_uri')}`);
    check(p.get('resource') === MCP_URL, `resource ${p.get('resource')}, expected ${MCP_URL}`);
    check(p.get('scope') === EXPECTED_SCOPE, `scope ${p.get('scope')}, expected ${EXPECTED_SCOPE} (from the 401 challenge)`);
    check(p.get('state') === provider._state, 'state differs from the provider\'s');
    const { callback: cb, hops } = await driveAuthorize(u);
    check(!cb.searchParams.has('error'), `error=${cb.searchParams.get('error')} ${cb.searchParams.get('error_description') ?? ''}`);
    check(cb.searchParams.getAll('code').length === 1, 'not exactly one code');
    check(cb.searchParams.get('state') === provider._state, 'state not returned unchanged');
    check(cb.searchParams.get('iss') === ISSUER, `iss ${cb.searchParams.get('iss')}, expected ${ISSUER} (RFC 9207)`);
    note(`${hops} redirect(s)`);
    return cb;
  });

  const m1 = mark();
  await step('finishAuth: the SDK exchanges the code at /token (code_verifier, resource, client_id)', async (note) => {
    await transport.finishAuth(callback.searchParams.get('code'));
    const tok = since(m1).filter((e) => e.path === new URL(as.token_endpoint).pathname);
    check(tok.length === 1, `${tok.length} token requests: ${describeWire(since(m1))}`);
    const t = tok[0];
    check(t.status === 200, `POST /token answered ${t.status} ${clip(t.body)}`);
    check(t.form?.grant_type === 'authorization_code', `grant_type ${t.form?.grant_type}`);
    check(t.form.has_code_verifier, 'no code_verifier');
    check(t.form.resource.length === 1 && t.form.resource[0] === MCP_URL, `resource ${clip(t.form.resource)}`);
    check(t.form.client_id === clientId, 'client_id missing from the form (public client)');
    const tokens = provider.tokens();
    check(tokens?.access_token && tokens.refresh_token, `token response lacks ${tokens?.access_token ? 'refresh_token' : 'access_token'}`);
    check(tokens.token_type === 'Bearer', `token_type ${tokens.token_type}, expected Bearer`);
    check(Number.isInteger(tokens.expires_in) && tokens.expires_in > 0, `expires_in ${tokens.expires_in}`);
    note(`${label(tokens.access_token)}, ${label(tokens.refresh_token)}, expires_in ${tokens.expires_in}, scope ${tokens.scope ?? '(none)'}`);
  });

  // 2. Connected.
  transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: recordingFetch });
  const m2 = mark();
  await step('initialize with the token (a new transport, as after a browser redirect)', async (note) => {
    await client.connect(transport);
    const init = since(m2).find((e) => e.rpc === 'initialize');
    check(init?.status === 200, `initialize answered ${init?.status}`);
    check(init.bearer === provider.tokens().access_token, 'initialize did not carry the new access token');
    const info = client.getServerVersion();
    check(info?.name, 'no serverInfo');
    check(client.getServerCapabilities()?.tools, 'server capabilities lack tools');
    protocolVersion = transport.protocolVersion;
    check(transport.sessionId, 'no Mcp-Session-Id');
    note(`server ${info.name} ${info.version}, protocol ${protocolVersion}`);
  });

  await step('tools/list lists whoami', async (note) => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    check(names.includes('whoami'), `tools: ${clip(names)}`);
    note(`tools: ${names.join(', ')}`);
  });
  out('skip step-up (403 insufficient_scope → re-authorize with more scope): mcp-service has no tool needing more than mcp:tools.read yet');

  let who1;
  await step('tools/call whoami: subject, client_id, scopes, expiry; no token in the answer', async (note) => {
    const who = whoamiOf(await client.callTool({ name: 'whoami', arguments: {} }));
    check(typeof who.subject === 'string' && who.subject, `subject ${clip(who.subject)}`);
    check(who.client_id === clientId, `client_id ${clip(who.client_id)}, expected ${clientId}`);
    check(Array.isArray(who.scopes) && who.scopes.includes(EXPECTED_SCOPE), `scopes ${clip(who.scopes)} lack ${EXPECTED_SCOPE}`);
    const expected = Math.floor(Date.now() / 1000) + provider.tokens().expires_in;
    check(Number.isInteger(who.expires_at) && Math.abs(who.expires_at - expected) <= 60, `expires_at ${who.expires_at}, expected about ${expected}`);
    who1 = who;
    note(`subject ${who.subject}, scopes ${who.scopes.join(' ')}`);
  });

  // 3. Refresh, forced through the SDK's auth(): with a refresh token stored and no code, it refreshes.
  const m3 = mark();
  await step('refresh through the SDK (auth() with the stored refresh token): rotated tokens, resource sent', async (note) => {
    const before = provider.tokens();
    const result = await auth(provider, { serverUrl: mcpUrl, fetchFn: recordingFetch });
    check(result === 'AUTHORIZED', `auth() returned ${result}`);
    const tok = since(m3).filter((e) => e.path === new URL(as.token_endpoint).pathname);
    check(tok.length === 1 && tok[0].status === 200, `token requests: ${describeWire(tok)}`);
    check(tok[0].form?.grant_type === 'refresh_token', `grant_type ${tok[0].form?.grant_type}`);
    check(tok[0].form.resource[0] === MCP_URL, `resource ${clip(tok[0].form.resource)}`);
    const after = provider.tokens();
    check(after.access_token !== before.access_token, 'the access token did not change');
    check(after.refresh_token && after.refresh_token !== before.refresh_token, 'the refresh token was not rotated (public client)');
    note(`${label(before.access_token)} → ${label(after.access_token)}, ${label(before.refresh_token)} → ${label(after.refresh_token)}`);
  });

  await step('tools/call whoami with the refreshed token: same subject and client', async () => {
    const m = mark();
    const who = whoamiOf(await client.callTool({ name: 'whoami', arguments: {} }));
    const call = since(m).find((e) => e.rpc === 'tools/call');
    check(call?.bearer === provider.tokens().access_token, 'the call did not carry the refreshed token');
    check(who.subject === who1.subject && who.client_id === who1.client_id, `whoami ${clip(who)} differs from ${clip(who1)}`);
  });

  // 4. Revoke the access token (RFC 7009): the next call gets 401; the SDK refreshes and retries.
  const revokedAccess = provider.tokens().access_token;
  await step('revoke the access token at /revoke (RFC 7009, public client: client_id in the form) → 200', async (note) => {
    await revoke(as, clientId, revokedAccess, 'access_token');
    note(label(revokedAccess));
  });

  await step('mcp-service refuses the revoked access token: 401 Bearer error="invalid_token"', async (note) => {
    const ms = await waitRefused(revokedAccess, transport.sessionId, protocolVersion);
    note(`refused ${ms} ms after /revoke answered`);
  });

  await step('next SDK call: 401 with the revoked token, the SDK refreshes and retries, the call succeeds', async (note) => {
    const m = mark();
    const who = whoamiOf(await client.callTool({ name: 'whoami', arguments: {} }));
    const seen = since(m);
    const first = seen.find((e) => e.rpc === 'tools/call');
    check(first?.bearer === revokedAccess && first.status === 401, `first tools/call: ${first ? `${label(first.bearer)} → ${first.status}` : 'none'}`);
    check(/error="invalid_token"/.test(first.wwwAuthenticate ?? ''), `401 challenge: ${first.wwwAuthenticate}`);
    const tok = seen.filter((e) => e.path === new URL(as.token_endpoint).pathname);
    check(tok.length === 1 && tok[0].form?.grant_type === 'refresh_token' && tok[0].status === 200, `token requests: ${describeWire(tok)}`);
    const retry = seen.filter((e) => e.rpc === 'tools/call')[1];
    check(retry?.status === 200 && retry.bearer === provider.tokens().access_token && retry.bearer !== revokedAccess,
      `retry: ${retry ? `${label(retry.bearer)} → ${retry.status}` : 'none'}`);
    check(who.subject === who1.subject, 'another subject after the refresh');
    note(`wire: ${describeWire(seen)}`);
  });

  // 5. Revoke the refresh token: the whole grant ends; the SDK's refresh fails and it re-authorizes.
  const grantAccess = provider.tokens().access_token;
  const grantRefresh = provider.tokens().refresh_token;
  await step('revoke the refresh token (ends the grant, access tokens included) → 200', async (note) => {
    await revoke(as, clientId, grantRefresh, 'refresh_token');
    note(label(grantRefresh));
  });

  await step('mcp-service refuses the grant\'s current access token: 401 invalid_token', async (note) => {
    const ms = await waitRefused(grantAccess, transport.sessionId, protocolVersion);
    note(`${label(grantAccess)} refused ${ms} ms after /revoke answered`);
  });

  const redirectsBefore = provider.redirects;
  await step('next SDK call: 401, refresh → invalid_grant, the SDK drops its tokens and throws UnauthorizedError', async (note) => {
    const m = mark();
    let err;
    try {
      await client.callTool({ name: 'whoami', arguments: {} });
    } catch (e) {
      err = e;
    }
    const seen = since(m);
    check(err instanceof UnauthorizedError, err ? `threw ${describe(err)}` : 'the call succeeded with a revoked grant');
    const call = seen.find((e) => e.rpc === 'tools/call');
    check(call?.status === 401, `tools/call answered ${call?.status}`);
    const tok = seen.filter((e) => e.path === new URL(as.token_endpoint).pathname);
    check(tok.length >= 1 && tok[0].form?.grant_type === 'refresh_token' && tok[0].status === 400 && tok[0].body?.error === 'invalid_grant',
      `token requests: ${describeWire(tok)} ${clip(tok[0]?.body)}`);
    check(provider.invalidated.includes('tokens'), 'the SDK did not invalidate its tokens');
    check(provider.redirects === redirectsBefore + 1, 'the SDK did not start a new authorization');
    check(!seen.some((e) => e.path === new URL(as.registration_endpoint).pathname), 'the SDK registered again');
    note(`wire: ${describeWire(seen)}`);
  });

  await step('re-authorize (same client, no new DCR) → whoami works again, same subject', async (note) => {
    const u = new URL(provider.authUrl);
    check(u.searchParams.get('client_id') === clientId, 'another client_id');
    const { callback: cb } = await driveAuthorize(u);
    check(cb.searchParams.get('code'), `no code: ${cb.search.replace(/code=[^&]*/, 'code=…')}`);
    await transport.finishAuth(cb.searchParams.get('code'));
    const who = whoamiOf(await client.callTool({ name: 'whoami', arguments: {} }));
    check(who.subject === who1.subject && who.client_id === clientId, `whoami ${clip(who)}`);
    note(`now ${label(provider.tokens().access_token)}`);
  });
} catch (e) {
  if (!(e instanceof StepFailed)) {
    failed++;
    out(`FAIL unexpected error: ${describe(e)}`);
    if (process.env.E2E_DEBUG && e?.stack) console.error(redact(e.stack));
  }
}

// 6. Close the session, then prove that no token was printed or sent in a URL.
try {
  await transport.terminateSession();
} catch {
  // the session may already be gone; not under test here
}
await client.close().catch(() => {});

// (Skipped when an earlier failure left no token to look for: that failure is already counted.)
if (secrets.size > 0 || failed === 0) await step('no token in the output or in any request URL (tokens only in the Authorization header)', async (note) => {
  check(secrets.size > 0, 'no tokens were seen at all');
  for (const [t, l] of secrets) {
    check(!printed.some((line) => line.includes(t)), `the ${l} token was printed`);
    check(!wire.some((e) => e.query.includes(t) || e.path.includes(t)), `the ${l} token was sent in a URL`);
  }
  check(wire.filter((e) => e.path === mcpUrl.pathname && e.bearer === undefined).length === 1,
    'more than one /mcp request went out without a token');
  note(`${secrets.size} tokens, ${wire.length} recorded requests`);
}).catch(() => {});

out(`mcp-e2e: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
