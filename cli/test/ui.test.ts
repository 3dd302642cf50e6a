/** Spinners and progress bars only for people: both streams terminals and no --json. */
import { PassThrough } from 'node:stream';
import { bytes, table, Ui } from '../src/ui.js';

const tty = () => Object.assign(new PassThrough(), { isTTY: true });

describe('ui', () => {
  const ci = process.env.CI;
  beforeAll(() => delete process.env.CI);
  afterAll(() => {
    if (ci !== undefined) process.env.CI = ci;
  });

  it('is interactive only on terminals without --json', () => {
    expect(new Ui(false, tty(), tty()).interactive).toBe(true);
    expect(new Ui(true, tty(), tty()).interactive).toBe(false);
    expect(new Ui(false, new PassThrough(), tty()).interactive).toBe(false);
  });

  it('--json writes exactly one JSON document and no notes, spinner or bar output', () => {
    const out = tty();
    const err = tty();
    let o = '';
    let e = '';
    out.on('data', (c) => (o += c));
    err.on('data', (c) => (e += c));
    const ui = new Ui(true, out, err);
    ui.note('a note');
    ui.write('log text');
    const s = ui.spinner('waiting');
    s.update('still');
    s.stop(true);
    const p = ui.progress('upload', 10);
    p.update(5);
    p.stop();
    ui.result({ a: 1 }, 'human');
    expect(o).toBe('{"a":1}\n');
    expect(e).toBe('');
  });

  it('formats sizes and tables', () => {
    expect([bytes(10), bytes(2048), bytes(5 * 1024 * 1024)]).toEqual(['10 B', '2.0 KiB', '5.0 MiB']);
    expect(table([['ID', 'NAME'], [1, 'long-name'], [22, null]])).toEqual(['ID  NAME', '1   long-name', '22  -']);
  });
});
