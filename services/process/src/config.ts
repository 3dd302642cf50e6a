import { loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const int = (min: number) => z.coerce.number().int().min(min);

const NAME = /^[A-Za-z0-9._-]+$/;

/**
 * Base images by name: JSON (`{"debian_12": "dockyard/debian:bookworm"}`) or a list
 * (`debian_12=dockyard/debian:bookworm,python_3_11=...`).
 */
export function parseBaseImages(raw: string): Record<string, string> {
  const text = raw.trim();
  let entries: [string, unknown][];
  if (text.startsWith('{')) entries = Object.entries(JSON.parse(text) as Record<string, unknown>);
  else entries = text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean).map((s) => {
    const i = s.indexOf('=');
    if (i < 1) throw new Error(`"${s}" is not name=image`);
    return [s.slice(0, i).trim(), s.slice(i + 1).trim()];
  });
  const out: Record<string, string> = {};
  for (const [name, ref] of entries) {
    if (!NAME.test(name)) throw new Error(`base image name "${name}" must match ${NAME}`);
    if (typeof ref !== 'string' || !ref || /\s/.test(ref)) throw new Error(`base image ${name} needs an image reference`);
    out[name] = ref;
  }
  if (!Object.keys(out).length) throw new Error('no base images configured');
  return out;
}

const extra = {
  /** Named base images (see parseBaseImages). Both defaults are the local Debian 12 image, which has python3 3.11. */
  DOCKYARD_PROCESS_BASE_IMAGES: z
    .string()
    .default('debian_12=dockyard/debian:bookworm,python_3_11=dockyard/debian:bookworm')
    .transform((v, ctx) => {
      try {
        return parseBaseImages(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  /** Largest upload (the zip), bytes. */
  DOCKYARD_PROCESS_MAX_UPLOAD_BYTES: int(1).default(256 * 1024 * 1024),
  /** Most entries in an uploaded zip. */
  DOCKYARD_PROCESS_MAX_ENTRIES: int(1).default(10_000),
  /** Largest single entry of an uploaded zip (uncompressed), and of all entries together. */
  DOCKYARD_PROCESS_MAX_ENTRY_BYTES: int(1).default(256 * 1024 * 1024),
  DOCKYARD_PROCESS_MAX_TOTAL_BYTES: int(1).default(1024 * 1024 * 1024),
  /** Processes one worker runs at a time. */
  DOCKYARD_PROCESS_CONCURRENCY: int(1).default(2),
  /** Time limit of one process (its builds included), seconds. */
  DOCKYARD_PROCESS_TIMEOUT_S: int(1).default(3600),
  /** Attempts of one process across workers that stopped mid-way before it ends failed. */
  DOCKYARD_PROCESS_MAX_ATTEMPTS: int(1).default(2),
  DOCKYARD_PROCESS_ACK_WAIT_MS: int(1000).default(30_000),
};

/** The process service's configuration. */
export const loadProcessConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.process, extra, env);
export type ProcessConfig = ReturnType<typeof loadProcessConfig>;
