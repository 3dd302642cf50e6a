/**
 * Output: human text or (--json) one JSON document on stdout; a spinner while waiting and progress
 * bars for transfers, drawn on stderr and only when both stdout and stderr are terminals and
 * --json is off, so pipes and scripts see nothing but the result.
 */
import cliProgress from 'cli-progress';
import { createSpinner } from 'nanospinner';

export interface Spinner {
  update(text: string): void;
  stop(ok: boolean, text?: string): void;
}

export interface Progress {
  update(done: number, total?: number): void;
  stop(): void;
}

export class Ui {
  readonly interactive: boolean;
  constructor(
    readonly json: boolean,
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout,
    private readonly err: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
  ) {
    // A terminal that reports no width (e.g. a pty nobody sized) makes redrawing spinners misbehave.
    const width = (err as { columns?: number }).columns;
    this.interactive = !json && Boolean(out.isTTY) && Boolean(err.isTTY) && !process.env.CI && (width === undefined || width > 0);
  }

  /** The result of a command: `value` as JSON under --json, else `human` (a string or lines). */
  result(value: unknown, human?: string | string[] | (() => string | string[])): void {
    if (this.json) {
      this.out.write(`${JSON.stringify(value ?? null)}\n`);
      return;
    }
    const text = typeof human === 'function' ? human() : human;
    if (text === undefined) this.out.write(`${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}\n`);
    else if (Array.isArray(text)) this.out.write(text.length ? `${text.join('\n')}\n` : '');
    else if (text !== '') this.out.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Text streamed as it comes (logs); nothing of it under --json. */
  write(text: string): void {
    if (!this.json) this.out.write(text);
  }

  /** A note for people (stderr), silent under --json. */
  note(text: string): void {
    if (!this.json) this.err.write(`${text}\n`);
  }

  spinner(text: string): Spinner {
    if (!this.interactive) return { update() {}, stop() {} };
    const s = createSpinner(text, { stream: this.err as NodeJS.WriteStream }).start();
    return {
      update: (t) => s.update({ text: t }),
      stop: (ok, t) => (ok ? s.success({ text: t ?? text }) : s.error({ text: t ?? text })),
    };
  }

  progress(label: string, total?: number): Progress {
    if (!this.interactive) return { update() {}, stop() {} };
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% {done}/{size}`, stream: this.err as NodeJS.WriteStream, hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    let max = total ?? 0;
    bar.start(Math.max(max, 1), 0, { done: bytes(0), size: max ? bytes(max) : '?' });
    return {
      update(done, t) {
        if (t && t !== max) {
          max = t;
          bar.setTotal(t);
        }
        if (done > max) bar.setTotal(done);
        bar.update(done, { done: bytes(done), size: max ? bytes(max) : '?' });
      },
      stop: () => bar.stop(),
    };
  }
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Rows as aligned columns (first row the header). */
export function table(rows: (string | number | boolean | null | undefined)[][]): string[] {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd());
}
