/** HTTP statuses and failures -> the documented exit codes. */
import { CliError, EXIT, exitCodeFor, exitCodeForStatus, isUnreachable } from '../src/errors.js';

describe('exit codes', () => {
  it('maps statuses', () => {
    expect([401, 403, 404, 400, 413, 422, 409, 500, 502].map(exitCodeForStatus)).toEqual([3, 3, 4, 2, 2, 2, 1, 1, 1]);
  });
  it('maps thrown errors', () => {
    expect(exitCodeFor(new CliError('x', EXIT.failed))).toBe(5);
    expect(exitCodeFor(new Error('boom'))).toBe(1);
    const refused = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    expect(isUnreachable(refused)).toBe(true);
    expect(exitCodeFor(refused)).toBe(6);
    expect(isUnreachable({ cause: { errors: [{ code: 'EHOSTUNREACH' }] } })).toBe(true);
    expect(isUnreachable(new Error('no'))).toBe(false);
  });
});
