import { mkdir } from 'node:fs/promises';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { applyMigrations, readMigrations, type SqlSession } from './migrations.js';

export type DriverAdapter = PrismaPg | PrismaPGlite;

/** What a service's generated PrismaClient must offer the kit. */
export interface PrismaLike {
  $disconnect(): Promise<void>;
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
}

export interface DatabaseOptions<C extends PrismaLike> {
  /** PostgreSQL URL; when absent an embedded PGlite database lives in `dataDir`. */
  url?: string;
  /** The PostgreSQL schema this service owns (ignored by PGlite, which is the service's alone). */
  schema: string;
  dataDir: string;
  migrationsDir: string;
  createClient: (adapter: DriverAdapter) => C;
}

export interface Database<C extends PrismaLike> {
  prisma: C;
  kind: 'postgres' | 'pglite';
  applied: string[];
  ping(): Promise<void>;
  close(): Promise<void>;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Opens the service's database, applies its SQL migrations, and returns a Prisma client on the
 * right driver adapter. On PostgreSQL an advisory lock keeps two starting replicas from migrating
 * at once.
 */
export async function openDatabase<C extends PrismaLike>(opts: DatabaseOptions<C>): Promise<Database<C>> {
  const migrations = await readMigrations(opts.migrationsDir);
  if (opts.url) {
    const client = new pg.Client({ connectionString: opts.url });
    await client.connect();
    let applied: string[];
    try {
      await client.query(`SELECT pg_advisory_lock(hashtext($1))`, [`dockyard:${opts.schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(opts.schema)}`);
      await client.query(`SET search_path TO ${quoteIdent(opts.schema)}`);
      const session: SqlSession = {
        query: async (sql, params) => (await client.query(sql, params as unknown[])).rows,
        exec: async (sql) => void (await client.query(sql)),
      };
      applied = await applyMigrations(session, migrations);
    } finally {
      await client.end();
    }
    const pool = new pg.Pool({ connectionString: opts.url, options: `-c search_path=${opts.schema}` });
    const prisma = opts.createClient(new PrismaPg(pool, { schema: opts.schema }));
    return {
      prisma,
      kind: 'postgres',
      applied,
      ping: async () => void (await pool.query('SELECT 1')),
      close: async () => {
        await prisma.$disconnect();
        await pool.end().catch(() => undefined);
      },
    };
  }
  await mkdir(opts.dataDir, { recursive: true });
  const lite = await PGlite.create(opts.dataDir);
  const applied = await applyMigrations(
    {
      query: async (sql, params) => (await lite.query(sql, params as unknown[])).rows as never,
      exec: async (sql) => void (await lite.exec(sql)),
    },
    migrations,
  );
  const prisma = opts.createClient(new PrismaPGlite(lite));
  return {
    prisma,
    kind: 'pglite',
    applied,
    ping: async () => void (await lite.query('SELECT 1')),
    close: async () => {
      await prisma.$disconnect();
      await lite.close();
    },
  };
}
