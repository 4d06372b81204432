// A small upstream API ("the organisation's REST API") for the end-to-end tests: it accepts only
// access tokens issued by the upstream OpenID provider (tests/e2e/upstream-idp.mjs), checked by
// calling that provider's userinfo endpoint with the token, so a token the provider does not know
// (an mcpauth token, a forged one, a revoked one) gets 401.
//
//   node upstream-api.mjs <port> <upstream issuer>
//
// Prints one line `ready <base url>` on stdout once it listens. Routes:
//   GET  /api/profile            → {"sub", "name", "email"} of the token's user
//   GET  /api/items/:id?q=…      → {"id", "q", "owner"}: echoes what the connector sent
//   POST /api/items              → {"created": <json body>, "owner"}
//   GET  /api/fail/:status       → answers that status with a JSON error body
//   GET  /test/requests          → what this API received: one entry per request, with the
//                                  owner the token resolved to and whether it was accepted; the
//                                  tokens themselves are reported only as SHA-256 hex
import { createHash } from 'node:crypto';
import http from 'node:http';

const [portArg, issuer] = process.argv.slice(2);
const port = Number(portArg);
if (!port || !issuer) {
  console.error('usage: node upstream-api.mjs <port> <upstream issuer>');
  process.exit(2);
}

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const userinfo = discovery.userinfo_endpoint;
const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const requests = [];

// Who the token belongs to, according to the upstream provider (no cache: a revoked token is
// refused at once).
async function owner(token) {
  const res = await fetch(userinfo, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) return undefined;
  return res.json();
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  if (url.pathname === '/test/requests') return send(res, 200, requests);
  let body = '';
  for await (const chunk of req) body += chunk;
  const authz = req.headers.authorization ?? '';
  const token = authz.startsWith('Bearer ') ? authz.slice(7) : undefined;
  const entry = {
    method: req.method,
    path: url.pathname,
    query: url.search,
    token_sha256: token ? sha256(token) : null,
    owner: null,
    accepted: false,
  };
  requests.push(entry);
  if (!token) return send(res, 401, { error: 'missing_token' });
  const who = await owner(token);
  if (!who) return send(res, 401, { error: 'invalid_token' });
  entry.owner = who.sub;
  entry.accepted = true;

  let m;
  if (req.method === 'GET' && url.pathname === '/api/profile') {
    return send(res, 200, { sub: who.sub, name: who.name ?? null, email: who.email ?? null });
  }
  if (req.method === 'GET' && (m = url.pathname.match(/^\/api\/items\/([^/]+)$/))) {
    return send(res, 200, { id: decodeURIComponent(m[1]), q: url.searchParams.get('q'), owner: who.sub });
  }
  if (req.method === 'POST' && url.pathname === '/api/items') {
    let created;
    try {
      created = JSON.parse(body || 'null');
    } catch {
      return send(res, 400, { error: 'body is not JSON' });
    }
    return send(res, 201, { created, owner: who.sub });
  }
  if ((m = url.pathname.match(/^\/api\/fail\/(\d{3})$/))) {
    return send(res, Number(m[1]), { error: `failing on purpose with ${m[1]}` });
  }
  return send(res, 404, { error: 'no such route' });
});

server.listen(port, '127.0.0.1', () => console.log(`ready http://127.0.0.1:${port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
