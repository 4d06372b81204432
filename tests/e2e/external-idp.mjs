// An external authorization server for mcp-service's `jwt` and `introspection_http` verifier
// modes: panva's oidc-provider (a certified OpenID provider), configured for client_credentials
// with resource indicators (RFC 8707), introspection (RFC 7662) and revocation (RFC 7009).
//
//   node external-idp.mjs <port> <resource> [jwt|opaque]
//
// Prints one line `ready <issuer>` on stdout once it listens. Clients (client_secret_basic):
//   mcp-introspector / introspector-secret   for mcp-service's introspection calls
//   m2m / m2m-secret                         client_credentials, tokens live 300 s
//   m2m-short / m2m-short-secret             client_credentials, tokens live 1 s
// Any resource indicator is accepted: its tokens carry `aud` = that resource and scope
// `mcp:tools.read`, in the format given on the command line (default jwt).
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [portArg, resource, format = 'jwt'] = process.argv.slice(2);
const port = Number(portArg);
if (!port || !resource || !['jwt', 'opaque'].includes(format)) {
  console.error('usage: node external-idp.mjs <port> <resource> [jwt|opaque]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const client = (id, secret, grants) => ({
  client_id: id,
  client_secret: secret,
  grant_types: grants,
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
});

const provider = new Provider(issuer, {
  clients: [
    client('mcp-introspector', 'introspector-secret', []),
    client('m2m', 'm2m-secret', ['client_credentials']),
    client('m2m-short', 'm2m-short-secret', ['client_credentials']),
  ],
  jwks: { keys: [{ ...rsa, kid: 'rsa-1', alg: 'RS256', use: 'sig' }, { ...ec, kid: 'ec-1', alg: 'ES256', use: 'sig' }] },
  ttl: { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 300 },
  cookies: { keys: ['external-idp-test-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Any authenticated client may introspect (mcp-service's introspector in particular).
    introspection: { enabled: true, allowedPolicy: () => true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator, c) => ({
        scope: 'mcp:tools.read',
        audience: resourceIndicator,
        accessTokenTTL: c.clientId === 'm2m-short' ? 1 : 300,
        accessTokenFormat: format,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Exit with the test process that started us (it holds our stdin).
process.stdin.on('end', stop);
process.stdin.resume();
