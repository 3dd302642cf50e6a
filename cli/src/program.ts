/** The `dockyard` command tree (commander) and `run(argv)`, which returns the exit code. */
import { Command, CommanderError } from 'commander';
import { authCommands } from './commands/auth.js';
import { appsCommands } from './commands/apps.js';
import { buildCommands } from './commands/build.js';
import { cacheCommands } from './commands/cache.js';
import { executionCommands } from './commands/execution.js';
import { reeCommands } from './commands/ree.js';
import type { Io } from './context.js';
import { CliError, EXIT, EXIT_HELP, exitCodeFor } from './errors.js';

export const VERSION = '0.1.0';

/** The whole command tree, writing to `io`; commander never exits the process itself. */
export function buildProgram(io: Io): Command {
  const program = new Command('dockyard');
  program
    .description('The command line for Dockyard: apps, builds, images, pipelines and jobs, source caches and REEs, through the gateway.')
    .version(VERSION, '-V, --version')
    .option('--url <url>', 'the gateway (default: DOCKYARD_URL, the stored one, http://127.0.0.1:8080)')
    .option('--json', 'print machine-readable JSON only (no spinners or progress bars)')
    .addHelpText(
      'after',
      `
Credentials: \`dockyard login\` keeps the gateway URL and an API token in
$XDG_CONFIG_HOME/dockyard/config.json (~/.config/dockyard/config.json), mode 0600.
DOCKYARD_URL and DOCKYARD_TOKEN override them.

${EXIT_HELP}`,
    )
    .showHelpAfterError('(add --help for usage)')
    .enablePositionalOptions(false);
  authCommands(program, io);
  appsCommands(program, io);
  buildCommands(program, io);
  executionCommands(program, io);
  cacheCommands(program, io);
  reeCommands(program, io);

  // Every (sub)command: write through io, throw instead of exiting, unknown options are errors.
  const configure = (c: Command) => {
    c.exitOverride();
    c.configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
    c.commands.forEach(configure);
  };
  configure(program);
  return program;
}

/** Runs `dockyard` with `args` (without node and the script); resolves to the exit code. */
export async function run(args: string[], io: Io): Promise<number> {
  const program = buildProgram(io);
  const json = args.includes('--json');
  try {
    await program.parseAsync(args, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end with exit code 0; everything else commander refuses is a usage error.
      if (err.exitCode === 0) return EXIT.ok;
      if (json) io.stdout.write(`${JSON.stringify({ error: err.message.replace(/^error: /, ''), exitCode: EXIT.usage })}\n`);
      return EXIT.usage;
    }
    const code = exitCodeFor(err);
    const message = err instanceof Error ? err.message : String(err);
    if (json) {
      const out: Record<string, unknown> = { error: message, exitCode: code };
      if (err instanceof CliError && err.status) out.status = err.status;
      if (err instanceof CliError && err.detail !== undefined && code === EXIT.failed) out.detail = err.detail;
      io.stdout.write(`${JSON.stringify(out)}\n`);
    } else {
      io.stderr.write(`dockyard: ${message}\n`);
      if (code === EXIT.unexpected && !(err instanceof CliError) && io.env.DOCKYARD_DEBUG) io.stderr.write(`${(err as Error).stack}\n`);
    }
    return code;
  }
}
