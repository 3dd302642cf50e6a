import { aptInstalls, fromLines, parseDockerfile, pinFrom, serialize } from '../src/domain/dockerfile.js';

describe('Dockerfile pins', () => {
  it('rewrites apt-get install package words only, keeping options, separators and continuations', () => {
    const raw = 'RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates:amd64 \\\n    git=1:2.0 ; apt install -y jq; echo install me';
    const versions: Record<string, string> = { curl: '7.88.1-10', 'ca-certificates': '20230311', git: '1:2.39.5-0', jq: '1.6-2.1' };
    const out = aptInstalls(raw, (p) => versions[p.name] ?? null);
    expect(out.raw).toBe('RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10 ca-certificates:amd64=20230311 \\\n    git=1:2.39.5-0 ; apt install -y jq=1.6-2.1; echo install me');
    expect(out.packages.map((p) => p.name)).toEqual(['curl', 'ca-certificates', 'git', 'jq']);
    expect(aptInstalls('RUN apt-get install -y $PKGS', () => null).unpinned).toEqual(['$PKGS']);
  });

  it('finds FROM lines (stages are not pinned) and pins them with flags and names kept', () => {
    const ins = parseDockerfile('# syntax\nFROM --platform=linux/amd64 debian:12 AS builder\nRUN make\nFROM builder\nFROM scratch\n');
    expect(fromLines(ins).map((f) => [f.image, f.stage])).toEqual([['debian:12', false], ['builder', true], ['scratch', true]]);
    ins[1] = pinFrom(ins[1], 'sha256:abc', 'pinned');
    expect(serialize(ins)).toBe('# syntax\n# pinned\nFROM --platform=linux/amd64 sha256:abc AS builder\nRUN make\nFROM builder\nFROM scratch\n');
  });
});
