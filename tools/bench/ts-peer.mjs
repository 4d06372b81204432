// Benchmark peer for `make bench` (scripts/bench.sh): the official TypeScript MCP SDK's
// Streamable HTTP server (@modelcontextprotocol/sdk, the version pinned in tests/e2e) behind the
// SDK's own bearer-auth middleware (requireBearerAuth), serving a `whoami` tool equivalent to
// mcp-service's. Sessions, protocol 2025-11-25 (the newest this SDK speaks), SSE answers to
// POSTs (the SDK's default, as in mcp-service), DNS-rebinding protection on.
//
// The verifier accepts exactly one token (compared in constant time), standing in for a real
// verifier with a warm cache: what is measured is the SDK's HTTP, auth-middleware and MCP path.
//
//   node tools/bench/ts-peer.mjs PORT TOKEN_FILE [MAX_SECS]
//
// Listens on 127.0.0.1:PORT only, prints "ready <url>" once listening, exits after MAX_SECS
// (default 600). The token is read from a file so it appears in no process listing.
import { createRequire } from 'node:module';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

// The SDK and express live in tests/e2e/node_modules (scripts/install-tools.sh).
const require = createRequire(new URL('../../tests/e2e/package.json', import.meta.url));
const express = require('express');
const { McpServer } = require('@modelcontextprotocol/sdk/server/mcp.js');
const { StreamableHTTPServerTransport } = require('@modelcontextprotocol/sdk/server/streamableHttp.js');
const { isInitializeRequest } = require('@modelcontextprotocol/sdk/types.js');
const { requireBearerAuth } = require('@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js');
const { InvalidTokenError } = require('@modelcontextprotocol/sdk/server/auth/errors.js');
const { getOAuthProtectedResourceMetadataUrl } = require('@modelcontextprotocol/sdk/server/auth/router.js');

const [portArg, tokenFile, maxArg] = process.argv.slice(2);
const PORT = Number(portArg);
if (!Number.isInteger(PORT) || PORT <= 0 || !tokenFile) {
  console.error('usage: ts-peer.mjs PORT TOKEN_FILE [MAX_SECS]');
  process.exit(2);
}
const MAX_SECS = Number(maxArg ?? 600);
const TOKEN = Buffer.from(readFileSync(tokenFile, 'utf8').trim());
if (TOKEN.length === 0) {
  console.error('ts-peer: empty token');
  process.exit(2);
}
const MCP_URL = new URL(`http://127.0.0.1:${PORT}/mcp`);
const SCOPES = ['mcp:tools.read'];

const verifier = {
  async verifyAccessToken(token) {
    const given = Buffer.from(token);
    if (given.length !== TOKEN.length || !timingSafeEqual(given, TOKEN)) {
      throw new InvalidTokenError('token is not active');
    }
    return {
      token,
      clientId: 'bench-peer-client',
      scopes: SCOPES,
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      resource: MCP_URL,
      extra: { sub: 'bench-peer-user' },
    };
  },
};

const auth = requireBearerAuth({
  verifier,
  requiredScopes: SCOPES,
  expectedResource: MCP_URL,
  resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(MCP_URL),
});

const transports = new Map(); // session id -> transport (one process: no scale-out)

function newServer() {
  const server = new McpServer({ name: 'ts-peer', version: '0.0.0' });
  // Like mcp-service's whoami: subject, client, scopes and expiry of the request's token.
  server.registerTool(
    'whoami',
    { description: 'Returns the authenticated subject, client, scopes and token expiry of this request.' },
    async (extra) => {
      const a = extra.authInfo;
      const body = { subject: a?.extra?.sub, client_id: a?.clientId, scopes: a?.scopes, expires_at: a?.expiresAt };
      return { content: [{ type: 'text', text: JSON.stringify(body) }] };
    },
  );
  return server;
}

const app = express();
app.use(express.json({ limit: '4mb' }));
app.all('/mcp', auth, async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  let transport = sid ? transports.get(sid) : undefined;
  if (!transport) {
    if (sid || req.method !== 'POST' || !isInitializeRequest(req.body)) {
      res.status(sid ? 404 : 400).json({
        jsonrpc: '2.0',
        error: { code: -32000, message: sid ? 'Session not found' : 'Bad Request: initialize first' },
        id: null,
      });
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => transports.set(id, transport),
      enableDnsRebindingProtection: true,
      allowedHosts: [`127.0.0.1:${PORT}`, `localhost:${PORT}`],
    });
    transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
    await newServer().connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
});

const listener = app.listen(PORT, '127.0.0.1', () => console.log(`ready ${MCP_URL}`));
setTimeout(() => {
  listener.close();
  process.exit(0);
}, MAX_SECS * 1000).unref();
