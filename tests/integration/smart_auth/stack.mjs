// A protected FHIR server for MgCDS's SMART Backend Services tests, in one Node process with two listeners:
//
//  * AS:   a real OAuth 2 authorization server (panva's OpenID-certified oidc-provider) offering only
//          client_credentials with private_key_jwt client authentication (RS384 / ES384). Clients are registered
//          from a JSON file the test writes, each with the jwks_uri of its public key set, its scopes and its
//          access-token lifetime. Access tokens are JWTs (RFC 9068, typ at+jwt) for one resource: the gateway.
//  * FHIR: a resource server in front of the project's test FHIR server (tests/integration/fhir_server). It
//          serves /fhir/.well-known/smart-configuration pointing at the AS, and for every other request verifies
//          the bearer JWT with the AS's published keys (signature, issuer, audience, expiry, typ) and the scope
//          for the resource type, then forwards the GET with the upstream server's own static token.
//
// Usage: node stack.mjs --upstream http://127.0.0.1:PORT --clients clients.json
//        env UPSTREAM_TOKEN (the upstream's bearer token), ADMIN_TOKEN (for /_test/*).
// Prints "AS <port>", "FHIR <port>", then "READY". Listens on 127.0.0.1 only.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { parseArgs } from 'node:util';
import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({ options: { upstream: { type: 'string' }, clients: { type: 'string' } } });
const upstream = args.upstream;
const upstreamToken = process.env.UPSTREAM_TOKEN;
const adminToken = process.env.ADMIN_TOKEN;
if (!upstream || !args.clients || !upstreamToken || !adminToken) {
  console.error('needs --upstream, --clients, UPSTREAM_TOKEN and ADMIN_TOKEN');
  process.exit(2);
}
const registrations = JSON.parse(readFileSync(args.clients, 'utf8')).clients;
const byClientId = new Map(registrations.map((c) => [c.client_id, c]));

const HOST = '127.0.0.1';
const asServer = createServer();
const fhirServer = createServer();
const listen = (server) => new Promise((resolve) => server.listen(0, HOST, () => resolve(server.address().port)));
const asPort = await listen(asServer);
const fhirPort = await listen(fhirServer);
const issuer = `http://${HOST}:${asPort}`;
const fhirBase = `http://${HOST}:${fhirPort}/fhir`; // the resource indicator and the tokens' audience

const stats = {
  token_requests: 0,
  tokens_issued: 0,
  token_errors: 0,
  fhir_requests: 0,
  fhir_forwarded: 0,
  fhir_401: 0,
  fhir_403: 0,
};

// ---- the authorization server --------------------------------------------------------------------------------

const signing = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(signing.privateKey)), kid: 'as-key-1', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: registrations.map((c) => ({
    client_id: c.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: c.alg,
    jwks_uri: c.jwks_uri,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  })),
  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384'] },
  jwks: { keys: [signingJwk] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // SMART backend clients send no resource parameter: every token is for the FHIR server.
      defaultResource: () => fhirBase,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => {
        if (resource !== fhirBase) throw new errors.InvalidTarget();
        const registration = byClientId.get(client.clientId);
        return {
          // The scopes this client was registered for; the token gets the requested ones among them.
          scope: registration.scope,
          audience: fhirBase,
          accessTokenTTL: registration.access_token_ttl ?? 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // oidc-provider refuses to fetch from loopback addresses (SSRF protection); the test's JWKS server is on
  // 127.0.0.1, so for this test server only, loopback jwks_uri fetches are let through and nothing else.
  fetch: (url, options) => {
    if (new URL(url).hostname !== HOST) throw new Error('only loopback jwks_uri in this test server');
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
});
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token') stats.token_requests += 1;
  await next();
});
provider.on('grant.success', () => {
  stats.tokens_issued += 1;
});
provider.on('grant.error', () => {
  stats.token_errors += 1;
});
asServer.on('request', provider.callback());

// ---- the resource server ------------------------------------------------------------------------------------

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const asKeys = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
const seenJti = new Set();
const revokedJti = new Set();

const smartConfiguration = {
  issuer,
  token_endpoint: discovery.token_endpoint,
  jwks_uri: discovery.jwks_uri,
  grant_types_supported: ['client_credentials'],
  token_endpoint_auth_methods_supported: ['private_key_jwt'],
  token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
  scopes_supported: ['system/*.rs'],
  capabilities: ['client-confidential-asymmetric', 'permission-v2'],
};

function send(res, status, body, headers = {}) {
  const raw = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/fhir+json', 'Content-Length': raw.length, ...headers });
  res.end(raw);
}

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

function refuse(res, status, error, text) {
  stats[`fhir_${status}`] += 1;
  send(res, status, outcome(status === 401 ? 'login' : 'forbidden', text), {
    'WWW-Authenticate': `Bearer realm="fhir", error="${error}"`,
  });
}

// SMART scopes for reading: v2 system/<Type>.<cruds> (r for read, s for search) or v1 system/<Type>.read.
function allows(scopes, resourceType, interaction) {
  return scopes.some((scope) => {
    const match = /^system\/(\*|[A-Za-z]+)\.(read|[cruds]+)$/.exec(scope);
    if (!match || (match[1] !== '*' && match[1] !== resourceType)) return false;
    return match[2] === 'read' || match[2].includes(interaction);
  });
}

function isAdmin(req) {
  const given = Buffer.from(String(req.headers['x-test-admin'] ?? ''));
  const wanted = Buffer.from(adminToken);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

fhirServer.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, fhirBase);
    if (url.pathname.startsWith('/_test/')) {
      if (!isAdmin(req)) return send(res, 403, outcome('forbidden', 'admin token required'));
      if (url.pathname === '/_test/stats') return send(res, 200, stats, { 'Content-Type': 'application/json' });
      if (url.pathname === '/_test/revoke-seen' && req.method === 'POST') {
        for (const jti of seenJti) revokedJti.add(jti);
        return send(res, 200, { revoked: revokedJti.size }, { 'Content-Type': 'application/json' });
      }
      return send(res, 404, outcome('not-found', 'no such test endpoint'));
    }
    if (url.pathname === '/fhir/.well-known/smart-configuration' && req.method === 'GET') {
      return send(res, 200, smartConfiguration, { 'Content-Type': 'application/json' });
    }
    if (!url.pathname.startsWith('/fhir/')) return send(res, 404, outcome('not-found', 'not a FHIR path'));
    stats.fhir_requests += 1;
    const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(req.headers.authorization ?? '');
    if (!match) return refuse(res, 401, 'invalid_request', 'a bearer token is required');
    let payload;
    try {
      ({ payload } = await jose.jwtVerify(match[1], asKeys, {
        issuer,
        audience: fhirBase,
        typ: 'at+jwt',
        algorithms: ['RS256'],
        requiredClaims: ['exp', 'jti', 'client_id'],
      }));
    } catch {
      return refuse(res, 401, 'invalid_token', 'the access token is invalid or expired');
    }
    seenJti.add(payload.jti);
    if (revokedJti.has(payload.jti)) return refuse(res, 401, 'invalid_token', 'the access token was revoked');
    if (req.method !== 'GET') return send(res, 405, outcome('not-supported', 'this gateway is read-only'));
    const [resourceType, id] = url.pathname.slice('/fhir/'.length).split('/');
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
    if (!allows(scopes, resourceType, id ? 'r' : 's')) {
      return refuse(res, 403, 'insufficient_scope', `the token's scopes do not allow reading ${resourceType}`);
    }
    const answer = await fetch(`${upstream}${url.pathname.slice('/fhir'.length)}${url.search}`, {
      headers: { Authorization: `Bearer ${upstreamToken}`, Accept: 'application/fhir+json' },
    });
    stats.fhir_forwarded += 1;
    // Links in the upstream's answers (Bundle.link next) must point at the gateway, not around it.
    const text = (await answer.text()).replaceAll(upstream, fhirBase);
    send(res, answer.status, text, { 'Content-Type': answer.headers.get('content-type') ?? 'application/fhir+json' });
  } catch (err) {
    send(res, 500, outcome('exception', String(err?.message ?? err)));
  }
});

console.log(`AS ${asPort}`);
console.log(`FHIR ${fhirPort}`);
console.log('READY');
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    asServer.close();
    fhirServer.close();
    process.exit(0);
  });
}
