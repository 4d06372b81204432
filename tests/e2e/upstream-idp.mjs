// An upstream OpenID provider for mcpauth's upstream login, connect flow and token-vault tests:
// panva's oidc-provider (a certified OpenID provider) with a confidential client that uses the
// authorization code flow with PKCE and gets refresh tokens.
//
//   node upstream-idp.mjs <port> [--redirect-uri <uri>]... [--access-ttl <secs>]
//                                [--auto-login <account>]
//
// Prints one line `ready <issuer>` on stdout once it listens (issuer http://127.0.0.1:<port>).
//
// Client (client_secret_basic): mcpauth / mcpauth-secret, grant types authorization_code and
// refresh_token, PKCE required, redirect URIs exactly those given with --redirect-uri. Every
// authorization code grant issues a refresh token. Access tokens live --access-ttl seconds
// (default 3600) and are opaque; userinfo, revocation (RFC 7009) and introspection are enabled.
//
// Scopes: openid, offline_access, profile, email, and `servicenow`, which adds to userinfo a
// ServiceNow-like nested claim {"result": {"sys_id": "sys-<account>", "user_name": "<account>"}}
// (for `kind = "oauth2"` providers with subject_claim = "result.sys_id").
//
// Login, without any browser: an authorization request leads to GET /interaction/<uid>, which
// answers a small HTML form (or, with --auto-login, logs that account in at once). POST
// /interaction/<uid>/login with `account=<name>` logs <name> in (any [a-z0-9_-]{1,32} is a valid
// account, the same name is the same `sub` every time); with `deny=1` it answers the client with
// error=access_denied. Consent is granted automatically.
//
// Test routes:
//   GET  /test/counters   {"token_requests": {"authorization_code": n, "refresh_token": n, ...},
//                          "token_errors": {...}} — calls of the token endpoint by grant type
//   POST /test/tamper?id_token=<mode>  from now on, ID tokens in token responses are re-signed
//                          with a wrong `nonce`, `iss` or `aud`, or get a broken signature
//                          (`sig`); mode `none` stops tampering
//   POST /test/reset      counters to zero, tampering off
//   GET  /test/issued     every access, refresh and ID token the token endpoint issued, as
//                          [{"label", "value"}] — for the end-to-end plaintext scans only
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import { SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import Provider from 'oidc-provider';

function usage(msg) {
  if (msg) console.error(msg);
  console.error('usage: node upstream-idp.mjs <port> [--redirect-uri <uri>]... [--access-ttl <secs>] [--auto-login <account>]');
  process.exit(2);
}

const args = process.argv.slice(2);
const port = Number(args.shift());
if (!port) usage();
const redirectUris = [];
let accessTtl = 3600;
let autoLogin;
while (args.length) {
  const flag = args.shift();
  const value = args.shift();
  if (value === undefined) usage(`${flag} needs a value`);
  if (flag === '--redirect-uri') redirectUris.push(value);
  else if (flag === '--access-ttl') accessTtl = Number(value);
  else if (flag === '--auto-login') autoLogin = value;
  else usage(`unknown flag ${flag}`);
}
if (!(accessTtl > 0)) usage('--access-ttl must be a positive number of seconds');
if (redirectUris.length === 0) redirectUris.push('http://127.0.0.1:8080/upstream/callback');
const issuer = `http://127.0.0.1:${port}`;
const ACCOUNT = /^[a-z0-9_-]{1,32}$/;

const rsa = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' };
const signingKey = await importJWK(rsa, 'RS256');

const counters = { token_requests: {}, token_errors: {} };
const issued = [];
let tamper = 'none';

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'mcpauth',
      client_secret: 'mcpauth-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: redirectUris,
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [rsa] },
  cookies: { keys: ['upstream-idp-test-cookie-key'] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    servicenow: ['result'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'servicenow'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: accessTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 86400,
    RefreshToken: 86400,
  },
  findAccount: (_ctx, id) => {
    if (!ACCOUNT.test(id)) return undefined;
    return {
      accountId: id,
      claims: () => ({
        sub: id,
        name: `User ${id}`,
        preferred_username: id,
        email: `${id}@example.test`,
        email_verified: true,
        result: { sys_id: `sys-${id}`, user_name: id },
      }),
    };
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
});

// Counts token-endpoint calls and applies the requested ID token tampering.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.method !== 'POST' || ctx.path !== '/token') return;
  const grant = String(ctx.oidc?.params?.grant_type ?? 'unknown');
  const bucket = ctx.status >= 400 ? counters.token_errors : counters.token_requests;
  bucket[grant] = (bucket[grant] ?? 0) + 1;
  if (ctx.status < 400 && ctx.body) {
    for (const kind of ['access_token', 'refresh_token', 'id_token']) {
      const value = ctx.body[kind];
      if (typeof value === 'string') issued.push({ label: `upstream ${port} ${kind} #${issued.length + 1}`, value });
    }
  }
  if (tamper === 'none' || ctx.status >= 400 || !ctx.body?.id_token) return;
  const idToken = ctx.body.id_token;
  if (tamper === 'sig') {
    const last = idToken.at(-2) === 'A' ? 'B' : 'A';
    ctx.body = { ...ctx.body, id_token: `${idToken.slice(0, -2)}${last}${idToken.at(-1)}` };
    return;
  }
  const claims = decodeJwt(idToken);
  if (tamper === 'nonce') claims.nonce = 'not-the-nonce-that-was-sent';
  if (tamper === 'iss') claims.iss = 'https://attacker.example';
  if (tamper === 'aud') claims.aud = 'someone-else';
  const header = decodeProtectedHeader(idToken);
  const resigned = await new SignJWT(claims).setProtectedHeader(header).sign(signingKey);
  ctx.body = { ...ctx.body, id_token: resigned };
});

function html(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><body>${body}</body></html>`);
}

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function formBody(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return new URLSearchParams(raw);
}

// Grants whatever the client asked for (consent is not what these tests are about).
async function autoConsent(req, res, details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function interaction(req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return html(res, 400, '<p>interaction mismatch</p>');
  if (req.method === 'GET' && details.prompt.name === 'login') {
    if (autoLogin) {
      return provider.interactionFinished(req, res, { login: { accountId: autoLogin } }, { mergeWithLastSubmission: false });
    }
    return html(res, 200, `<h1>Upstream sign-in</h1><form method="post" action="/interaction/${uid}/login">`
      + '<input name="account" autofocus><button type="submit">Sign in</button>'
      + '<button type="submit" name="deny" value="1">Deny</button></form>');
  }
  if (req.method === 'GET' && details.prompt.name === 'consent') return autoConsent(req, res, details);
  if (req.method === 'POST' && action === 'login') {
    const form = await formBody(req);
    if (form.get('deny')) {
      return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user denied the request' }, { mergeWithLastSubmission: false });
    }
    const account = form.get('account') ?? '';
    if (!ACCOUNT.test(account)) return html(res, 400, '<p>unknown account</p>');
    return provider.interactionFinished(req, res, { login: { accountId: account } }, { mergeWithLastSubmission: false });
  }
  return html(res, 400, `<p>unexpected ${req.method} for prompt ${details.prompt.name}</p>`);
}

const oidc = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname.startsWith('/interaction/')) return await interaction(req, res, url);
    if (url.pathname === '/test/counters' && req.method === 'GET') return json(res, 200, counters);
    if (url.pathname === '/test/issued' && req.method === 'GET') return json(res, 200, issued);
    if (url.pathname === '/test/reset' && req.method === 'POST') {
      counters.token_requests = {};
      counters.token_errors = {};
      tamper = 'none';
      return json(res, 200, { ok: true });
    }
    if (url.pathname === '/test/tamper' && req.method === 'POST') {
      const mode = url.searchParams.get('id_token') ?? 'none';
      if (!['none', 'nonce', 'iss', 'aud', 'sig'].includes(mode)) return json(res, 400, { error: 'unknown mode' });
      tamper = mode;
      return json(res, 200, { id_token: tamper });
    }
    return oidc(req, res);
  } catch (e) {
    console.error(e);
    if (!res.headersSent) html(res, 500, '<p>error</p>');
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Exit with the process that started us (it holds our stdin).
process.stdin.on('end', stop);
process.stdin.resume();
