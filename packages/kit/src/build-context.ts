import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm, type ObjectInfo, type ObjectStore } from '@nats-io/obj';
import { replicasOf, type Subjects } from './nats.js';

/**
 * Build contexts handed to the build service over NATS (`build.request`, contracts #3) travel
 * through one JetStream object store: the requester puts the context tar, then names it in the
 * request. Entries expire after a day; the build service deletes one once its build ended.
 */
export function contextBucket(subjects: Subjects): string {
  return subjects.stream('BUILD_CONTEXTS');
}

const stores = new WeakMap<NatsConnection, Map<string, Promise<ObjectStore>>>();

async function store(nc: NatsConnection, subjects: Subjects): Promise<ObjectStore> {
  let byName = stores.get(nc);
  if (!byName) stores.set(nc, (byName = new Map()));
  const name = contextBucket(subjects);
  let os = byName.get(name);
  if (!os) {
    // create() opens the bucket when it exists already.
    os = new Objm(nc).create(name, { ttl: 24 * 3600 * 1_000_000_000, replicas: replicasOf(nc) });
    byName.set(name, os);
    os.catch(() => byName.delete(name));
  }
  return os;
}

/** Any byte stream (a Node Readable, a tar-stream pack...) as a web ReadableStream, pulled on demand. */
function toWebStream(source: AsyncIterable<Uint8Array | string>): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await it.next();
      if (done) controller.close();
      else controller.enqueue(typeof value === 'string' ? new TextEncoder().encode(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/** Puts a build context (a tar stream) under `name`; streamed in chunks, never buffered whole. */
export async function putBuildContext(nc: NatsConnection, subjects: Subjects, name: string, tar: AsyncIterable<Uint8Array | string>): Promise<ObjectInfo> {
  const os = await store(nc, subjects);
  return os.put({ name }, toWebStream(tar));
}

/** The context tar stored under `name`, or null when there is none. */
export async function getBuildContext(nc: NatsConnection, subjects: Subjects, name: string): Promise<{ size: number; stream: Readable } | null> {
  const os = await store(nc, subjects);
  const result = await os.get(name);
  if (!result) return null;
  const stream = Readable.fromWeb(result.data as unknown as WebReadableStream<Uint8Array>);
  // A transfer that broke mid-way surfaces as an error on the stream, not as a short tar.
  void result.error.then((err) => err && stream.destroy(err));
  return { size: result.info.size, stream };
}

/** Drops a context once its build is over. */
export async function deleteBuildContext(nc: NatsConnection, subjects: Subjects, name: string): Promise<void> {
  const os = await store(nc, subjects);
  await os.delete(name).catch(() => undefined);
}
