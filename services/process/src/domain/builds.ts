import type { Readable } from 'node:stream';
import type { NatsConnection } from '@nats-io/transport-node';
import { json, putBuildContext, request, type Subjects } from '@dockyard/kit';
import type { BuildRequestReply, BuildRequestRequest } from '@dockyard/contracts';

/** build.request was refused or not answered (no build service running, a bad request). */
export class BuildServiceUnavailable extends Error {}

export interface BuildOutcome {
  buildId: string;
  result: 'SUCCESS' | 'FAILURE' | 'ABORTED' | 'TIMEOUT';
  error: string | null;
}

/**
 * One image build through the build service (contracts #3): the context goes to the object store,
 * then `build.request`; the build's live log lines are passed to `line` and the outcome is read from
 * `events.build.build.finished`. Both subscriptions start before the request, so nothing is missed.
 */
export async function buildThroughService(
  nc: NatsConnection,
  subjects: Subjects,
  o: { contextName: string; context: Readable; dockerfile: string; tag: string; owner: string; label: string; nocache?: boolean; line: (l: string) => void; signal: AbortSignal },
): Promise<BuildOutcome> {
  await putBuildContext(nc, subjects, o.contextName, o.context as unknown as AsyncIterable<Uint8Array>);
  const finished = nc.subscribe(subjects.of('events.build.build.finished'));
  const logs = nc.subscribe(subjects.of('logs.build.*'));
  let buildId: string | null = null;
  const early: { id: string; line: string }[] = [];
  const logPrefix = subjects.of('logs.build.');
  const logLoop = (async () => {
    for await (const m of logs) {
      const id = m.subject.slice(logPrefix.length);
      const body = json.decode<{ line?: string; end?: boolean }>(m.data);
      if (typeof body.line !== 'string') continue;
      if (buildId === null) early.push({ id, line: body.line });
      else if (id === buildId) o.line(body.line);
    }
  })();
  try {
    const reply = await request<BuildRequestRequest, BuildRequestReply>(nc, subjects.of('build.request'), {
      contextObject: o.contextName,
      dockerfile: o.dockerfile,
      buildArgs: {},
      tags: [o.tag],
      nocache: o.nocache ?? false,
      owner: o.owner,
      push: false,
      label: o.label,
    }, 15_000).catch((err: Error) => {
      throw new BuildServiceUnavailable(`The build service did not accept the build (build.request: ${err.message})`);
    });
    buildId = reply.buildId;
    o.line(`Build ${buildId} queued in the build service`);
    for (const e of early.splice(0)) if (e.id === buildId) o.line(e.line);
    return await new Promise<BuildOutcome>((resolve) => {
      const onAbort = () => {
        // The build is no longer wanted: queued, it ends ABORTED; running, its worker stops it.
        void request(nc, subjects.of('build.cancel'), { buildId }).catch(() => undefined);
        resolve({ buildId: buildId!, result: 'TIMEOUT', error: 'aborted' });
      };
      if (o.signal.aborted) return onAbort();
      o.signal.addEventListener('abort', onAbort, { once: true });
      void (async () => {
        for await (const m of finished) {
          const e = json.decode<{ buildId: string; result: BuildOutcome['result']; error: string | null }>(m.data);
          if (e.buildId !== buildId) continue;
          o.signal.removeEventListener('abort', onAbort);
          resolve({ buildId: e.buildId, result: e.result, error: e.error });
          return;
        }
      })();
    });
  } finally {
    finished.unsubscribe();
    // Late log lines still in flight are dropped with the subscription.
    await new Promise((r) => setTimeout(r, 100));
    logs.unsubscribe();
    await logLoop.catch(() => undefined);
  }
}
