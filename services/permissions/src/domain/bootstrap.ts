import type { Accounts } from './accounts.js';
import { newSecret } from './secrets.js';

/** ECR's fixed test identities, seeded only when DOCKYARD_SEED_TEST_USERS is set. */
export const TEST_IDENTITIES = [
  { login: 'testuser', token: 'testuser_token', admin: false, approved: true },
  { login: 'testuser2', token: 'testuser2_token', admin: false, approved: true },
  { login: 'notapproved', token: 'notapproved_token', admin: false, approved: false },
  { login: 'admin', token: 'admin_token', admin: true, approved: true },
] as const;

/**
 * First start: with no administrator, create `admin` and give it a token, either the configured
 * DOCKYARD_ADMIN_TOKEN or a new one returned for printing once. A configured token is (re)stored
 * at every start, so an operator can rotate it through configuration.
 */
export async function bootstrapAdmin(accounts: Accounts, configuredToken?: string): Promise<string | null> {
  const hasAdmin = (await accounts.countAdmins()) > 0;
  if (hasAdmin && !configuredToken) return null;
  const user = await accounts.upsertUser('admin', { admin: true, approved: true });
  const token = configuredToken ?? newSecret('dky_');
  await accounts.ensureToken(user.id, 'bootstrap', token);
  return configuredToken ? null : token;
}

export async function seedTestIdentities(accounts: Accounts): Promise<void> {
  for (const t of TEST_IDENTITIES) {
    const user = await accounts.upsertUser(t.login, { admin: t.admin, approved: t.approved });
    await accounts.ensureToken(user.id, 'ecr-test', t.token);
  }
}
