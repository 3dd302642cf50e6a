import { loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
/** `512m`, `2g`, `1048576`: a byte size as docker spells it. */
export const sizeSchema = z
  .string()
  .regex(/^[0-9]+[bkmgBKMG]?$/, 'must be a size such as 512m or 2g')
  .transform((v) => parseSize(v));

/** Parses docker's size notation (`512m`) into bytes. */
export function parseSize(v: string): number {
  const m = /^([0-9]+)([bkmgBKMG]?)$/.exec(v);
  if (!m) throw new Error(`invalid size ${v}`);
  const unit = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'b' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

const shape = {
  /** Pipelines run side by side on this worker, at most this many (each runs its jobs one by one). */
  DOCKYARD_EXECUTION_CONCURRENCY: int(2, 1),
  /** How long a claimed pipeline stays ours without a heartbeat before JetStream redelivers it. */
  DOCKYARD_EXECUTION_ACK_WAIT_MS: int(30_000, 1000),
  DOCKYARD_EXECUTION_MAX_FILE_BYTES: int(100 * 1024 ** 2, 1),
  DOCKYARD_EXECUTION_MAX_FILES: int(32, 0),
  DOCKYARD_EXECUTION_MAX_UPLOAD_BYTES: int(512 * 1024 ** 2, 1),
  /** A zip attachment may expand to at most this many bytes (zip bombs are refused at upload). */
  DOCKYARD_EXECUTION_MAX_EXPANDED_BYTES: int(1024 ** 3, 1),
  DOCKYARD_EXECUTION_MAX_ARCHIVE_ENTRIES: int(10_000, 1),
  DOCKYARD_EXECUTION_MAX_RESULT_BYTES: int(1024 ** 3, 1),
  DOCKYARD_EXECUTION_DEFAULT_TIMEOUT: int(3600, 1),
  DOCKYARD_EXECUTION_MAX_TIMEOUT: int(86_400, 1),
  DOCKYARD_EXECUTION_DEFAULT_MEMORY: sizeSchema.default(512 * 1024 ** 2),
  DOCKYARD_EXECUTION_MAX_MEMORY: sizeSchema.default(8 * 1024 ** 3),
  DOCKYARD_EXECUTION_DEFAULT_CPUS: z.coerce.number().positive().default(1),
  DOCKYARD_EXECUTION_MAX_CPUS: z.coerce.number().positive().default(4),
  DOCKYARD_EXECUTION_PIDS_LIMIT: int(512, 1),
  DOCKYARD_EXECUTION_MAX_RETRIES: int(5, 0),
  /** Image references anyone may run (comma-separated, `*` matches within a reference); Kabuto image ids are checked by owner. */
  DOCKYARD_EXECUTION_IMAGES: z.string().default('dockyard/*'),
  /**
   * How `/inbox` and `/outbox` reach a container: `bind` (host directories under the data dir,
   * bind-mounted: the engine must see this process's filesystem), `archive` (copied in and out
   * through the engine API: any engine), `auto` (bind for a local engine socket outside a container).
   */
  DOCKYARD_EXECUTION_FILES: z.enum(['auto', 'bind', 'archive']).default('auto'),
  /** How long `POST .../kill` waits for the worker to confirm before answering with the current state. */
  DOCKYARD_EXECUTION_KILL_WAIT_MS: int(15_000, 0),
};

/** The execution service's configuration. */
export const loadExecutionConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.execution, shape, env);
export type ExecutionConfig = ReturnType<typeof loadExecutionConfig>;
