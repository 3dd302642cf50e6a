import { ConfigError, baseConfigShape, loadConfig, loadServiceConfig, z } from '../src/index.js';

const secret = 'x'.repeat(32);

describe('configuration', () => {
  it('applies defaults and coerces numbers', () => {
    const config = loadServiceConfig(7102, {}, { DOCKYARD_INTERNAL_SECRET: secret });
    expect(config.DOCKYARD_PORT).toBe(7102);
    expect(config.DOCKYARD_HOST).toBe('127.0.0.1');
    expect(config.DOCKYARD_NATS_URL).toBe('nats://127.0.0.1:4222');
    expect(config.DATABASE_URL).toBeUndefined();
    expect(loadServiceConfig(7102, {}, { DOCKYARD_INTERNAL_SECRET: secret, DOCKYARD_PORT: '9000' }).DOCKYARD_PORT).toBe(9000);
  });

  it('reports every bad or missing value at once, each named by its variable', () => {
    let error: unknown;
    try {
      loadConfig(baseConfigShape, { DOCKYARD_PORT: 'eighty', DATABASE_URL: 'mysql://x', DOCKYARD_LOG_LEVEL: 'loud' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(4);
    expect(problems.find((p) => p.startsWith('DOCKYARD_INTERNAL_SECRET is required'))).toBeDefined();
    expect(problems.find((p) => p.startsWith('DOCKYARD_PORT="eighty" is invalid'))).toBeDefined();
    expect(problems.find((p) => p.startsWith('DATABASE_URL="mysql://x" is invalid: must be a postgresql:// URL'))).toBeDefined();
    expect(problems.find((p) => p.startsWith('DOCKYARD_LOG_LEVEL="loud" is invalid'))).toBeDefined();
    expect((error as Error).message).toContain('Invalid configuration:\n  - ');
  });

  it('refuses a short internal secret and a malformed NATS prefix', () => {
    const load = () => loadServiceConfig(1, {}, { DOCKYARD_INTERNAL_SECRET: 'short', DOCKYARD_NATS_PREFIX: 'a.b' });
    expect(load).toThrow(/DOCKYARD_INTERNAL_SECRET="short" is invalid: must be at least 32 characters/);
    expect(load).toThrow(/DOCKYARD_NATS_PREFIX="a.b" is invalid/);
  });

  it('takes a service-specific shape beside the shared one', () => {
    const config = loadServiceConfig(1, { DOCKYARD_EXTRA: z.coerce.number().default(3) }, { DOCKYARD_INTERNAL_SECRET: secret });
    expect(config.DOCKYARD_EXTRA).toBe(3);
  });
});
