/**
 * Property-based fuzzing of every endpoint (issue 9): for every operation of every OpenAPI document
 * in openapi/ (the six services and the gateway's own), fast-check generates requests — valid ones
 * from the documented parameters and bodies, and invalid ones (wrong types, missing and unknown
 * fields, huge strings, control characters and unicode, malformed JSON, wrong content types) — and
 * sends them through the gateway of one running stack as anonymous, testuser, testuser2 and admin.
 *
 * Properties, per response: no 5xx; the status is documented for the operation; the content type is
 * documented for that status; a JSON body matches the documented schema (ajv, JSON Schema 2020-12;
 * a 4xx without its own schema must be the `{"error"}` shape). After the run every service still
 * answers (the gateway's /readyz). A failure prints fast-check's shrunk counterexample and the seed.
 *
 * Budget: FUZZ_RUNS requests per operation (default 12) from FUZZ_SEED (default fixed, printed), so
 * `make test` is reproducible and bounded; e.g. `FUZZ_RUNS=200 FUZZ_SEED=$RANDOM` to go further.
 * FUZZ_ONLY=<regexp of operationIds> narrows the run; FUZZ_BASE=<gateway URL> + FUZZ_ADMIN_TOKEN reuse a
 * running stack (DOCKYARD_RATE_LIMIT=0, DOCKYARD_SEED_TEST_USERS=1) instead of starting one.
 */
import fc from 'fast-check';
import { startStack, type Stack } from '@dockyard/kit/testing';
import { loadOperations, type Operation } from './fuzz/operations.js';
import { requestArbitrary, toFetch, type FuzzRequest, type Identity, type Known } from './fuzz/requests.js';
import { problemWith, type Answer } from './fuzz/responses.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 12);
const SEED = Number(process.env.FUZZ_SEED ?? 20261123);
const ONLY = process.env.FUZZ_ONLY ? new RegExp(process.env.FUZZ_ONLY) : undefined;

/**
 * Operations whose property is not checked yet, with why. Each is a known bug or gap, listed in the
 * report; none passes silently.
 */
const SKIPPED: Record<string, string> = {
  // An endless stream: a generated request would only time out. gateway/test/events*.test.ts cover it.
  streamEvents: 'GET /events is a never-ending SSE stream (covered by gateway/test/events.test.ts, incl. its 400s)',
};

const operations = (await loadOperations()).filter((op) => !ONLY || ONLY.test(op.operationId));
// Identifies the run, so a failure here can be replayed exactly.
console.log(`fuzz: seed ${SEED}, ${RUNS} runs per operation, ${operations.length} operations (FUZZ_SEED / FUZZ_RUNS / FUZZ_ONLY to change)`);

let stack: Stack;
let credentials: Record<Identity, string | null>;
const known: Known = {};

/**
 * Requests whose connection broke (or that got no answer within 30 s) before succeeding on a second
 * try, listed after the run; the property fails when the second try breaks too. Full runs used to
 * list the same few (uploads a service refused before reading them, stalling the next request on
 * that connection); the gateway now drops such a body's rest (gateway/test/early-answer.test.ts),
 * so a listed request is a new problem to look into.
 */
const broken: string[] = [];

async function send(req: FuzzRequest): Promise<Answer> {
  try {
    return await sendOnce(req);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const first = `${(err as Error).message} (${cause?.code ?? ''} ${cause?.message ?? ''})`;
    try {
      const answer = await sendOnce(req);
      broken.push(`${req.method} ${req.url.slice(0, 120)} as ${req.identity}: ${first}`);
      return answer;
    } catch (again) {
      const second = (again as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`no answer twice: ${first}, then ${(again as Error).message} (${second?.code ?? ''} ${second?.message ?? ''})`);
    }
  }
}

/** Sends one request; streams are cut after the headers, downloads after 256 KiB. */
async function sendOnce(req: FuzzRequest): Promise<Answer> {
  const { url, init } = toFetch(req, credentials);
  const res = await fetch(`${stack.base}${url}`, { ...init, redirect: 'manual', signal: AbortSignal.timeout(30_000) });
  const contentType = res.headers.get('content-type');
  let text = '';
  if (res.body && !(contentType ?? '').startsWith('text/event-stream')) {
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      if (size > 256 * 1024) break;
    }
    await reader.cancel().catch(() => undefined);
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    await res.body?.cancel().catch(() => undefined);
  }
  return { status: res.status, contentType, text };
}

async function json(method: string, url: string, identity: Identity, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${stack.base}${url}`, {
    method,
    headers: { ...(credentials[identity] ? { authorization: credentials[identity]! } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

beforeAll(async () => {
  if (process.env.FUZZ_BASE) {
    // A stack already running (started with DOCKYARD_RATE_LIMIT=0 DOCKYARD_SEED_TEST_USERS=1), to iterate quickly.
    const base = process.env.FUZZ_BASE;
    stack = { base, adminToken: process.env.FUZZ_ADMIN_TOKEN ?? '', stop: async () => undefined } as unknown as Stack;
  } else {
    // Rate limits off: thousands of requests from one identity are the point here, not abuse.
    stack = await startStack({ DOCKYARD_RATE_LIMIT: '0', DOCKYARD_GATEWAY_WORKERS: '1' });
  }
  credentials = { anonymous: null, testuser: 'sage testuser_token', testuser2: 'sage testuser2_token', admin: `Bearer ${stack.adminToken}` };
  // A few real resources, so valid requests get past "not found" as well.
  const pipeline = await json('POST', '/pipeline', 'testuser', { name: 'fuzz' });
  if (pipeline.status === 200) known.pipeline_id = [String(pipeline.body.id)];
  const namespace = await json('PUT', '/namespaces', 'testuser', { id: 'fuzzns' });
  if (namespace.status === 200) known.namespace = ['fuzzns', 'sage'];
  known.service = ['registry'];
}, 200_000);

afterAll(async () => {
  if (broken.length) console.warn(`fuzz: ${broken.length} request(s) needed a second try (see \`broken\`):\n${broken.join('\n')}`);
  await stack?.stop();
}, 60_000);

describe('fuzz: every documented operation through the gateway', () => {
  operations.forEach((op: Operation, index: number) => {
    const name = `${op.document} ${op.method} ${op.path} (${op.operationId})`;
    if (SKIPPED[op.operationId]) {
      it.skip(`${name} — SKIPPED: ${SKIPPED[op.operationId]}`, () => undefined);
      return;
    }
    it(name, async () => {
      const property = fc.asyncProperty(requestArbitrary(op, known), async (req) => {
        const answer = await send(req);
        const problem = problemWith(op, answer);
        if (problem) throw new Error(problem);
      });
      await fc.assert(property, { numRuns: RUNS, seed: SEED + index, verbose: 1 });
    }, 600_000);
  });

  it('every service still answers after the run (gateway /readyz)', async () => {
    const res = await fetch(`${stack.base}/readyz`);
    const body = await res.text();
    expect({ status: res.status, body }).toEqual({ status: 200, body: expect.any(String) });
  });
});
