import { startStack, type Stack } from '@dockyard/kit/testing';

/**
 * The platform for the console's test and benchmark: kit's startStack (stack.sh on its own ports,
 * run dir, data dir and NATS prefix, PGlite, test identities seeded) with local git daemons allowed
 * and one gateway process (plenty for one browser, and quicker to start). CONSOLE_TEST_STACK (JSON
 * `{"base", "adminToken", "dir"}` of a running stack started with DOCKYARD_GIT_ALLOW=127.0.0.1)
 * reuses one while working on the console.
 */
export async function startConsoleStack(): Promise<Stack> {
  if (process.env.CONSOLE_TEST_STACK) {
    const s = JSON.parse(process.env.CONSOLE_TEST_STACK) as Pick<Stack, 'base' | 'adminToken' | 'dir'>;
    return { ...s, gatewayPort: Number(new URL(s.base).port), portBase: 0, internalSecret: '', env: {}, stop: async () => undefined };
  }
  return startStack({ DOCKYARD_GIT_ALLOW: '127.0.0.1', DOCKYARD_GATEWAY_WORKERS: '1' });
}
