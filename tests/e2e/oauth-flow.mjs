#!/usr/bin/env node
// End-to-end OAuth 2.1 flow against a running auth-service, driven by oauth4webapi (a certified
// OAuth client library), so that the server is judged by a client nobody here wrote.
//
//   ISSUER=http://127.0.0.1:8080 RESOURCE=http://127.0.0.1:8081/mcp node tests/e2e/oauth-flow.mjs
//
// auth-service must run in dev login mode: GET /authorize with valid parameters answers 302
// straight to redirect_uri?code=…&state=…&iss=… (no login page, auto-consent). Introspection of
// the public client's tokens needs a configured introspection client (RFC 7662 §4: a registered
// client sees only its own tokens): INTROSPECT_CLIENT_ID / INTROSPECT_CLIENT_SECRET, as
// scripts/e2e.sh configures it.
// See README.md in this folder. Exit status: 0 when every step passed, 1 otherwise.
import * as oauth from 'oauth4webapi';
import { isDeepStrictEqual } from 'node:util';
import { exchange, exchangeConfig, ACCESS_TOKEN_TYPE, GRANT as EXCHANGE_GRANT } from './token-exchange.mjs';

const ISSUER = process.env.ISSUER ?? 'http://127.0.0.1:8080';
const RESOURCE = process.env.RESOURCE ?? 'http://127.0.0.1:8081/mcp';
const SCOPE = process.env.SCOPE ?? ''; // empty: no scope parameter (the server's default)
// Nothing has to listen here: the script reads the 302 Location itself.
const REDIRECT_URI = process.env.REDIRECT_URI ?? 'http://127.0.0.1:47613/callback';
const UNKNOWN_RESOURCE = 'http://127.0.0.1:9/unknown-resource/mcp';
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 10000);
const INTROSPECTOR = process.env.INTROSPECT_CLIENT_ID
  ? { client: { client_id: process.env.INTROSPECT_CLIENT_ID, token_endpoint_auth_method: 'client_secret_basic' }, secret: process.env.INTROSPECT_CLIENT_SECRET ?? '' }
  : undefined;

const http = () => ({
  ...(ISSUER.startsWith('http:') ? { [oauth.allowInsecureRequests]: true } : {}),
  signal: AbortSignal.timeout(TIMEOUT_MS),
});

// Plain assertions whose message is exactly what we wrote (node:assert appends diffs).
class CheckFailed extends Error {}
const assert = {
  ok(cond, msg) {
    if (!cond) throw new CheckFailed(msg ?? 'check failed');
  },
  equal(actual, expected, msg) {
    if (actual !== expected) throw new CheckFailed(msg ?? `got ${clip(actual)}, expected ${clip(expected)}`);
  },
  notEqual(actual, other, msg) {
    if (actual === other) throw new CheckFailed(msg ?? `got ${clip(actual)} twice`);
  },
  deepEqual(actual, expected, msg) {
    if (!isDeepStrictEqual(actual, expected)) throw new CheckFailed(msg ?? `got ${clip(actual)}, expected ${clip(expected)}`);
  },
  match(s, re, msg) {
    if (!re.test(s)) throw new CheckFailed(msg ?? `${clip(s)} does not match ${re}`);
  },
};

// --- tiny step runner --------------------------------------------------------------------------
let passed = 0;
let failed = 0;
let warnings = 0;
/** Advisory checks (interop SHOULDs): printed, counted apart, never fail the run. */
async function advise(name, fn) {
  try {
    const problem = await fn();
    if (problem) {
      warnings++;
      console.log(`warn ${name}: ${problem}`);
    } else {
      console.log(`ok   ${name} (advisory)`);
    }
  } catch (e) {
    warnings++;
    console.log(`warn ${name}: ${describe(e)}`);
  }
}
class StepFailed extends Error {}

function describe(e) {
  if (e instanceof oauth.ResponseBodyError) {
    return `HTTP ${e.status} error=${e.error}${e.error_description ? ` (${e.error_description})` : ''}`;
  }
  if (e instanceof oauth.AuthorizationResponseError) {
    return `authorization error=${e.error}${e.error_description ? ` (${e.error_description})` : ''}`;
  }
  let msg = e?.message ?? String(e);
  if (e?.name === 'TimeoutError') msg = `no answer within ${TIMEOUT_MS} ms`;
  if (e?.cause?.code === 'ECONNREFUSED' || e?.cause?.cause?.code === 'ECONNREFUSED') {
    msg = `connection refused (is auth-service running at ${ISSUER}?)`;
  }
  if (e?.code && String(e.code).startsWith('OAUTH_')) {
    const c = e.cause;
    const body = c?.body ?? (c instanceof Response ? `HTTP ${c.status}` : c);
    if (body !== undefined) msg += ` [${e.code}; ${clip(body)}]`;
    else msg += ` [${e.code}]`;
  }
  return msg.replace(/\s+/g, ' ');
}
function clip(v, n = 300) {
  let s;
  try {
    s = typeof v === 'string' ? v : JSON.stringify(v, (k, x) => (x instanceof URLSearchParams ? x.toString() : x));
  } catch {
    s = String(v);
  }
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** Runs one step; returns fn's value. Throws StepFailed so the caller's group stops. */
async function step(name, fn) {
  const notes = [];
  try {
    const value = await fn((s) => notes.push(s));
    passed++;
    console.log(`ok   ${name}${notes.length ? ` (${notes.join('; ')})` : ''}`);
    return value;
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${describe(e)}`);
    if (process.env.E2E_DEBUG && e?.stack) console.error(e.stack);
    throw new StepFailed();
  }
}

/** A group of dependent steps: the first failure skips the rest of the group. */
async function group(name, fn) {
  console.log(`== ${name}`);
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof StepFailed)) {
      failed++;
      console.log(`FAIL ${name}: unexpected error: ${describe(e)}`);
      if (e?.stack) console.error(e.stack);
    }
    console.log(`     (rest of "${name}" skipped)`);
  }
}

// --- helpers ----------------------------------------------------------------------------------
let as; // authorization server metadata
let publicClient; // { client_id, token_endpoint_auth_method: 'none' }
let confidential; // { client, secret }

function assertJsonContentType(res, what) {
  const ct = res.headers.get('content-type') ?? '';
  assert.ok(/^application\/json\b/i.test(ct), `${what}: Content-Type is "${ct}", expected application/json`);
}

/** Status, headers and the raw JSON body of a successful token response (RFC 6749 §5.1). */
async function checkTokenHttp(res) {
  if (res.status !== 200) return undefined; // the oauth4webapi processing reports the error body
  assertJsonContentType(res, 'token response');
  const cc = res.headers.get('cache-control') ?? '';
  assert.ok(/(^|,)\s*no-store\s*(,|$)/i.test(cc), `token response Cache-Control is "${cc}", expected no-store (RFC 6749 §5.1)`);
  return res.clone().json();
}

function checkTokenBody(raw, tok, { wantRefresh = true } = {}) {
  assert.equal(typeof raw.access_token, 'string', 'access_token missing');
  assert.ok(raw.access_token.length > 0, 'access_token empty');
  assert.equal(raw.token_type, 'Bearer', `token_type is ${JSON.stringify(raw.token_type)}, expected "Bearer"`);
  assert.ok(Number.isInteger(raw.expires_in) && raw.expires_in > 0, `expires_in is ${JSON.stringify(raw.expires_in)}, expected a positive integer`);
  if (raw.scope !== undefined) assert.equal(typeof raw.scope, 'string', 'scope must be a string');
  if (wantRefresh) assert.equal(typeof raw.refresh_token, 'string', 'refresh_token missing (grant_types included refresh_token)');
  assert.equal(tok.access_token, raw.access_token);
}

function audOf(claims) {
  return Array.isArray(claims.aud) ? claims.aud : claims.aud === undefined ? [] : [claims.aud];
}

/** GET /authorize with redirect:'manual'. Returns { res, location } without judging. */
async function rawAuthorize(params) {
  const url = new URL(as.authorization_endpoint);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
  const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
  const loc = res.headers.get('location');
  return { res, location: loc ? new URL(loc, url) : undefined };
}

/** A full, valid authorization request for `client`; returns the validated callback parameters. */
async function authorize(client, note, { resource = RESOURCE, withState = true, extra = {} } = {}) {
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = withState ? oauth.generateRandomState() : undefined;
  const { res, location } = await rawAuthorize({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: REDIRECT_URI,
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    resource,
    scope: SCOPE || undefined,
    ...extra,
  });
  assert.ok(res.status === 302 || res.status === 303, `GET /authorize answered ${res.status}, expected 302 to the redirect_uri${res.status < 300 ? ' (a login/consent page? dev login mode must be on)' : ''}`);
  assert.ok(location, 'redirect without a Location header');
  assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI, `redirected to ${location.href}, expected the registered redirect_uri`);
  for (const p of ['code', 'state', 'iss']) {
    assert.ok(location.searchParams.getAll(p).length <= 1, `parameter ${p} appears more than once in ${location.search}`);
  }
  assert.ok(location.searchParams.has('iss'), 'authorization response has no iss (RFC 9207; metadata advertises it)');
  // oauth4webapi checks iss === metadata issuer, state, and that there is no error.
  const params = oauth.validateAuthResponse(as, client, location, state ?? oauth.expectNoState);
  assert.ok(params.get('code'), 'code missing or empty');
  note?.(`${res.status} with code, ${state ? 'state, ' : 'no state, '}iss`);
  return { params, codeVerifier, state };
}

async function exchangeCode(client, auth, { codeVerifier = auth.codeVerifier, redirectUri = REDIRECT_URI } = {}) {
  const res = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), auth.params, redirectUri, codeVerifier, {
    additionalParameters: { resource: RESOURCE },
    ...http(),
  });
  const raw = await checkTokenHttp(res);
  const tok = await oauth.processAuthorizationCodeResponse(as, client, res);
  return { raw, tok };
}

async function refresh(client, refreshToken) {
  const res = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, {
    additionalParameters: { resource: RESOURCE },
    ...http(),
  });
  const raw = await checkTokenHttp(res);
  const tok = await oauth.processRefreshTokenResponse(as, client, res);
  return { raw, tok };
}

/** Expects the promise (a process*Response call) to reject with an OAuth error body. */
async function expectOAuthError(promise, wantError, wantStatus = 400) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `request succeeded, expected ${wantStatus} ${wantError}`);
  if (!(err instanceof oauth.ResponseBodyError)) throw err;
  assert.equal(err.error, wantError, `got error=${err.error} (HTTP ${err.status}), expected ${wantError}`);
  assert.equal(err.status, wantStatus, `got HTTP ${err.status} error=${err.error}, expected HTTP ${wantStatus}`);
  return err;
}

/** Introspects as the configured introspection client, or as `who` (the registered confidential client). */
async function introspect(token, who = INTROSPECTOR ?? confidential) {
  const res = await oauth.introspectionRequest(as, who.client, oauth.ClientSecretBasic(who.secret), token, http());
  if (res.status === 200) assertJsonContentType(res, 'introspection response');
  return oauth.processIntrospectionResponse(as, who.client, res);
}

/** An authorization request that must not yield a code: 4xx, or a 302 carrying `error`. */
async function expectAuthorizeRefused(params, wantError, note) {
  const { res, location } = await rawAuthorize(params);
  if (res.status >= 400 && res.status < 500) {
    assert.ok(!location, `${res.status} with a Location header`);
    note(`HTTP ${res.status}, no redirect`);
    return;
  }
  assert.ok(res.status === 302 || res.status === 303, `GET /authorize answered ${res.status}, expected a 4xx or an error redirect`);
  assert.ok(location, 'redirect without a Location header');
  assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI, `error redirect went to ${location.href}`);
  assert.ok(!location.searchParams.has('code'), `a code was issued: ${location.search}`);
  assert.equal(location.searchParams.get('error'), wantError, `error redirect has error=${location.searchParams.get('error')}, expected ${wantError}`);
  assert.equal(location.searchParams.get('iss'), as.issuer, 'error redirect lacks iss=<issuer> (RFC 9207 §2: error responses too)');
  if (params.state) assert.equal(location.searchParams.get('state'), params.state, 'error redirect does not echo state');
  note(`${res.status} error=${wantError} with iss`);
}

async function freshAuthParams() {
  const v = oauth.generateRandomCodeVerifier();
  return {
    response_type: 'code',
    client_id: publicClient.client_id,
    redirect_uri: REDIRECT_URI,
    code_challenge: await oauth.calculatePKCECodeChallenge(v),
    code_challenge_method: 'S256',
    state: oauth.generateRandomState(),
    resource: RESOURCE,
    scope: SCOPE || undefined,
  };
}

// --- the flow ----------------------------------------------------------------------------------
console.log(`e2e: issuer ${ISSUER}, resource ${RESOURCE}, redirect_uri ${REDIRECT_URI}`);

await group('discovery and registration', async () => {
  await step('discovery: GET /.well-known/oauth-authorization-server (RFC 8414)', async (note) => {
    const issuer = new URL(ISSUER);
    const res = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...http() });
    assert.equal(res.status, 200, `HTTP ${res.status}`);
    assertJsonContentType(res, 'metadata');
    as = await oauth.processDiscoveryResponse(issuer, res);
    assert.equal(as.issuer, ISSUER, `issuer "${as.issuer}" is not byte-identical to ISSUER "${ISSUER}"`);
    for (const ep of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'introspection_endpoint', 'revocation_endpoint']) {
      assert.equal(typeof as[ep], 'string', `${ep} missing`);
      assert.ok(URL.canParse(as[ep]), `${ep} is not an absolute URL: ${as[ep]}`);
    }
    assert.ok(as.response_types_supported?.includes('code'), 'response_types_supported lacks "code"');
    assert.ok(as.code_challenge_methods_supported?.includes('S256'), 'code_challenge_methods_supported lacks "S256"');
    assert.ok(!as.code_challenge_methods_supported.includes('plain'), 'code_challenge_methods_supported offers "plain"');
    for (const g of ['authorization_code', 'refresh_token']) {
      assert.ok(as.grant_types_supported?.includes(g), `grant_types_supported lacks "${g}"`);
    }
    for (const m of ['none', 'client_secret_basic']) {
      assert.ok(as.token_endpoint_auth_methods_supported?.includes(m), `token_endpoint_auth_methods_supported lacks "${m}"`);
    }
    assert.equal(as.authorization_response_iss_parameter_supported, true, 'authorization_response_iss_parameter_supported is not true');
    note(`issuer ${as.issuer}`);
  });

  await step('register a public client: POST /register, token_endpoint_auth_method none (RFC 7591)', async (note) => {
    const res = await oauth.dynamicClientRegistrationRequest(as, {
      client_name: 'mcpauth e2e (public)',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native', // sent by the Python SDK; must be ignored or accepted
    }, http());
    assert.equal(res.status, 201, `HTTP ${res.status}, expected 201`);
    assertJsonContentType(res, 'registration response');
    const reg = await oauth.processDynamicClientRegistrationResponse(res);
    assert.deepEqual(reg.redirect_uris, [REDIRECT_URI], 'redirect_uris not echoed');
    assert.equal(reg.token_endpoint_auth_method, 'none', `token_endpoint_auth_method is ${reg.token_endpoint_auth_method}`);
    assert.equal(reg.client_secret, undefined, 'a client_secret was issued to a public client');
    for (const f of ['client_id_issued_at', 'client_secret_expires_at']) {
      if (reg[f] !== undefined) assert.equal(typeof reg[f], 'number', `${f} is not a number`);
    }
    publicClient = { client_id: reg.client_id, token_endpoint_auth_method: 'none' };
    note(`client_id ${reg.client_id}`);
  });

  await step('register a confidential client: POST /register, client_secret_basic', async (note) => {
    const res = await oauth.dynamicClientRegistrationRequest(as, {
      client_name: 'mcpauth e2e (confidential, introspection)',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }, http());
    assert.equal(res.status, 201, `HTTP ${res.status}, expected 201`);
    const reg = await oauth.processDynamicClientRegistrationResponse(res);
    assert.equal(reg.token_endpoint_auth_method, 'client_secret_basic', `token_endpoint_auth_method is ${reg.token_endpoint_auth_method}`);
    assert.equal(typeof reg.client_secret, 'string', 'no client_secret issued');
    assert.equal(typeof reg.client_secret_expires_at, 'number', 'client_secret_expires_at missing (RFC 7591 §3.2.1: REQUIRED with a secret)');
    confidential = { client: { client_id: reg.client_id, token_endpoint_auth_method: 'client_secret_basic' }, secret: reg.client_secret };
    note(`client_id ${reg.client_id}`);
  });
});

if (as && publicClient && confidential) {
  await group('authorization code grant, refresh rotation, introspection, revocation', async () => {
    const auth = await step('authorize: GET /authorize with PKCE S256, state, resource → 302 to redirect_uri', (note) =>
      authorize(publicClient, note));

    const t1 = await step('token: POST /token authorization_code with code_verifier and resource', async (note) => {
      const { raw, tok } = await exchangeCode(publicClient, auth);
      checkTokenBody(raw, tok);
      note(`200, no-store, Bearer, expires_in ${raw.expires_in}${raw.scope ? `, scope "${raw.scope}"` : ''}`);
      return tok;
    });

    const exchanger = exchangeConfig();
    if (exchanger) {
      await step('token exchange (RFC 8693) with oauth4webapi genericTokenEndpointRequest: same sub, act, target audience, no refresh token', async (note) => {
        assert.ok(as.grant_types_supported?.includes(EXCHANGE_GRANT), 'metadata does not list the token-exchange grant');
        const x = await exchange(as, exchanger, t1.access_token, http());
        assert.equal(x.issued_token_type, ACCESS_TOKEN_TYPE, `issued_token_type ${x.issued_token_type}`);
        assert.equal(x.token_type, 'bearer');
        assert.equal(x.refresh_token, undefined, 'an exchanged token came with a refresh token');
        const [user, got] = [await introspect(t1.access_token), await introspect(x.access_token)];
        assert.equal(got.active, true, 'exchanged token inactive');
        assert.equal(got.sub, user.sub, 'sub changed');
        assert.equal(got.aud, exchanger.target, `aud ${got.aud}`);
        assert.equal(got.act?.sub, exchanger.client.client_id, `act ${JSON.stringify(got.act)}`);
        assert.ok(got.exp <= user.exp, 'outlives the subject token');
        // The exchanged token is no subject token for its own audience again: no policy maps it.
        await expectOAuthError(exchange(as, exchanger, x.access_token, http()), 'invalid_target');
        note(`scope "${x.scope}", expires_in ${x.expires_in}, act ${JSON.stringify(got.act)}`);
      });
    }

    const t2 = await step('refresh: POST /token refresh_token rotates the refresh token', async (note) => {
      const { raw, tok } = await refresh(publicClient, t1.refresh_token);
      checkTokenBody(raw, tok);
      assert.notEqual(tok.refresh_token, t1.refresh_token, 'refresh token was not rotated (OAuth 2.1 §4.3.1: public clients)');
      assert.notEqual(tok.access_token, t1.access_token, 'same access token returned');
      note('new refresh token and new access token');
      return tok;
    });

    const t3 = await step('refresh again with the new refresh token (its first use)', async (note) => {
      const { raw, tok } = await refresh(publicClient, t2.refresh_token);
      checkTokenBody(raw, tok);
      assert.notEqual(tok.refresh_token, t2.refresh_token, 'refresh token was not rotated');
      note('rotated again');
      return tok;
    });

    await step('introspect: POST /introspect without client authentication is refused', async (note) => {
      const res = await fetch(as.introspection_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token: t3.access_token }),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      const text = await res.text();
      assert.ok(res.status === 401 || res.status === 400, `HTTP ${res.status} ${clip(text, 200)}, expected 401 (RFC 7662 §2.1 requires authorization)`);
      assert.ok(!/"active"\s*:\s*true/.test(text), 'token details disclosed to an unauthenticated caller');
      note(`HTTP ${res.status}`);
    });

    await step('introspect: POST /introspect (client_secret_basic) → active, aud = RESOURCE (RFC 7662)', async (note) => {
      const claims = await introspect(t3.access_token);
      assert.equal(claims.active, true, `active is ${claims.active}`);
      assert.deepEqual(audOf(claims), [RESOURCE], `aud is ${JSON.stringify(claims.aud)}, expected "${RESOURCE}"`);
      if (claims.client_id !== undefined) assert.equal(claims.client_id, publicClient.client_id, 'client_id is not the public client');
      if (claims.iss !== undefined) assert.equal(claims.iss, ISSUER, 'iss is not the issuer');
      if (claims.exp !== undefined) assert.ok(claims.exp > Date.now() / 1000, `exp ${claims.exp} is in the past`);
      if (claims.token_type !== undefined) assert.match(String(claims.token_type), /^bearer$/i, `token_type is ${claims.token_type}`);
      note(`fields: ${Object.keys(claims).sort().join(', ')}`);
    });

    await step('introspect: a registered client asking about another client\'s token → {"active": false} (RFC 7662 §4)', async () => {
      for (const t of [t3.access_token, t3.refresh_token]) {
        const claims = await introspect(t, confidential);
        assert.deepEqual(claims, { active: false }, `a registered client was told ${clip(claims)}`);
      }
    });

    await step('revoke: another client cannot revoke the token (RFC 7009 §2.1)', async (note) => {
      const res = await oauth.revocationRequest(as, confidential.client, oauth.ClientSecretBasic(confidential.secret), t3.access_token, {
        additionalParameters: { token_type_hint: 'access_token' },
        ...http(),
      });
      const text = await res.text();
      const claims = await introspect(t3.access_token);
      assert.equal(claims.active, true, 'the token was revoked by a client it was not issued to');
      note(`HTTP ${res.status}${res.status === 200 ? ' (silently ignored)' : ` ${clip(text, 120)}`}; token still active`);
    });

    await step('revoke: POST /revoke the access token by its client → 200 (RFC 7009)', async () => {
      const res = await oauth.revocationRequest(as, publicClient, oauth.None(), t3.access_token, {
        additionalParameters: { token_type_hint: 'access_token' },
        ...http(),
      });
      await oauth.processRevocationResponse(res);
    });

    await step('introspect the revoked token → {"active": false}', async () => {
      const claims = await introspect(t3.access_token);
      assert.deepEqual(claims, { active: false }, `got ${clip(claims)} (RFC 7662 §2.2: active false, SHOULD NOT include more)`);
    });
  });

  await group('refresh token reuse detection (separate grant)', async () => {
    const auth = await step('authorize + token for a second grant', async (note) => {
      const a = await authorize(publicClient);
      const { raw, tok } = await exchangeCode(publicClient, a);
      checkTokenBody(raw, tok);
      note('200');
      return tok;
    });
    const r1 = auth.refresh_token;
    const t2 = await step('refresh: rotate R1 → R2', async () => (await refresh(publicClient, r1)).tok);
    const t3 = await step('refresh: use R2 (→ R3), which ends R1\'s grace period', async () => (await refresh(publicClient, t2.refresh_token)).tok);
    await step('refresh with the rotated-out R1 → 400 invalid_grant', async () => {
      const res = await oauth.refreshTokenGrantRequest(as, publicClient, oauth.None(), r1, { additionalParameters: { resource: RESOURCE }, ...http() });
      await expectOAuthError(oauth.processRefreshTokenResponse(as, publicClient, res), 'invalid_grant');
    });
    await step('reuse revoked the family: the latest R3 → 400 invalid_grant', async (note) => {
      const res = await oauth.refreshTokenGrantRequest(as, publicClient, oauth.None(), t3.refresh_token, { additionalParameters: { resource: RESOURCE }, ...http() });
      await expectOAuthError(oauth.processRefreshTokenResponse(as, publicClient, res), 'invalid_grant');
      const claims = await introspect(t3.access_token);
      note(`R3's access token now active=${claims.active}`);
    });
  });

  await group('authorization code and PKCE misuse', async () => {
    await step('code replay: a used code → 400 invalid_grant', async () => {
      const a = await authorize(publicClient);
      await exchangeCode(publicClient, a);
      const res = await oauth.authorizationCodeGrantRequest(as, publicClient, oauth.None(), a.params, REDIRECT_URI, a.codeVerifier, {
        additionalParameters: { resource: RESOURCE },
        ...http(),
      });
      await expectOAuthError(oauth.processAuthorizationCodeResponse(as, publicClient, res), 'invalid_grant');
    });
    await step('wrong code_verifier → 400 invalid_grant', async () => {
      const a = await authorize(publicClient);
      await expectOAuthError(exchangeCode(publicClient, a, { codeVerifier: oauth.generateRandomCodeVerifier() }), 'invalid_grant');
    });
    await step('token request with a different redirect_uri → 400 invalid_grant', async () => {
      const a = await authorize(publicClient);
      await expectOAuthError(exchangeCode(publicClient, a, { redirectUri: REDIRECT_URI.replace(/\/callback$/, '/other') }), 'invalid_grant');
    });
    await step('authorize with an unregistered redirect_uri → error page, no redirect', async (note) => {
      const p = await freshAuthParams();
      const { res, location } = await rawAuthorize({ ...p, redirect_uri: 'http://127.0.0.1:47613/evil' });
      assert.ok(res.status >= 400 && res.status < 500, `HTTP ${res.status}${location ? ` to ${location.href}` : ''}, expected a 4xx error page`);
      assert.ok(!location, `redirected to ${location?.href}`);
      note(`HTTP ${res.status}`);
    });
    await step('authorize without code_challenge → no code (invalid_request)', async (note) => {
      const p = await freshAuthParams();
      delete p.code_challenge;
      delete p.code_challenge_method;
      await expectAuthorizeRefused(p, 'invalid_request', note);
    });
    await step('authorize with code_challenge_method=plain → no code (invalid_request)', async (note) => {
      const p = await freshAuthParams();
      p.code_challenge = oauth.generateRandomCodeVerifier();
      p.code_challenge_method = 'plain';
      await expectAuthorizeRefused(p, 'invalid_request', note);
    });
    await step('authorize with an unknown resource → no code (invalid_target, RFC 8707)', async (note) => {
      const p = await freshAuthParams();
      p.resource = UNKNOWN_RESOURCE;
      await expectAuthorizeRefused(p, 'invalid_target', note);
    });
  });
}

if (as && publicClient && confidential) {
  await group('interop: what the MCP SDK clients send', async () => {
    await step('authorize without state → code, no state in the response (state is optional)', (note) =>
      authorize(publicClient, note, { withState: false }));
    await step('authorize with prompt=consent → code (the TS SDK may add it)', (note) =>
      authorize(publicClient, note, { extra: { prompt: 'consent' } }));
    await step('authorize with the resource\'s scheme and host in upper case → code (RFC 8707 canonical form)', (note) => {
      const u = new URL(RESOURCE);
      const upper = `${u.protocol.slice(0, -1).toUpperCase()}://${u.host.toUpperCase()}${u.pathname}${u.search}`;
      return authorize(publicClient, note, { resource: upper });
    });
    await step('token with a wrong client secret (Basic) → 401 invalid_client + WWW-Authenticate (RFC 6749 §5.2)', async () => {
      const a = await authorize(publicClient);
      const client = { ...confidential.client };
      const res = await oauth.authorizationCodeGrantRequest(as, client, oauth.ClientSecretBasic('wrong-secret'), a.params, REDIRECT_URI, a.codeVerifier, {
        additionalParameters: { resource: RESOURCE },
        ...http(),
      });
      // Checked by hand: oauth4webapi turns any WWW-Authenticate into a challenge error.
      const body = await res.json().catch(() => undefined);
      assert.equal(res.status, 401, `HTTP ${res.status} ${clip(body)}, expected 401`);
      assert.equal(body?.error, 'invalid_client', `error is ${body?.error}, expected invalid_client`);
      assert.ok(res.headers.get('www-authenticate'), '401 without WWW-Authenticate (RFC 6749 §5.2: MUST when the client authenticated with the Authorization header)');
    });
    await step('register an http redirect_uri on a non-loopback host → 400 invalid_redirect_uri', async () => {
      const res = await oauth.dynamicClientRegistrationRequest(as, {
        redirect_uris: ['http://mcp-client.example/callback'],
        token_endpoint_auth_method: 'none',
      }, http());
      await expectOAuthError(oauth.processDynamicClientRegistrationResponse(res), 'invalid_redirect_uri');
    });
  });

  console.log('== advisory (warnings only): browser clients and OIDC discovery');
  const origin = 'http://localhost:6274'; // e.g. the MCP Inspector in a browser
  await advise('CORS: metadata answers a cross-origin GET with Access-Control-Allow-Origin', async () => {
    const res = await fetch(`${new URL(ISSUER).origin}/.well-known/oauth-authorization-server`, {
      headers: { origin, 'mcp-protocol-version': '2025-11-25' },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    await res.arrayBuffer();
    const acao = res.headers.get('access-control-allow-origin');
    return acao === '*' || acao === origin ? undefined : `HTTP ${res.status}, Access-Control-Allow-Origin ${acao ?? 'absent'} (spec E12: browser MCP clients cannot discover the AS)`;
  });
  for (const ep of ['registration_endpoint', 'token_endpoint']) {
    await advise(`CORS: preflight OPTIONS ${new URL(as[ep]).pathname} is allowed`, async () => {
      const res = await fetch(as[ep], {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      await res.arrayBuffer();
      const acao = res.headers.get('access-control-allow-origin');
      return res.ok && (acao === '*' || acao === origin) ? undefined : `HTTP ${res.status}, Access-Control-Allow-Origin ${acao ?? 'absent'}`;
    });
  }
  await advise('OIDC discovery: /.well-known/openid-configuration, if served, has the fields OIDC requires', async () => {
    const res = await fetch(`${new URL(ISSUER).origin}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (res.status !== 200) {
      await res.arrayBuffer();
      return undefined; // not served: fine (RFC 8414 alone is enough)
    }
    const doc = await res.json();
    const missing = ['jwks_uri', 'subject_types_supported', 'id_token_signing_alg_values_supported'].filter((f) => doc[f] === undefined);
    return missing.length ? `served, but lacks ${missing.join(', ')} (OpenID Connect Discovery 1.0 §3 REQUIRED; the TS SDK's schema rejects it)` : undefined;
  });
}

if (warnings) console.log(`e2e: ${warnings} advisory warning(s), not counted as failures`);
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
