// RFC 9068 JWT access tokens checked by a third-party library: panva's `jose` verifies a token of
// the JWT resource (scripts/e2e.sh configures it with token_format = "jwt") against the jwks_uri
// of auth-service's RFC 8414 metadata — typ at+jwt, issuer, audience, expiry — and refuses a
// tampered one, one for another audience, and (at introspection) a revoked one.
// Env: ISSUER, JWT_RESOURCE, CLIENT_ID, CLIENT_SECRET (a confidential client_credentials client).
import assert from "node:assert/strict";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

const { ISSUER, JWT_RESOURCE, CLIENT_ID, CLIENT_SECRET } = process.env;
for (const [k, v] of Object.entries({ ISSUER, JWT_RESOURCE, CLIENT_ID, CLIENT_SECRET })) {
  if (!v) throw new Error(`${k} is required`);
}
const basic = "Basic " + Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64");
const post = (path, form) =>
  fetch(`${ISSUER}${path}`, {
    method: "POST",
    headers: { authorization: basic, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
  });

const meta = await (await fetch(`${ISSUER}/.well-known/oauth-authorization-server`)).json();
assert.equal(meta.jwks_uri, `${ISSUER}/jwks`);
const JWKS = createRemoteJWKSet(new URL(meta.jwks_uri));

const r = await post("/token", { grant_type: "client_credentials", resource: JWT_RESOURCE });
assert.equal(r.status, 200, await r.clone().text());
const { access_token: at, expires_in } = await r.json();
assert.equal(decodeProtectedHeader(at).typ, "at+jwt");

const { payload, protectedHeader } = await jwtVerify(at, JWKS, {
  issuer: ISSUER,
  audience: JWT_RESOURCE,
  typ: "at+jwt",
  requiredClaims: ["exp", "iat", "jti", "sub", "client_id", "scope"],
});
assert.ok(["ES256", "EdDSA", "RS256"].includes(protectedHeader.alg), protectedHeader.alg);
assert.equal(payload.client_id, CLIENT_ID);
assert.equal(payload.exp - payload.iat, expires_in);
console.log(`jose verified a ${protectedHeader.alg} at+jwt (kid ${protectedHeader.kid}) for ${payload.aud}`);

const refused = async (token, opts, what) => {
  await assert.rejects(jwtVerify(token, JWKS, { issuer: ISSUER, audience: JWT_RESOURCE, typ: "at+jwt", ...opts }), undefined, what);
};
await refused(at, { audience: "https://other.example/mcp" }, "another audience");
await refused(at, { issuer: "https://other.example" }, "another issuer");
const [h, p, s] = at.split(".");
const claims = JSON.parse(Buffer.from(p, "base64url"));
for (const [k, v] of [["scope", "mcp:tools.read mcp:tools.write admin"], ["sub", "someone-else"], ["exp", claims.exp + 3600]]) {
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, [k]: v })).toString("base64url")}.${s}`;
  await refused(forged, {}, `tampered ${k}`);
  const i = await (await post("/introspect", { token: forged })).json();
  assert.deepEqual(i, { active: false }, `introspection of a token with tampered ${k}`);
}

// Revocation is honoured at introspection, as for sealed tokens.
assert.equal((await (await post("/introspect", { token: at })).json()).active, true);
assert.equal((await post("/revoke", { token: at })).status, 200);
assert.deepEqual(await (await post("/introspect", { token: at })).json(), { active: false });
console.log("jwt-access-tokens: tampered, foreign and revoked tokens refused");
