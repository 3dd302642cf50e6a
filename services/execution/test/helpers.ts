import { IDENTITY_HEADER, identitySigner, serveRequests, type Identity } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import type { BuildImageGetReply, BuildImageGetRequest } from '@dockyard/contracts';
import type { FastifyInstance } from 'fastify';
import { readdir } from 'node:fs/promises';
import Docker from 'dockerode';
import { removeCgroup } from '../src/domain/usage.js';
import { buildExecutionApp } from '../src/app.js';
import { loadExecutionConfig } from '../src/config.js';
import { LABEL_DEPLOYMENT } from '../src/domain/runner.js';

export const user = (login: string, admin = false): Identity => ({ id: `id-${login}`, login, admin, approved: true, groups: [], roles: [] });
export const alice = user('alice');
export const bob = user('bob');
export const root = user('root', true);

/** Kabuto images the stand-in for the build service knows (build.image.get is served by build, written elsewhere). */
export const IMAGES: Record<string, NonNullable<BuildImageGetReply['image']>> = {
  '7': { id: '7', owner: 'alice', name: 'tools', reference: 'dockyard/busybox:latest', state: 'SUCCESS' },
  '8': { id: '8', owner: 'bob', name: 'bobs', reference: 'dockyard/busybox:latest', state: 'SUCCESS' },
  '9': { id: '9', owner: 'alice', name: 'wip', reference: 'dockyard/busybox:latest', state: 'PENDING' },
};

export interface Harness {
  env: TestEnv;
  /** The environment the service was started with (for a second process on the same database and NATS prefix). */
  serviceEnv: NodeJS.ProcessEnv;
  app: FastifyInstance;
  as: (identity: Identity) => Record<string, string>;
  /** Starts another app on the same database and NATS prefix (a restarted service). */
  restart: () => Promise<FastifyInstance>;
  close: () => Promise<void>;
}

/**
 * The execution service on the real PostgreSQL, NATS and Docker engine, with a small responder
 * on the real NATS connection answering `build.image.get` for {@link IMAGES} (the build service
 * is written elsewhere).
 */
export async function startExecution(extra: Record<string, string> = {}): Promise<Harness> {
  const env = testEnv();
  const serviceEnv = env.serviceEnv('execution', { DOCKYARD_EXECUTION_ACK_WAIT_MS: '5000', ...extra });
  const config = loadExecutionConfig(serviceEnv);
  const sign = identitySigner(config.DOCKYARD_INTERNAL_SECRET);
  const start = async () => {
    const app = await buildExecutionApp(config);
    await app.ready();
    return app;
  };
  const h: Harness = {
    env,
    serviceEnv,
    app: await start(),
    as: (identity) => ({ [IDENTITY_HEADER]: sign(identity) }),
    restart: async () => {
      h.app = await start();
      serveImages(h.app);
      return h.app;
    },
    close: async () => {
      await h.app.close();
      await removeContainers(config.DOCKYARD_NATS_PREFIX);
      await env.cleanup();
    },
  };
  serveImages(h.app);
  return h;
}

function serveImages(app: FastifyInstance): void {
  serveRequests<BuildImageGetRequest, BuildImageGetReply>(app.nats, app.subjects.of('build.image.get'), async ({ id }) => ({ image: IMAGES[id] ?? null }), app.log, 'test-build');
}

export async function removeContainers(deployment: string): Promise<void> {
  const docker = new Docker();
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABEL_DEPLOYMENT}=${deployment}`] } });
  await Promise.allSettled(list.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  const cgroups = await readdir('/sys/fs/cgroup/memory/dockyard-execution').catch(() => [] as string[]);
  await Promise.allSettled(cgroups.filter((n) => n.startsWith(`${deployment}job-`)).map((n) => removeCgroup(`/dockyard-execution/${n}`)));
}

/** A multipart body as curl -F / requests' files= send it. */
export async function multipart(fields: Record<string, string | string[]>, files: { name: string; body: Buffer | string; field?: string }[] = []) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) for (const one of ([] as string[]).concat(v)) form.append(k, one);
  for (const f of files) form.append(f.field ?? 'attachments', new Blob([f.body]), f.name);
  const req = new Request('http://localhost/', { method: 'POST', body: form });
  return { payload: Buffer.from(await req.arrayBuffer()), headers: { 'content-type': req.headers.get('content-type')! } };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` returns a value (no timing assertion: only a generous ceiling). */
export async function until<T>(check: () => Promise<T | null | undefined | false>, what: string, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
