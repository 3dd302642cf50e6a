import type { FastifyInstance } from 'fastify';
import Docker from 'dockerode';
import { identitySigner, IDENTITY_HEADER, ANONYMOUS, type Identity } from '@dockyard/kit';
import type { TestEnv } from '@dockyard/kit/testing';
import { buildProcessApp } from '../src/app.js';
import { loadProcessConfig } from '../src/config.js';
import { buildBuildApp } from '../../build/src/app.js';
import { loadBuildConfig } from '../../build/src/config.js';
import { ZipWriter } from '../src/domain/zip.js';

export const docker = new Docker();

/** The process service and the build service it sends builds to, on the test's schemas and NATS prefix. */
export async function startServices(env: TestEnv, extra: Record<string, string> = {}): Promise<{ app: FastifyInstance; build: FastifyInstance }> {
  const build = await buildBuildApp(loadBuildConfig(env.serviceEnv('build', { DOCKYARD_BUILD_CONCURRENCY: '2' })));
  await build.ready();
  const app = await buildProcessApp(loadProcessConfig(env.serviceEnv('process', extra)));
  await app.ready();
  return { app, build };
}

export function user(login: string, opts: Partial<Identity> = {}): Identity {
  return { ...ANONYMOUS, id: `u-${login}`, login, approved: true, ...opts };
}

/** Headers carrying the internal identity token the gateway would send. */
export function as(env: TestEnv, identity: Identity): Record<string, string> {
  return { [IDENTITY_HEADER]: identitySigner(env.env.DOCKYARD_INTERNAL_SECRET)(identity) };
}

/** A zip made in memory. */
export async function zipOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const w = new ZipWriter();
  for (const [name, content] of Object.entries(files)) w.addBuffer(name, content);
  w.end();
  const chunks: Buffer[] = [];
  for await (const c of w.stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A multipart/form-data body with a file field and text fields. */
export function form(file: Buffer | null, fields: Record<string, string> = {}, filename = 'project.zip'): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----dockyard${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields)) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`));
  if (file) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/zip\r\n\r\n`), file, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** Starts a process through the API; returns its uuid. */
export async function startProcess(app: FastifyInstance, env: TestEnv, who: Identity, url: string, zip: Buffer, fields: Record<string, string> = {}): Promise<string> {
  const f = form(zip, fields);
  const res = await app.inject({ method: 'POST', url, payload: f.payload, headers: { ...f.headers, ...as(env, who) } });
  if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}: ${res.body}`);
  return res.json().uuid;
}

/** Polls a process until it ended; returns its status body. */
export async function ended(app: FastifyInstance, env: TestEnv, who: Identity, uuid: string, ms = 240_000): Promise<{ status: string; reason: string | null; [k: string]: unknown }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const res = await app.inject({ url: `/api/process/status/${uuid}`, headers: as(env, who) });
    const body = res.json();
    if (body.status === 'processed' || body.status === 'failed') return body;
    if (Date.now() > deadline) throw new Error(`process ${uuid} still ${body.status} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Removes every image this run's builds made (labelled with its NATS prefix). */
export async function removeImages(env: TestEnv): Promise<void> {
  const images = await docker.listImages({ all: true, filters: JSON.stringify({ label: [`dockyard.prefix=${env.id}.`] }) });
  for (const image of images) {
    for (const tag of image.RepoTags ?? []) if (tag !== '<none>:<none>') await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  }
  for (const image of images) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
}
