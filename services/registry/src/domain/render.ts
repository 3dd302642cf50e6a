import type { AppDocument } from './document.js';

export interface AppIdentity {
  id: string;
  namespace: string;
  name: string;
  version: string;
  owner: string;
  frozen: boolean;
  commit: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const sorted = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)));

/**
 * The stored app as GET returns it (ECR's shape: every field, keys in alphabetical order as ECR's
 * JSON had them), rendered once at submit so a read sends the stored text as it is.
 */
export function renderApp(doc: AppDocument, who: AppIdentity): string {
  const { namespace: _n, name: _m, version: _v, frozen: _f, source, ...fields } = doc;
  const app = sorted({
    ...fields,
    id: who.id,
    namespace: who.namespace,
    name: who.name,
    version: who.version,
    owner: who.owner,
    frozen: who.frozen,
    source: sorted({ ...source, ...(who.commit ? { git_commit: who.commit } : {}) }),
    time_created: who.createdAt.toISOString(),
    time_last_updated: who.updatedAt.toISOString(),
  });
  return JSON.stringify(app);
}

/** A stored body with its `frozen` flag and update time changed (PUT ?frozen=). */
export function withFrozen(body: string, frozen: boolean, at: Date): string {
  const app = JSON.parse(body) as Record<string, unknown>;
  app.frozen = frozen;
  app.time_last_updated = at.toISOString();
  return JSON.stringify(app);
}
