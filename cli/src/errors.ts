/** Exit codes of `dockyard` (documented in `dockyard --help` and the README). */
export const EXIT = {
  ok: 0,
  /** Anything unexpected (a server error, a bug). */
  unexpected: 1,
  /** Bad usage: unknown command or option, a missing argument, input the server refused as invalid (400). */
  usage: 2,
  /** Not signed in, or the server refused (401/403). */
  refused: 3,
  /** The thing named does not exist (404). */
  notFound: 4,
  /** The operation itself failed: build FAILURE, job failed or killed, request or process failed. */
  failed: 5,
  /** The gateway could not be reached. */
  unreachable: 6,
} as const;

export const EXIT_HELP = `Exit codes:
  0  ok
  1  unexpected error (server error, bug)
  2  usage error (bad command, option or argument; input the server refused as invalid)
  3  not signed in, or refused (HTTP 401/403)
  4  not found (HTTP 404)
  5  the operation itself failed (build FAILURE, job failed/killed, request or process failed)
  6  gateway unreachable`;

/** An error that ends the command with a meaningful exit code and a one-line message. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly status?: number,
    /** Extra machine-readable detail printed under --json. */
    readonly detail?: unknown,
  ) {
    super(message);
  }
}

/** The exit code an HTTP error status means. */
export function exitCodeForStatus(status: number): number {
  if (status === 401 || status === 403) return EXIT.refused;
  if (status === 404) return EXIT.notFound;
  if (status === 400 || status === 413 || status === 422) return EXIT.usage;
  return EXIT.unexpected;
}

/** The exit code for anything thrown while running a command. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (isUnreachable(err)) return EXIT.unreachable;
  return EXIT.unexpected;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/** Whether a fetch failure means the gateway was not reached (connection refused, unknown host, ...). */
export function isUnreachable(err: unknown): boolean {
  // fetch rejects with TypeError('fetch failed') for network errors only (the cause says which).
  if (err instanceof TypeError && err.message === 'fetch failed') return true;
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: string }).code;
    if (code && NETWORK_CODES.has(code)) return true;
    if (Array.isArray((e as { errors?: unknown[] }).errors) && (e as { errors: unknown[] }).errors.some(isUnreachable)) return true;
  }
  return false;
}
