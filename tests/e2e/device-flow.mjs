// RFC 8628 device authorization end to end, "as the user": oauth4webapi (a certified client
// library nobody here wrote) is the device — deviceAuthorizationRequest,
// processDeviceAuthorizationResponse, deviceCodeGrantRequest, processDeviceCodeResponse — and a
// headless browser is the user, who opens verification_uri_complete, confirms the code, consents
// and signs in at the upstream identity provider (oidc-provider, "corp") exactly as in
// as-the-user.mjs. Checks authorization_pending, slow_down, approval, single redemption, the
// refresh token, and a denial (access_denied). Run by scripts/e2e-as-user.sh after as-the-user.mjs;
// the device codes and every token go to SECRETS_FILE for the plaintext scan.
//
//   ISSUER          auth-service (login delegated to corp)
//   CORP            the corp identity provider
//   DEVICE_CLIENT   a configured public client with the device_code grant
//   SECRETS_FILE    where the tokens seen are listed (label<TAB>value)

import { appendFileSync } from 'node:fs';
import * as oauth from 'oauth4webapi';
import { Browser } from './lib/browser.mjs';

const env = (k) => process.env[k] ?? (console.error(`device-flow: ${k} is not set (run scripts/e2e-as-user.sh)`), process.exit(2));
const ISSUER = env('ISSUER');
const CORP = env('CORP');
const RESOURCE = env('MCP_URL');
const CLIENT_ID = env('DEVICE_CLIENT');
const SECRETS_FILE = env('SECRETS_FILE');
const GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const insecure = ISSUER.startsWith('http:') ? { [oauth.allowInsecureRequests]: true } : {};

let seen = 0;
const remember = (label, value) => {
  if (typeof value === 'string' && value) appendFileSync(SECRETS_FILE, `device ${label} #${++seen}\t${value}\n`);
};

let passed = 0;
let failed = 0;
class CheckFailed extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new CheckFailed(msg);
};
async function step(name, fn) {
  try {
    const note = await fn();
    passed++;
    console.log(`ok   ${name}${note ? ` (${note})` : ''}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e instanceof CheckFailed ? e.message : e?.stack ?? e}`);
    throw new Error('stop');
  }
}

const client = { client_id: CLIENT_ID };
const clientAuth = oauth.None();
let as;

// One poll; returns the tokens, or the OAuth error code the library reported.
async function poll(deviceCode) {
  const res = await oauth.deviceCodeGrantRequest(as, client, clientAuth, deviceCode, insecure);
  try {
    const tokens = await oauth.processDeviceCodeResponse(as, client, res);
    remember('access token', tokens.access_token);
    remember('refresh token', tokens.refresh_token);
    return { tokens };
  } catch (e) {
    if (e instanceof oauth.ResponseBodyError) return { error: e.error, status: e.status };
    throw e;
  }
}

async function startDevice() {
  const res = await oauth.deviceAuthorizationRequest(as, client, clientAuth, { scope: 'mcp:tools.read', resource: RESOURCE }, insecure);
  const d = await oauth.processDeviceAuthorizationResponse(as, client, res);
  remember('device code', d.device_code);
  // User codes (8 letters) are too short for the plaintext scan; the Rust test
  // device::pending_slow_down_approval_then_one_redemption checks Redis holds only their hash.
  return d;
}

// The user: verification_uri_complete → confirm the prefilled code → consent at auth-service →
// (first time) corp login → back at auth-service. Returns the final page.
async function userAnswers(browser, d, decision) {
  let page = await browser.navigate(d.verification_uri_complete);
  check(page.status === 200 && page.url.startsWith(`${ISSUER}/device`), `verification page: HTTP ${page.status} ${page.url}`);
  check(page.html.includes(`value="${d.user_code}"`), 'the code from verification_uri_complete is not prefilled');
  page = await browser.submit(page); // the explicit confirmation (RFC 8628 §5.4)
  const path = [];
  for (let i = 0; i < 6; i++) {
    check(page.status < 500, `HTTP ${page.status} at ${page.url}: ${page.html.slice(0, 300)}`);
    if (page.url.startsWith(ISSUER) && page.html.includes('name="decision"')) {
      check(page.html.includes('A device is asking for access'), 'the consent page does not warn about device codes');
      path.push('consent');
      page = await browser.submit(page, { button: { decision } });
    } else if (page.url.startsWith(CORP)) {
      path.push('corp login');
      page = await browser.submit(page, { fields: { account: 'alice' } });
    } else {
      return { page, path };
    }
  }
  throw new CheckFailed(`the verification never ended (last ${page.url})`);
}

try {
  await step('discovery names the device authorization endpoint and grant', async () => {
    const res = await oauth.discoveryRequest(new URL(ISSUER), { algorithm: 'oauth2', ...insecure });
    as = await oauth.processDiscoveryResponse(new URL(ISSUER), res);
    check(as.device_authorization_endpoint === `${ISSUER}/device_authorization`, `device_authorization_endpoint ${as.device_authorization_endpoint}`);
    check(as.grant_types_supported?.includes(GRANT), 'grant type missing from grant_types_supported');
  });

  const browser = new Browser({ timeoutMs: 15000 });
  let d;
  await step('device authorization response (RFC 8628 §3.2)', async () => {
    d = await startDevice();
    check(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/.test(d.user_code), `user_code ${d.user_code}`);
    check(d.verification_uri === `${ISSUER}/device`, `verification_uri ${d.verification_uri}`);
    check(d.verification_uri_complete.startsWith(`${ISSUER}/device?user_code=`), 'verification_uri_complete');
    check(d.expires_in > 0 && d.interval >= 1, `expires_in ${d.expires_in}, interval ${d.interval}`);
    return `expires_in ${d.expires_in}, interval ${d.interval}`;
  });

  await step('polling before the user acts: authorization_pending, then slow_down when too fast', async () => {
    const first = await poll(d.device_code);
    check(first.error === 'authorization_pending', `first poll: ${JSON.stringify(first)}`);
    const second = await poll(d.device_code);
    check(second.error === 'slow_down', `immediate second poll: ${JSON.stringify(second)}`);
  });

  await step('the user confirms the code, consents, signs in at corp: the device gets its tokens', async () => {
    const { page, path } = await userAnswers(browser, d, 'allow');
    check(page.status === 200 && page.html.includes('Device connected'), `final page HTTP ${page.status}: ${page.html.slice(0, 300)}`);
    const r = await poll(d.device_code);
    check(r.tokens, `poll after approval: ${JSON.stringify(r)}`);
    check(r.tokens.token_type.toLowerCase() === 'bearer', 'token_type');
    check(r.tokens.scope === 'mcp:tools.read', `scope ${r.tokens.scope}`);
    check(r.tokens.refresh_token, 'no refresh token');
    d.tokens = r.tokens;
    return `browser: code → ${path.join(' → ')} → done`;
  });

  await step('the device code is redeemable once; the refresh token works', async () => {
    const again = await poll(d.device_code);
    check(again.error === 'invalid_grant', `second redemption: ${JSON.stringify(again)}`);
    const res = await oauth.refreshTokenGrantRequest(as, client, clientAuth, d.tokens.refresh_token, insecure);
    const refreshed = await oauth.processRefreshTokenResponse(as, client, res);
    remember('access token', refreshed.access_token);
    remember('refresh token', refreshed.refresh_token);
    check(refreshed.access_token && refreshed.access_token !== d.tokens.access_token, 'refresh gave no new access token');
  });

  await step('a denied device code answers access_denied', async () => {
    const denied = await startDevice();
    const { page, path } = await userAnswers(browser, denied, 'deny');
    check(page.html.includes('Device not connected'), `final page HTTP ${page.status}: ${page.html.slice(0, 300)}`);
    const r = await poll(denied.device_code);
    check(r.error === 'access_denied', `poll after denial: ${JSON.stringify(r)}`);
    return `browser (signed in already): ${path.join(' → ')}`;
  });
} catch (e) {
  if (e.message !== 'stop') {
    failed++;
    console.log(`FAIL ${e?.stack ?? e}`);
  }
}
console.log(`device-flow: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
