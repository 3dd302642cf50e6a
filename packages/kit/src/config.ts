import path from 'node:path';
import { z } from 'zod';

export { z };

/** Thrown when the environment does not describe a runnable service; the message lists every problem. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', ''])
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

const port = z.coerce.number().int().min(0).max(65535);

/** Settings every service and the gateway read; each service may extend it. */
export const baseConfigShape = {
  DOCKYARD_HOST: z.string().min(1).default('127.0.0.1'),
  DOCKYARD_PORT: port,
  DOCKYARD_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DOCKYARD_DATA_DIR: z.string().min(1).default('.data'),
  /** `api`: HTTP routes and NATS request/reply, no background consumers; `worker`: the consumers and a health/metrics listener only; `all`: both. */
  DOCKYARD_ROLE: z.enum(['all', 'api', 'worker']).default('all'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
    .optional(),
  DOCKYARD_DB_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase SQL identifier')
    .optional(),
  DOCKYARD_NATS_URL: z.string().regex(/^(nats|tls):\/\//, 'must be nats://host:port (comma-separate several)').default('nats://127.0.0.1:4222'),
  /** Replicas of every JetStream stream this deployment creates (3 on a 3-node NATS cluster). */
  DOCKYARD_NATS_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  DOCKYARD_NATS_PREFIX: z
    .string()
    .regex(/^([A-Za-z0-9_-]+\.)?$/, 'must be empty or a subject token followed by a dot, e.g. "test1."')
    .default(''),
  DOCKYARD_INTERNAL_SECRET: z.string().min(32, 'must be at least 32 characters (the gateway and every service share it)'),
  DOCKYARD_GIT_ALLOW: z.string().default(''),
  DOCKYARD_BLOB_DIR: z.string().optional(),
};

export const baseConfigSchema = z.object(baseConfigShape);
export type BaseConfig = z.infer<typeof baseConfigSchema>;

export { bool as envBool, port as envPort };

/**
 * Parse configuration from the environment once at boot. Every bad or missing value is reported
 * together, named by its variable, so an operator fixes them in one go.
 */
export function loadConfig<S extends z.ZodRawShape>(
  shape: S,
  env: NodeJS.ProcessEnv = process.env,
  defaults: Partial<Record<keyof S, string>> = {},
): z.infer<z.ZodObject<S>> {
  const input: Record<string, unknown> = {};
  for (const key of Object.keys(shape)) {
    const value = env[key];
    input[key] = value === undefined || value === '' ? (defaults as Record<string, string | undefined>)[key] : value;
  }
  const result = z.object(shape).safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? '?');
    const got = input[name];
    if (got === undefined) return `${name} is required: ${issue.message}`;
    return `${name}=${JSON.stringify(got)} is invalid: ${issue.message}`;
  });
  throw new ConfigError(problems);
}

/** The directory a service keeps its own files in: DOCKYARD_DATA_DIR/<service>. */
export function serviceDataDir(config: Pick<BaseConfig, 'DOCKYARD_DATA_DIR'>, service: string): string {
  return path.resolve(config.DOCKYARD_DATA_DIR, service);
}

/** A service's configuration: the shared settings plus its own, with its default port. */
export function loadServiceConfig<S extends z.ZodRawShape = Record<never, never>>(
  defaultPort: number,
  extra: S = {} as S,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<z.ZodObject<typeof baseConfigShape & S>> {
  return loadConfig({ ...baseConfigShape, ...extra } as typeof baseConfigShape & S, env, { DOCKYARD_PORT: String(defaultPort) } as never);
}
