/**
 * The gateway client: every call goes to the public API with `Authorization: Bearer <token>`;
 * answers that are not 2xx become a CliError whose exit code follows the status, and a gateway
 * that cannot be reached becomes exit code 6.
 */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CliError, EXIT, exitCodeForStatus, isUnreachable } from './errors.js';

export type Fetch = typeof fetch;

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  /** A raw text body (app documents) with its content type. */
  text?: { body: string; type: string };
  form?: URLSearchParams;
  multipart?: FormData;
  headers?: Record<string, string>;
  /** Statuses that are not errors for this call. */
  allow?: number[];
  /** Called with bytes sent so far while a multipart body is uploaded. */
  onUpload?: (sent: number) => void;
  signal?: AbortSignal;
}

export class Client {
  constructor(
    readonly url: string,
    readonly token: string | undefined,
    private readonly fetchFn: Fetch = fetch,
  ) {}

  /** One request; throws CliError for a status that is not 2xx (or allowed). */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const target = new URL(this.url + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined && v !== false) target.searchParams.set(k, v === true ? '' : String(v));
    const headers: Record<string, string> = { 'user-agent': 'dockyard-cli', ...opts.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: RequestInit['body'];
    let duplex: 'half' | undefined;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.text) {
      headers['content-type'] = opts.text.type;
      body = opts.text.body;
    } else if (opts.form) {
      body = opts.form;
    } else if (opts.multipart) {
      if (opts.onUpload) {
        // Stream the encoded form through a byte counter (files are Blobs backed by disk, never read whole).
        const encoded = new Response(opts.multipart);
        headers['content-type'] = encoded.headers.get('content-type')!;
        let sent = 0;
        const onUpload = opts.onUpload;
        body = encoded.body!.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, ctl) {
              sent += chunk.byteLength;
              onUpload(sent);
              ctl.enqueue(chunk);
            },
          }),
        );
        duplex = 'half';
      } else {
        body = opts.multipart;
      }
    }
    let res: Response;
    try {
      res = await this.fetchFn(target, { method, headers, body, signal: opts.signal, ...(duplex ? { duplex } : {}) } as RequestInit);
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      if (isUnreachable(err)) throw new CliError(`Cannot reach the gateway at ${this.url} (${describe(err)})`, EXIT.unreachable);
      throw err;
    }
    if (res.ok || opts.allow?.includes(res.status)) return res;
    throw await this.errorFor(res);
  }

  /** A JSON answer. */
  async json<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, opts);
    const text = await res.text();
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`The gateway answered ${method} ${path} with something that is not JSON: ${text.slice(0, 200)}`, EXIT.unexpected);
    }
  }

  /**
   * Streams a download into `file` (written under a temporary name, renamed when complete).
   * `onProgress(received, total)`; total is undefined without a Content-Length.
   */
  async download(path: string, file: string, onProgress?: (received: number, total?: number) => void, opts: RequestOptions = {}): Promise<{ bytes: number; filename?: string }> {
    const res = await this.request('GET', path, opts);
    const length = Number(res.headers.get('content-length'));
    const total = Number.isFinite(length) && length > 0 ? length : undefined;
    let received = 0;
    const tmp = `${file}.part`;
    try {
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            received += chunk.length;
            onProgress?.(received, total);
            cb(null, chunk);
          },
        }),
        createWriteStream(tmp, { mode: 0o644 }),
      );
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    const disposition = res.headers.get('content-disposition') ?? '';
    const filename = /filename="?([^";]+)"?/.exec(disposition)?.[1];
    return { bytes: received, filename };
  }

  private async errorFor(res: Response): Promise<CliError> {
    const text = await res.text().catch(() => '');
    let message = text.trim();
    let detail: unknown;
    try {
      detail = JSON.parse(text);
      const e = (detail as { error?: unknown; message?: unknown }).error ?? (detail as { message?: unknown }).message;
      if (typeof e === 'string') message = e;
    } catch {
      /* a text body */
    }
    if (!message) message = `${res.status} ${res.statusText}`;
    if ((res.status === 401 || res.status === 403) && !this.token) message += ' (not signed in: run `dockyard login` or set DOCKYARD_TOKEN)';
    return new CliError(message, exitCodeForStatus(res.status), res.status, detail);
  }
}

function describe(err: unknown): string {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: string }).code;
    if (code) return code;
  }
  return err instanceof Error ? err.message : String(err);
}
