import { checkDocument, parseDocument } from '../src/domain/document.js';
import { resolveSubmoduleUrl } from '../src/domain/source.js';
import { renderApp, withFrozen } from '../src/domain/render.js';

describe('registry units (no infrastructure)', () => {
  it('resolves relative submodule URLs as git does, never above the host', () => {
    expect(resolveSubmoduleUrl('git://h:9418/org/main.git', '../sub.git')).toBe('git://h:9418/org/sub.git');
    expect(resolveSubmoduleUrl('https://h/org/main.git/', './sub')).toBe('https://h/org/main.git/sub');
    expect(resolveSubmoduleUrl('https://h/a/b/main.git', '../../c/d.git')).toBe('https://h/a/c/d.git');
    expect(resolveSubmoduleUrl('https://h/a/main.git', 'https://other/x.git')).toBe('https://other/x.git');
    expect(() => resolveSubmoduleUrl('https://h/main.git', '../../x.git')).toThrow(/escapes the repository host/);
  });

  it('keeps a YAML version as written, and refuses duplicate keys', () => {
    expect(parseDocument('version: 1.0\ndescription: x\n')).toEqual({ version: '1.0', description: 'x' });
    expect(parseDocument('version: 2\n')).toEqual({ version: '2' });
    expect(() => parseDocument('a: 1\na: 2\n')).toThrow(/neither valid JSON nor valid YAML/);
    expect(parseDocument('\uFEFF{"description": "bom"}')).toEqual({ description: 'bom' });
  });

  it('fills ECR defaults and renders keys in ECR order; freezing rewrites only frozen and the update time', () => {
    const doc = checkDocument({ description: 'd', source: { url: 'https://h/x.git', architectures: ['linux/amd64'], tag: 'v1' } });
    expect(doc).toMatchObject({ arguments: '', baseCommand: '', depends_on: '', inputs: [], resources: [], metadata: {}, frozen: false, source: { dockerfile: 'Dockerfile', build_args: {} } });
    const at = new Date('2026-01-01T00:00:00Z');
    const body = renderApp(doc, { id: 'i', namespace: 'n', name: 'r', version: 'v', owner: 'o', frozen: false, commit: 'c0ffee', createdAt: at, updatedAt: at });
    const app = JSON.parse(body);
    expect(Object.keys(app)).toEqual([...Object.keys(app)].sort());
    expect(app.source).toEqual({ architectures: ['linux/amd64'], build_args: {}, dockerfile: 'Dockerfile', git_commit: 'c0ffee', tag: 'v1', url: 'https://h/x.git' });
    const later = new Date('2026-02-01T00:00:00Z');
    expect(JSON.parse(withFrozen(body, true, later))).toEqual({ ...app, frozen: true, time_last_updated: later.toISOString() });
  });
});
