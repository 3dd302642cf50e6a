import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** The smallest SQL surface the migration runner needs; both pg and PGlite provide it. */
export interface SqlSession {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  exec(sql: string): Promise<void>;
}

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

/** Reads `prisma/migrations/<name>/migration.sql` files in name order, as `prisma migrate` does. */
export async function readMigrations(dir: string): Promise<Migration[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const names = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const out: Migration[] = [];
  for (const name of names) {
    const sql = await readFile(path.join(dir, name, 'migration.sql'), 'utf8').catch(() => null);
    if (sql === null) continue;
    out.push({ name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return out;
}

// The table `prisma migrate deploy` keeps, with the same columns, so either tool sees the other's work.
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

/**
 * Applies the migrations not yet recorded, each in its own transaction, and refuses to start when
 * an applied migration's file was edited afterwards (its checksum changed). Returns the names applied.
 */
export async function applyMigrations(db: SqlSession, migrations: Migration[]): Promise<string[]> {
  await db.exec(MIGRATIONS_TABLE);
  const rows = await db.query<{ migration_name: string; checksum: string }>(
    'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
  );
  const applied = new Map(rows.map((r) => [r.migration_name, r.checksum]));
  const done: string[] = [];
  for (const m of migrations) {
    const checksum = applied.get(m.name);
    if (checksum !== undefined) {
      if (checksum !== m.checksum) throw new Error(`Migration ${m.name} was modified after it was applied (checksum differs)`);
      continue;
    }
    const id = randomUUID();
    await db.exec('BEGIN');
    try {
      await db.query('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at) VALUES ($1, $2, $3, now())', [id, m.checksum, m.name]);
      await db.exec(m.sql);
      await db.query('UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1', [id]);
      await db.exec('COMMIT');
    } catch (err) {
      await db.exec('ROLLBACK');
      throw new Error(`Migration ${m.name} failed: ${(err as Error).message}`);
    }
    done.push(m.name);
  }
  return done;
}
