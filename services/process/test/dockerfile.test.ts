import { aptInstalls, fromLines, parseDockerfile, pinFrom, pipInstalls, serialize } from '../src/domain/dockerfile.js';

describe('Dockerfile pins', () => {
  it('rewrites apt-get install package words only, keeping options, separators and continuations', () => {
    const raw = 'RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates:amd64 \\\n    git=1:2.0 ; apt install -y jq; echo install me';
    const versions: Record<string, string> = { curl: '7.88.1-10', 'ca-certificates': '20230311', git: '1:2.39.5-0', jq: '1.6-2.1' };
    const out = aptInstalls(raw, (p) => versions[p.name] ?? null);
    expect(out.raw).toBe('RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10 ca-certificates:amd64=20230311 \\\n    git=1:2.39.5-0 ; apt install -y jq=1.6-2.1; echo install me');
    expect(out.packages.map((p) => p.name)).toEqual(['curl', 'ca-certificates', 'git', 'jq']);
    expect(aptInstalls('RUN apt-get install -y $PKGS', () => null).unpinned).toEqual(['$PKGS']);
  });

  it('appends dependency pins to the last install command of an instruction', () => {
    const raw = 'RUN apt-get update && apt-get install -y aa \\\n    bb && apt-get install -y cc; rm -rf /var/lib/apt/lists/*';
    const out = aptInstalls(raw, () => '1', ['dep1=2', 'dep2=3']);
    expect(out.raw).toBe('RUN apt-get update && apt-get install -y aa=1 \\\n    bb=1 && apt-get install -y cc=1 dep1=2 dep2=3; rm -rf /var/lib/apt/lists/*');
    expect(out.installs).toBe(2);
    expect(aptInstalls('RUN echo hi', undefined, ['x=1']).raw).toBe('RUN echo hi');
  });

  it('pins pip install packages, leaving requirement files and other specifiers alone', () => {
    const versions: Record<string, string> = { requests: '2.31.0', 'typing-extensions': '4.9.0', six: '1.16.0' };
    const out = pipInstalls('RUN pip3 install --no-cache-dir -r requirements.txt requests typing_extensions[x] "flask>=2" && python3 -m pip install six==1.0', (n) => versions[n] ?? null);
    expect(out.raw).toBe('RUN pip3 install --no-cache-dir -r requirements.txt requests==2.31.0 typing_extensions[x]==4.9.0 "flask>=2" && python3 -m pip install six==1.16.0');
    expect(out.pinned).toEqual(['requests', 'typing_extensions', 'six']);
  });

  it('finds FROM lines (stages are not pinned) and pins them with flags and names kept', () => {
    const ins = parseDockerfile('# syntax\nFROM --platform=linux/amd64 debian:12 AS builder\nRUN make\nFROM builder\nFROM scratch\n');
    expect(fromLines(ins).map((f) => [f.image, f.stage])).toEqual([['debian:12', false], ['builder', true], ['scratch', true]]);
    ins[1] = pinFrom(ins[1], 'sha256:abc', 'pinned');
    expect(serialize(ins)).toBe('# syntax\n# pinned\nFROM --platform=linux/amd64 sha256:abc AS builder\nRUN make\nFROM builder\nFROM scratch\n');
  });
});
