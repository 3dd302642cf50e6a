import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { applyMigrations, openDatabase, readMigrations, type SqlSession } from '../src/index.js';
import { infra } from '../src/testing.js';

function migrationsDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-mig-'));
  for (const [name, sql] of Object.entries(files)) {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'migration.sql'), sql);
  }
  return dir;
}

const FILES = {
  '0001_init': 'CREATE TABLE "things" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL);',
  '0002_more': 'ALTER TABLE "things" ADD COLUMN "size" INTEGER NOT NULL DEFAULT 0;',
};

// A client standing in for a generated PrismaClient: the kit only needs these two methods.
const fakeClient = () => ({ $disconnect: async () => undefined, $queryRawUnsafe: async <T>() => [] as T });

async function behavesLikePrismaMigrate(session: SqlSession, dir: string) {
  const migrations = await readMigrations(dir);
  expect(await applyMigrations(session, migrations)).toEqual(['0001_init', '0002_more']);
  // Idempotent: a second start applies nothing.
  expect(await applyMigrations(session, migrations)).toEqual([]);
  await session.query('INSERT INTO "things" ("name", "size") VALUES ($1, $2)', ['a', 3]);
  const rows = await session.query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number }>(
    'SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
  );
  expect(rows.map((r) => r.migration_name)).toEqual(['0001_init', '0002_more']);
  expect(rows[0].checksum).toMatch(/^[0-9a-f]{64}$/);
  expect(rows.every((r) => r.finished_at !== null && r.applied_steps_count === 1)).toBe(true);
  // An applied migration edited afterwards stops the start instead of drifting silently.
  writeFileSync(path.join(dir, '0001_init', 'migration.sql'), `${FILES['0001_init']}\n-- edited`);
  await expect(applyMigrations(session, await readMigrations(dir))).rejects.toThrow('Migration 0001_init was modified after it was applied');
}

describe('SQL migrations recorded like prisma migrate', () => {
  it('on PostgreSQL, in the service schema', async () => {
    const { databaseUrl } = infra();
    const schema = `t_mig_${process.pid}_${Date.now()}`;
    const dir = migrationsDir(FILES);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA "${schema}"`);
      await client.query(`SET search_path TO "${schema}"`);
      await behavesLikePrismaMigrate({ query: async (sql, p) => (await client.query(sql, p as unknown[])).rows, exec: async (sql) => void (await client.query(sql)) }, dir);
      const tables = await client.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, [schema]);
      expect(tables.rows.map((r) => r.table_name)).toEqual(['_prisma_migrations', 'things']);
    } finally {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on embedded PGlite', async () => {
    const dir = migrationsDir(FILES);
    const lite = await PGlite.create();
    try {
      await behavesLikePrismaMigrate({ query: async (sql, p) => (await lite.query(sql, p as unknown[])).rows as never, exec: async (sql) => void (await lite.exec(sql)) }, dir);
    } finally {
      await lite.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rolls a failing migration back entirely and reports which one', async () => {
    const dir = migrationsDir({ ...FILES, '0003_broken': 'CREATE TABLE "half" ("id" INT); SELECT * FROM "missing_table";' });
    const lite = await PGlite.create();
    try {
      const session: SqlSession = { query: async (sql, p) => (await lite.query(sql, p as unknown[])).rows as never, exec: async (sql) => void (await lite.exec(sql)) };
      await expect(applyMigrations(session, await readMigrations(dir))).rejects.toThrow(/Migration 0003_broken failed: .*missing_table/);
      const half = await lite.query(`SELECT to_regclass('half') AS t`);
      expect((half.rows[0] as { t: string | null }).t).toBeNull();
      const recorded = await lite.query('SELECT migration_name FROM "_prisma_migrations" ORDER BY 1');
      expect(recorded.rows.map((r) => (r as { migration_name: string }).migration_name)).toEqual(['0001_init', '0002_more']);
    } finally {
      await lite.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('openDatabase keeps an embedded database in the data directory across restarts', async () => {
    const dir = migrationsDir(FILES);
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-lite-'));
    try {
      const first = await openDatabase({ schema: 'x', dataDir, migrationsDir: dir, createClient: fakeClient });
      expect(first.kind).toBe('pglite');
      expect(first.applied).toEqual(['0001_init', '0002_more']);
      await first.ping();
      await first.close();
      const second = await openDatabase({ schema: 'x', dataDir, migrationsDir: dir, createClient: fakeClient });
      expect(second.applied).toEqual([]);
      await second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('openDatabase on PostgreSQL lets concurrent starts migrate once', async () => {
    const { databaseUrl } = infra();
    const schema = `t_conc_${process.pid}_${Date.now()}`;
    const dir = migrationsDir(FILES);
    try {
      const opened = await Promise.all(
        [1, 2, 3].map(() => openDatabase({ url: databaseUrl, schema, dataDir: '/nonexistent', migrationsDir: dir, createClient: fakeClient })),
      );
      expect(opened.map((d) => d.applied.length).sort()).toEqual([0, 0, 2]);
      await Promise.all(opened.map((d) => d.close()));
    } finally {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
