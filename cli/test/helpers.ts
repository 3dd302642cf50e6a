/** A fake gateway for unit tests: records requests, answers from a routing function. */
import { PassThrough } from 'node:stream';
import type { Io } from '../src/context.js';

export interface Seen {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

export function fakeIo(env: NodeJS.ProcessEnv, answer: (req: Seen) => Response | Promise<Response>, input = '') {
  const seen: Seen[] = [];
  let out = '';
  let err = '';
  const stdout = new PassThrough();
  stdout.on('data', (c) => (out += c));
  const stderr = new PassThrough();
  stderr.on('data', (c) => (err += c));
  const stdin = new PassThrough();
  stdin.end(input);
  const fetchFn = (async (input: URL | string, init: RequestInit = {}) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((init.headers as Record<string, string>) ?? {})) headers[k.toLowerCase()] = v;
    const body = typeof init.body === 'string' ? init.body : init.body instanceof URLSearchParams ? init.body.toString() : undefined;
    const req = { method: init.method ?? 'GET', url: String(input), headers, body };
    seen.push(req);
    return answer(req);
  }) as typeof fetch;
  const io: Io = { env, stdout, stderr, stdin, fetch: fetchFn };
  return { io, seen, out: () => out, err: () => err };
}

export const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
