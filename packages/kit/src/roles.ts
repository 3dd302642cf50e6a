import type { FastifyInstance } from 'fastify';
import type { BaseConfig } from './config.js';

type Role = Pick<BaseConfig, 'DOCKYARD_ROLE'>;

/** Whether this process serves the service's HTTP routes and NATS request/reply (`api` or `all`). */
export const servesApi = (config: Role): boolean => config.DOCKYARD_ROLE !== 'worker';

/** Whether this process runs the service's background consumers (`worker` or `all`). */
export const runsWorkers = (config: Role): boolean => config.DOCKYARD_ROLE !== 'api';

/** A service's background work: started once, stopped on shutdown (in-progress work goes back to the queue). */
export interface BackgroundWorker {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface RunWorkerOptions {
  /** Name in log lines, e.g. `build worker`. */
  name: string;
  /** Delay between start attempts while a dependency (the Docker engine) is down; default 5 s. */
  retryMs?: number;
}

/**
 * The one shape every service's worker starts in: only when DOCKYARD_ROLE is `worker` or `all`;
 * made and started in the background once the app is ready (`ready()` does not wait for it); when that fails (e.g. the Docker engine is down) the API
 * still serves and the worker keeps trying every `retryMs`; on shutdown (before NATS drains) the
 * retry is cancelled and a started worker stopped, handing its unfinished work back to the queue.
 * Returns whether a worker will run in this process.
 */
export function runWorker(app: FastifyInstance, config: Role, create: () => BackgroundWorker | Promise<BackgroundWorker>, opts: RunWorkerOptions): boolean {
  if (!runsWorkers(config)) return false;
  const retryMs = opts.retryMs ?? 5000;
  let worker: BackgroundWorker | null = null;
  let retry: NodeJS.Timeout | null = null;
  let closing = false;
  let attempt: Promise<void> | null = null;
  const start = async (): Promise<void> => {
    if (closing) return;
    try {
      worker ??= await create();
      await worker.start();
      app.log.info(`${opts.name} started`);
    } catch (err) {
      if (closing) return;
      app.log.error({ err }, `${opts.name} could not start; retrying in ${Math.round(retryMs / 1000)} s`);
      retry = setTimeout(() => void (attempt = start()), retryMs);
    }
  };
  // Not awaited: a start is slow on a loaded machine or a NATS cluster electing leaders, and
  // Fastify fails an onReady hook that takes over its plugin timeout. Work waits in the queue.
  app.addHook('onReady', async () => {
    attempt = start();
  });
  app.addHook('preClose', async () => {
    closing = true;
    if (retry) clearTimeout(retry);
    await attempt;
    await worker?.stop();
  });
  return true;
}
