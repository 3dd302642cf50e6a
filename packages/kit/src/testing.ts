/**
 * Helpers for integration tests: every run gets its own database schemas, NATS subject prefix and
 * data directory, so runs (and parallel test files) never collide, and cleans up after itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

/** The real servers `make test` starts; a clear message when a test is run without them. */
export function infra(): { databaseUrl: string; natsUrl: string } {
  const databaseUrl = process.env.DATABASE_URL;
  const natsUrl = process.env.DOCKYARD_NATS_URL;
  if (!databaseUrl || !natsUrl) {
    throw new Error('Integration tests need DATABASE_URL and DOCKYARD_NATS_URL: run them with `make test` (it starts PostgreSQL and NATS)');
  }
  return { databaseUrl, natsUrl };
}

export interface TestEnv {
  /** Unique per test file: prefixes schemas and NATS subjects. */
  id: string;
  env: Record<string, string>;
  dataDir: string;
  schemas: string[];
  /** Environment for one service, its schema unique to this run. */
  serviceEnv(service: string, extra?: Record<string, string>): NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

export function testEnv(): TestEnv {
  const { databaseUrl, natsUrl } = infra();
  const id = `t${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `dockyard-${id}-`));
  const schemas: string[] = [];
  const env = {
    DATABASE_URL: databaseUrl,
    DOCKYARD_NATS_URL: natsUrl,
    DOCKYARD_NATS_PREFIX: `${id}.`,
    DOCKYARD_INTERNAL_SECRET: randomBytes(32).toString('hex'),
    DOCKYARD_DATA_DIR: dataDir,
    DOCKYARD_LOG_LEVEL: process.env.DOCKYARD_TEST_LOG_LEVEL ?? 'silent',
  };
  return {
    id,
    env,
    dataDir,
    schemas,
    serviceEnv(service, extra = {}) {
      const schema = `${id}_${service.replace(/-/g, '_')}`;
      schemas.push(schema);
      return { ...env, DOCKYARD_DB_SCHEMA: schema, DOCKYARD_PORT: '0', ...extra };
    },
    async cleanup() {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
      } finally {
        await client.end();
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
