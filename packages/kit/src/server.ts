import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';
import { ConfigError } from './config.js';

/**
 * Starts a built app and closes it gracefully on SIGINT/SIGTERM (in-flight requests finish, NATS
 * drains, the database closes). A configuration error ends the process with its message and exit 78.
 */
export async function runServer(build: () => Promise<{ app: FastifyInstance; host: string; port: number }>): Promise<void> {
  let started: Awaited<ReturnType<typeof build>>;
  try {
    started = await build();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const { app, host, port } = started;
  closeWithGrace({ delay: 10_000 }, async ({ err, signal }) => {
    if (err) app.log.error({ err }, 'closing after an error');
    else app.log.info({ signal }, 'closing');
    await app.close();
  });
  await app.listen({ host, port });
}
