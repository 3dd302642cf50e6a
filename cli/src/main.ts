/** `dockyard`: runs the command line with the process's arguments and exits with its code. */
import { run } from './program.js';

// Arguments may hold a token (`login --token`): keep them out of the process title others see.
process.title = 'dockyard';

const code = await run(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  fetch: globalThis.fetch,
});
process.exitCode = code;
// Nothing left to wait for (a half-read stream, a keep-alive socket): end now.
process.stdout.write('', () => process.exit(code));
