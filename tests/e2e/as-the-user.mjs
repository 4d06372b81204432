#!/usr/bin/env node
// Every tool call runs as the user, end to end, with the official MCP TypeScript SDK client and a
// real upstream (two panva oidc-provider instances and two upstream APIs that accept only their
// provider's tokens). Started by scripts/e2e-as-user.sh, which sets:
//   ISSUER MCP_URL   auth-service (login delegated to the "corp" provider) and mcp-service
//   CORP CRM         the upstream providers; API1 API2 their APIs
//   SECRETS_FILE     where to write every MCP token the run saw (label<TAB>token) for the scan
//
// Two users, alice and bob, sign in through corp (consent at auth-service → corp's login form →
// callback → code), call a corp connector tool and the corp API sees each one's own upstream token,
// never an MCP token. alice steps up for a tool that needs mcp:tools.write. alice connects crm
// from inside the conversation (connect_crm → connect URL → confirm → crm login), the SDK receives
// notifications/tools/list_changed and the crm tools appear; bob still sees only connect_crm and
// cannot use crm. alice disconnects crm: the tools go, and the upstream revoked its tokens.
import { appendFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Browser } from './lib/browser.mjs';

const env = (k) => process.env[k] ?? (console.error(`as-the-user: ${k} is not set (run scripts/e2e-as-user.sh)`), process.exit(2));
const ISSUER = env('ISSUER');
const MCP_URL = env('MCP_URL');
const CORP = env('CORP');
const CRM = env('CRM');
const API1 = env('API1');
const API2 = env('API2');
const SECRETS_FILE = env('SECRETS_FILE');
const REDIRECT_URI = 'http://127.0.0.1:47615/callback'; // nothing listens: the browser stops there
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 15000);
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

// --- tokens the run sees: never printed, written to SECRETS_FILE for the plaintext scan ----------
const secrets = new Map();
function remember(kind, token) {
  if (typeof token === 'string' && token && !secrets.has(token)) {
    secrets.set(token, `mcp ${kind} #${secrets.size + 1}`);
    appendFileSync(SECRETS_FILE, `mcp ${kind} #${secrets.size}\t${token}\n`);
  }
}
const redact = (s) => {
  let r = s;
  for (const [t, l] of secrets) r = r.split(t).join(`<${l}>`);
  return r;
};

// --- steps -----------------------------------------------------------------------------------------
let passed = 0;
let failed = 0;
class CheckFailed extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new CheckFailed(msg);
};
const clip = (v, n = 400) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > n ? `${s.slice(0, n)}…` : s;
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
    console.log(`FAIL ${name}: ${redact(String(e?.stack && !(e instanceof CheckFailed) ? e.stack : e?.message ?? e))}`);
    throw new Error('stop');
  }
}

// --- an SDK client per user, with a headless OAuth provider and a browser ------------------------
class HeadlessProvider {
  constructor(name) {
    this.name = name;
    this.authUrl = undefined;
    this._tokens = undefined;
    this._client = undefined;
    this._verifier = undefined;
  }
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: `mcpauth e2e as ${this.name}`,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    return crypto.randomUUID();
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
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
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') this._client = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
  }
}

class User {
  constructor(name) {
    this.name = name;
    this.browser = new Browser({ timeoutMs: TIMEOUT_MS });
    this.provider = new HeadlessProvider(name);
    this.listChanged = 0;
    this.client = undefined;
  }

  newClient() {
    const client = new Client({ name: `e2e-${this.name}`, version: '1.0.0' }, { capabilities: {} });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      this.listChanged++;
    });
    return client;
  }

  transport() {
    return new StreamableHTTPClientTransport(new URL(MCP_URL), {
      authProvider: this.provider,
      fetch: (input, init = {}) => fetch(input, { ...init, signal: init.signal ?? AbortSignal.timeout(TIMEOUT_MS) }).then(async (res) => {
        const url = String(input instanceof Request ? input.url : input);
        if (res.status === 403) this.last403 = res.headers.get('www-authenticate') ?? '';
        if (url.endsWith('/token') && res.ok) {
          const body = await res.clone().json().catch(() => ({}));
          remember('access', body.access_token);
          remember('refresh', body.refresh_token);
        }
        return res;
      }),
    });
  }

  // The browser part of an authorization: consent at auth-service (when shown), the upstream
  // login form (when shown), back through the callback to the client's redirect URI. Returns the
  // code and the pages it went through.
  async authorizeInBrowser(url, note) {
    const seen = [];
    const stop = (u) => u.startsWith(REDIRECT_URI);
    let page = await this.browser.navigate(url, { stop });
    for (let i = 0; i < 6 && !page.stoppedAt; i++) {
      check(page.status === 200, `HTTP ${page.status} at ${new URL(page.url).pathname}: ${clip(page.html)}`);
      if (page.url.startsWith(ISSUER) && page.html.includes('name="decision"')) {
        seen.push('consent');
        page = await this.browser.submit(page, { button: { decision: 'allow' }, stop });
      } else if (page.url.startsWith(CORP) || page.url.startsWith(CRM)) {
        seen.push(`${page.url.startsWith(CORP) ? 'corp' : 'crm'} login`);
        page = await this.browser.submit(page, { fields: { account: this.upstreamAccount ?? this.name }, stop });
      } else {
        throw new CheckFailed(`unexpected page ${page.url}: ${clip(page.html)}`);
      }
    }
    check(page.stoppedAt, `never reached the redirect URI (last: HTTP ${page.status} ${page.url})`);
    const cb = new URL(page.stoppedAt);
    check(cb.searchParams.get('iss') === ISSUER, `iss ${cb.searchParams.get('iss')} ≠ ${ISSUER}`);
    check(cb.searchParams.get('code'), `no code: ${cb.search}`);
    note?.(`browser: ${seen.join(' → ') || 'no page'} → redirect URI`);
    return cb.searchParams.get('code');
  }

  // connect: 401 → discovery → DCR → authorize in the browser → finishAuth → connect again.
  async signIn(note) {
    this.client = this.newClient();
    let t = this.transport();
    try {
      await this.client.connect(t);
      throw new CheckFailed('connected without signing in');
    } catch (e) {
      if (!(e instanceof UnauthorizedError)) throw e;
    }
    check(this.provider.authUrl, 'the SDK did not start an authorization');
    check(this.provider.authUrl.href.startsWith(`${ISSUER}/authorize`), `authorization at ${this.provider.authUrl.origin}`);
    const code = await this.authorizeInBrowser(this.provider.authUrl.href, note);
    await t.finishAuth(code);
    this.provider.authUrl = undefined;
    t = this.transport();
    await this.client.connect(t);
    this.t = t;
  }

  async tools() {
    return (await this.client.listTools()).tools.map((x) => x.name).sort();
  }

  async call(name, args = {}) {
    return this.client.callTool({ name, arguments: args });
  }
}

const text = (result) => (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
const json = (result) => result.structuredContent ?? JSON.parse(text(result));
async function apiRequests(api) {
  return (await fetch(`${api}/test/requests`)).json();
}
async function until(what, cond, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new CheckFailed(`${what}: not within ${ms} ms`);
}

const alice = new User('alice');
const bob = new User('bob');
let code = 0;
try {
  await step('alice signs in: 401 → metadata → DCR → consent at auth-service → corp login → code → token', async (note) => {
    await alice.signIn(note);
  });
  await step('alice tools/list: corp tools, connect_crm instead of the crm tools', async (note) => {
    const names = await alice.tools();
    note(names.join(', '));
    check(names.includes('corp_profile') && names.includes('whoami'), 'corp_profile or whoami missing');
    check(names.includes('connect_crm'), 'connect_crm missing');
    check(!names.includes('crm_record'), 'crm_record listed before crm is connected');
  });
  let aliceMcpToken;
  await step("alice calls corp_profile: the corp API gets alice's corp token, never an MCP token", async (note) => {
    const before = (await apiRequests(API1)).length;
    const r = await alice.call('corp_profile');
    check(!r.isError, `tool error: ${clip(text(r))}`);
    check(json(r).sub === 'alice', `profile ${clip(json(r))}`);
    const seen = (await apiRequests(API1)).slice(before);
    aliceMcpToken = alice.provider.tokens().access_token;
    check(seen.length === 1 && seen[0].accepted && seen[0].owner === 'alice', `API saw ${clip(seen)}`);
    check(seen[0].token_sha256 !== sha256(aliceMcpToken), 'the MCP token reached the upstream API');
    note(`upstream sub ${json(r).sub}`);
  });
  await step('bob signs in through corp as himself', async (note) => {
    await bob.signIn(note);
  });
  await step("bob calls corp_profile: his own upstream token, not alice's", async () => {
    const before = (await apiRequests(API1)).length;
    const r = await bob.call('corp_profile');
    check(!r.isError && json(r).sub === 'bob', `bob got ${clip(text(r))}`);
    const all = await apiRequests(API1);
    const bobs = all.slice(before);
    const alices = all.filter((e) => e.owner === 'alice');
    check(bobs.length === 1 && bobs[0].owner === 'bob', `API saw ${clip(bobs)}`);
    check(!alices.some((a) => a.token_sha256 === bobs[0].token_sha256), 'alice and bob used the same upstream token');
    check(bobs[0].token_sha256 !== sha256(bob.provider.tokens().access_token), 'the MCP token reached the upstream API');
  });
  await step('alice calls corp_create_item (needs mcp:tools.write): 403 insufficient_scope naming every scope needed → re-authorization with the wider scope', async (note) => {
    // The SDK (1.32.2) answers the 403 by refreshing its token, which cannot widen the scope
    // (RFC 6749 §6), and then gives up with "Server returned 403 after trying upscoping". The
    // application then does what the challenge asks: a new authorization with its scope.
    try {
      const r = await alice.call('corp_create_item', { title: 'first' });
      throw new CheckFailed(`no step-up: ${clip(r)}`);
    } catch (e) {
      if (!(e instanceof UnauthorizedError) && e?.code !== 403) throw e;
      note(e instanceof UnauthorizedError ? 'the SDK started the authorization' : `SDK: ${e.message}`);
    }
    const challenge = alice.last403 ?? '';
    check(/error="insufficient_scope"/.test(challenge) && /resource_metadata="/.test(challenge), `challenge: ${challenge}`);
    const wanted = (challenge.match(/scope="([^"]*)"/) ?? [])[1] ?? '';
    check(wanted.split(' ').includes('mcp:tools.write') && wanted.split(' ').includes('mcp:tools.read'), `challenge scope: ${wanted}`);
    if (!alice.provider.authUrl) {
      alice.provider.invalidateCredentials('tokens');
      const result = await auth(alice.provider, { serverUrl: MCP_URL, scope: wanted });
      check(result === 'REDIRECT', `auth() answered ${result}`);
    }
    const scope = alice.provider.authUrl.searchParams.get('scope') ?? '';
    check(scope.split(' ').includes('mcp:tools.write') && scope.split(' ').includes('mcp:tools.read'), `scope asked: ${scope}`);
    const code = await alice.authorizeInBrowser(alice.provider.authUrl.href, note);
    await alice.t.finishAuth(code);
    alice.provider.authUrl = undefined;
    note(`scope granted: ${alice.provider.tokens().scope}`);
  });
  await step('after step-up, corp_create_item runs as alice', async () => {
    alice.client = alice.newClient();
    alice.t = alice.transport();
    await alice.client.connect(alice.t);
    const r = await alice.call('corp_create_item', { title: 'first' });
    check(!r.isError, `tool error: ${clip(text(r))}`);
    const v = json(r);
    check(v.owner === 'alice' && v.created?.title === 'first', `created ${clip(v)}`);
  });
  await step('a connector with a missing required argument → a tool error, not a crash', async () => {
    const r = await alice.call('corp_create_item', {});
    check(r.isError, `expected isError: ${clip(r)}`);
  });
  let connectUrl;
  await step('alice calls connect_crm: a connect URL on auth-service', async (note) => {
    const r = await alice.call('connect_crm');
    check(!r.isError, `tool error: ${clip(text(r))}`);
    const m = text(r).match(/https?:\/\/[^\s"'<>)]+\/connect\/[A-Za-z0-9_-]+/);
    check(m && m[0].startsWith(`${ISSUER}/connect/`), `no connect URL in ${clip(text(r))}`);
    connectUrl = m[0];
    note('URL on the issuer');
  });
  await step('bob cannot use alice\'s connect link (his browser is signed in as bob)', async (note) => {
    const page = await bob.browser.navigate(connectUrl, { stop: (u) => u.startsWith(CRM) });
    check(!page.stoppedAt && page.status === 403, `bob's browser got HTTP ${page.status}${page.stoppedAt ? ' and a redirect to crm' : ''}`);
    note('403');
  });
  await step('alice connects crm in her browser; mcp-service sends notifications/tools/list_changed', async (note) => {
    // bob's browser claimed the link above (first browser wins), so alice asks for a new one.
    const r = await alice.call('connect_crm');
    connectUrl = text(r).match(/https?:\/\/[^\s"'<>)]+\/connect\/[A-Za-z0-9_-]+/)[0];
    const before = alice.listChanged;
    let page = await alice.browser.navigate(connectUrl);
    check(page.status === 200 && page.html.includes('value="confirm"'), `confirmation page: HTTP ${page.status} ${clip(page.html)}`);
    alice.upstreamAccount = 'alice-crm';
    page = await alice.browser.submit(page, { button: { step: 'confirm' } });
    for (let i = 0; i < 3 && page.url.startsWith(CRM); i++) {
      page = await alice.browser.submit(page, { fields: { account: 'alice-crm' } });
    }
    alice.upstreamAccount = undefined;
    check(page.status === 200 && page.url.startsWith(ISSUER), `after crm: HTTP ${page.status} at ${page.url}: ${clip(page.html)}`);
    note(`final page: "${(page.html.match(/<h1[^>]*>([\s\S]*?)<\/h1>/) ?? [])[1] ?? '?'}"`);
    await until('list_changed notification', () => alice.listChanged > before);
  });
  await step('alice tools/list now has crm_record and no connect_crm', async (note) => {
    const names = await alice.tools();
    note(names.join(', '));
    check(names.includes('crm_record') && !names.includes('connect_crm'), 'crm tools not listed');
  });
  await step("alice calls crm_record: the crm API gets alice's crm token; path and query arguments encoded", async () => {
    const r = await alice.call('crm_record', { id: 'A 1/2', q: 'x&y' });
    check(!r.isError, `tool error: ${clip(text(r))}`);
    const v = json(r);
    check(v.id === 'A 1/2' && v.q === 'x&y' && v.owner === 'alice-crm', `record ${clip(v)}`);
  });
  await step('bob still sees connect_crm, and crm_record refuses him with a connect hint', async () => {
    const names = await bob.tools();
    check(names.includes('connect_crm') && !names.includes('crm_record'), `bob: ${names.join(', ')}`);
    const r = await bob.call('crm_record', { id: '1' });
    check(r.isError && /connect/i.test(text(r)), `bob's call: ${clip(r)}`);
    const crm = await apiRequests(API2);
    check(crm.every((e) => e.owner !== 'bob'), 'bob reached the crm API');
  });
  await step('alice disconnects crm: list_changed, connect_crm is back, crm revoked the tokens', async () => {
    const before = alice.listChanged;
    const r = await alice.call('disconnect_crm');
    check(!r.isError, `tool error: ${clip(text(r))}`);
    await until('list_changed notification', () => alice.listChanged > before);
    const names = await alice.tools();
    check(names.includes('connect_crm') && !names.includes('crm_record'), `after disconnect: ${names.join(', ')}`);
    const issued = await (await fetch(`${CRM}/test/issued`)).json();
    const access = issued.filter((t) => t.label.includes('access_token'));
    check(access.length > 0, 'crm issued no access token');
    for (const t of access) {
      const res = await fetch(`${API2}/api/profile`, { headers: { authorization: `Bearer ${t.value}` } });
      check(res.status === 401, `a crm access token still works after disconnect (HTTP ${res.status})`);
    }
  });
  await step('whoami never shows a token', async () => {
    const r = await alice.call('whoami');
    const s = JSON.stringify(r);
    for (const t of secrets.keys()) check(!s.includes(t), 'whoami shows a token');
  });
} catch (e) {
  if (e.message !== 'stop') {
    failed++;
    console.log(`FAIL ${redact(String(e?.stack ?? e))}`);
  }
  code = 1;
}
for (const u of [alice, bob]) await u.client?.close().catch(() => {});
console.log(`as-the-user: ${passed} passed, ${failed} failed`);
process.exit(code || (failed ? 1 : 0));
