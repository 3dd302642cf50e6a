import { baseConfigShape, envBool, loadConfig, z } from '@dockyard/kit';
import { SERVICE_NAMES, SERVICE_PORTS, type ServiceName } from '@dockyard/contracts';

const upstream = z
  .string()
  .regex(/^https?:\/\/[^,\s]+(,https?:\/\/[^,\s]+)*$/, 'must be one or more comma-separated http:// URLs');

export const upstreamVariable = (service: ServiceName) => `DOCKYARD_${service.replaceAll('-', '_').toUpperCase()}_URL`;

const { DOCKYARD_DATA_DIR: _d, DOCKYARD_DB_SCHEMA: _s, DATABASE_URL: _u, DOCKYARD_BLOB_DIR: _b, DOCKYARD_GIT_ALLOW: _g, ...gatewayBase } = baseConfigShape;

const ownShape = {
  ...gatewayBase,
  /** How long a resolved credential is trusted before asking the permissions service again. */
  DOCKYARD_AUTH_CACHE_MS: z.coerce.number().int().min(0).max(600_000).default(5000),
  /** Requests per minute per identity (anonymous: per client address); 0 turns limits off. */
  DOCKYARD_RATE_LIMIT: z.coerce.number().int().min(0).default(6000),
  DOCKYARD_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  DOCKYARD_JWT_PUBLIC_KEY: z.string().includes('BEGIN PUBLIC KEY', { message: 'must be a PEM public key' }).optional(),
  DOCKYARD_ACCESS_LOG: envBool.default(true),
  /** `GET /events`: interval of the `: ping` comment, and bytes queued for one client before it is dropped. */
  DOCKYARD_EVENTS_PING_MS: z.coerce.number().int().min(100).max(600_000).default(15_000),
  DOCKYARD_EVENTS_MAX_BUFFER_KB: z.coerce.number().int().min(1).max(1_048_576).default(1024),
  /** `GET /events`: how long a client past that limit may take to drain before it is dropped. */
  DOCKYARD_EVENTS_STALL_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
  /** Gateway processes sharing the port (0: one per CPU), as nginx runs one worker per core. */
  DOCKYARD_GATEWAY_WORKERS: z.coerce.number().int().min(0).max(64).default(0),
};

// One DOCKYARD_<SERVICE>_URL per service, read into `upstreams`.
const shape = { ...ownShape, ...Object.fromEntries(SERVICE_NAMES.map((s) => [upstreamVariable(s), upstream])) };

export type GatewayConfig = z.infer<z.ZodObject<typeof ownShape>> & { upstreams: Record<ServiceName, string[]> };

/** The gateway's configuration: public port 8080 on all interfaces unless configured otherwise. */
export function loadGatewayConfig(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const defaults: Record<string, string> = { DOCKYARD_PORT: '8080', DOCKYARD_HOST: '0.0.0.0' };
  for (const s of SERVICE_NAMES) defaults[upstreamVariable(s)] = `http://127.0.0.1:${SERVICE_PORTS[s]}`;
  const parsed = loadConfig(shape, env, defaults);
  const upstreams = Object.fromEntries(SERVICE_NAMES.map((s) => [s, String((parsed as Record<string, unknown>)[upstreamVariable(s)]).split(',')])) as Record<ServiceName, string[]>;
  return { ...(parsed as z.infer<z.ZodObject<typeof ownShape>>), upstreams };
}
