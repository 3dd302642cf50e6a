import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import Docker from 'dockerode';
import { connectNats, contextBucket, identitySigner, IDENTITY_HEADER, json, ANONYMOUS, Subjects, type Identity } from '@dockyard/kit';
import type { TestEnv } from '@dockyard/kit/testing';
import { buildBuildApp } from '../src/app.js';
import { loadBuildConfig } from '../src/config.js';

export const run = promisify(execFile);
export const docker = new Docker();

/** A build service on the test's database schema and NATS prefix (same schema each call: a restart). */
export async function startBuild(env: TestEnv, extra: Record<string, string> = {}): Promise<FastifyInstance> {
  const config = loadBuildConfig({ ...env.serviceEnv('build', extra), DOCKYARD_DB_SCHEMA: `${env.id}_build` });
  const app = await buildBuildApp(config);
  await app.ready();
  return app;
}

export function user(login: string, opts: Partial<Identity> = {}): Identity {
  return { ...ANONYMOUS, id: `u-${login}`, login, approved: true, ...opts };
}

/** Headers carrying the internal identity token the gateway would send. */
export function as(env: TestEnv, identity: Identity): Record<string, string> {
  return { [IDENTITY_HEADER]: identitySigner(env.env.DOCKYARD_INTERNAL_SECRET)(identity) };
}

/** Polls until `check` returns a value (not undefined); fails after `ms`. */
export async function waitFor<T>(check: () => Promise<T | undefined>, ms = 120_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Waits for a build (by id) to end; returns its row. */
export async function buildEnded(app: FastifyInstance, id: string, ms = 120_000) {
  return waitFor(async () => {
    const b = await app.builds.prisma.build.findUnique({ where: { id } });
    return b && ['SUCCESS', 'FAILURE', 'ABORTED'].includes(b.state) ? b : undefined;
  }, ms, `build ${id} ended`);
}

/** Collects every message on a subject pattern (events, logs) for assertions. */
export function collect(app: FastifyInstance, subject: string): { subject: string; data: Record<string, unknown> }[] {
  const seen: { subject: string; data: Record<string, unknown> }[] = [];
  const sub = app.nats.subscribe(app.subjects.of(subject));
  void (async () => {
    for await (const m of sub) seen.push({ subject: m.subject.slice(app.subjects.prefix.length), data: json.decode(m.data) });
  })();
  return seen;
}

/** Removes every image this test run's builds made (labelled with its NATS prefix), and dangling layers of them. */
export async function removeImages(env: TestEnv): Promise<void> {
  const images = await docker.listImages({ all: true, filters: JSON.stringify({ label: [`dockyard.prefix=${env.id}.`] }) });
  for (const image of images) {
    for (const tag of image.RepoTags ?? []) if (tag !== '<none>:<none>') await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
    await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
  }
}

/** Deletes the JetStream streams of this run (events, work queue, context bucket): they would pile up on the shared NATS. */
export async function dropStreams(env: TestEnv): Promise<void> {
  const nc = await connectNats(env.env.DOCKYARD_NATS_URL, 'test-cleanup');
  const subjects = new Subjects(env.env.DOCKYARD_NATS_PREFIX);
  for (const stream of [subjects.stream('EVENTS'), subjects.stream('BUILD_WORK'), `OBJ_${contextBucket(subjects)}`]) {
    await nc.request(`$JS.API.STREAM.DELETE.${stream}`, '').catch(() => undefined);
  }
  await nc.drain();
}
