/**
 * Just enough Dockerfile handling for REE definitions: the FROM lines (which base images a build
 * depends on) and the `apt-get install` commands of RUN lines (which packages it asks for), and
 * rewriting both with pins. Everything else is kept byte for byte.
 */

export interface FromLine {
  /** Index of the instruction in `instructions`. */
  index: number;
  image: string;
  /** A previous stage or `scratch`: nothing to pin. */
  stage: boolean;
}

export interface Instruction {
  /** The instruction's raw text, continuation lines included (no trailing newline). */
  raw: string;
  keyword: string;
}

/** Splits a Dockerfile into instructions (comments and blank lines are kept as their own entries). */
export function parseDockerfile(text: string): Instruction[] {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const out: Instruction[] = [];
  let current: string[] = [];
  for (const line of lines) {
    if (!current.length && (/^\s*#/.test(line) || !line.trim())) {
      out.push({ raw: line, keyword: '' });
      continue;
    }
    current.push(line);
    // A continuation: the line ends with a backslash (comment lines inside continue too).
    if (/\\\s*$/.test(line) || (current.length > 1 && /^\s*#/.test(line))) continue;
    const raw = current.join('\n');
    out.push({ raw, keyword: (/^\s*([A-Za-z]+)/.exec(raw)?.[1] ?? '').toUpperCase() });
    current = [];
  }
  if (current.length) {
    const raw = current.join('\n');
    out.push({ raw, keyword: (/^\s*([A-Za-z]+)/.exec(raw)?.[1] ?? '').toUpperCase() });
  }
  return out;
}

export function serialize(instructions: Instruction[]): string {
  return instructions.map((i) => i.raw).join('\n') + '\n';
}

/** The FROM instructions: image and whether it names an earlier stage. */
export function fromLines(instructions: Instruction[]): FromLine[] {
  const stages = new Set<string>();
  const out: FromLine[] = [];
  instructions.forEach((ins, index) => {
    if (ins.keyword !== 'FROM') return;
    const words = ins.raw.replace(/\\\n/g, ' ').trim().split(/\s+/).slice(1).filter((w) => !w.startsWith('--'));
    const image = words[0] ?? '';
    const stage = image === 'scratch' || stages.has(image.toLowerCase());
    if (words[1]?.toLowerCase() === 'as' && words[2]) stages.add(words[2].toLowerCase());
    out.push({ index, image, stage });
  });
  return out;
}

/** Rewrites one FROM instruction's image (flags and `AS name` kept), with a comment above it. */
export function pinFrom(ins: Instruction, pinned: string, comment: string): Instruction {
  const words = ins.raw.replace(/\\\n/g, ' ').trim().split(/\s+/);
  const flags = words.slice(1).filter((w) => w.startsWith('--'));
  const rest = words.slice(1).filter((w) => !w.startsWith('--'));
  const line = ['FROM', ...flags, pinned, ...rest.slice(1)].join(' ');
  return { keyword: 'FROM', raw: `# ${comment}\n${line}` };
}

const SEPARATORS = new Set(['&&', '||', ';', '|', '&']);
// A plain package argument: name, name=version, name:arch, name:arch=version.
const PACKAGE_ARG = /^([a-z0-9][a-z0-9+.-]+)(:[a-z0-9-]+)?(=[^\s]+)?$/;

export interface AptRequest {
  name: string;
  arch: string | null;
}

/**
 * Finds the packages of every `apt-get install` / `apt install` in a RUN instruction and, when
 * `pin` is given, rewrites them as `name=version` (unknown names are left alone and reported).
 */
export function aptInstalls(
  raw: string,
  pin?: (p: AptRequest) => string | null,
  append: string[] = [],
): { raw: string; packages: AptRequest[]; unpinned: string[]; installs: number } {
  // Tokens with the whitespace between them kept, so the rewrite changes only package words.
  const parts = raw.split(/(\s+)/);
  const packages: AptRequest[] = [];
  const unpinned: string[] = [];
  let state: 'none' | 'apt' | 'install' = 'none';
  let installs = 0;
  // The last word of the last install command: where `append` goes.
  let lastWord = -1;
  for (let i = 0; i < parts.length; i += 2) {
    let word = parts[i];
    if (!word) continue;
    let trailing = '';
    if (word.length > 1 && word.endsWith(';')) {
      trailing = ';';
      word = word.slice(0, -1);
    }
    if (SEPARATORS.has(word) || word === '\\') {
      if (word !== '\\') state = 'none';
      continue;
    }
    if (state === 'none') {
      if (word === 'apt-get' || word === 'apt') state = 'apt';
    } else if (state === 'apt') {
      if (word === 'install') {
        state = 'install';
        installs++;
        lastWord = i;
      } else if (!word.startsWith('-')) state = 'none';
    } else if (!word.startsWith('-')) {
      lastWord = i;
      const m = PACKAGE_ARG.exec(word);
      if (m) {
        const req = { name: m[1], arch: m[2]?.slice(1) ?? null };
        packages.push(req);
        const version = pin?.(req);
        if (pin && version) parts[i] = `${m[1]}${m[2] ?? ''}=${version}${trailing}`;
        else if (pin) unpinned.push(word);
      } else if (pin) unpinned.push(word);
    } else lastWord = i;
    if (trailing) state = 'none';
  }
  if (append.length && lastWord >= 0) {
    const word = parts[lastWord];
    const semi = word.length > 1 && word.endsWith(';') ? ';' : '';
    parts[lastWord] = `${semi ? word.slice(0, -1) : word} ${append.join(' ')}${semi}`;
  }
  return { raw: parts.join(''), packages, unpinned, installs };
}

// A plain pip requirement word: name, name[extra], name==version (other specifiers left alone).
const PIP_ARG = /^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?(==[^\s]+)?$/;

/**
 * Pins the packages of `pip install` / `pip3 install` / `python3 -m pip install` commands as
 * `name==version` (requirement files, URLs and other specifiers are left alone).
 */
export function pipInstalls(raw: string, pin: (name: string) => string | null): { raw: string; pinned: string[] } {
  const parts = raw.split(/(\s+)/);
  const pinned: string[] = [];
  let state: 'none' | 'pip' | 'install' = 'none';
  let skipNext = false;
  for (let i = 0; i < parts.length; i += 2) {
    let word = parts[i];
    if (!word) continue;
    let trailing = '';
    if (word.length > 1 && word.endsWith(';')) {
      trailing = ';';
      word = word.slice(0, -1);
    }
    if (SEPARATORS.has(word)) {
      state = 'none';
      continue;
    }
    if (word === '\\') continue;
    if (state === 'none') {
      if (/^pip[0-9.]*$/.test(word) || (word === 'pip' && parts[i - 2] === '-m')) state = 'pip';
    } else if (state === 'pip') {
      if (word === 'install') state = 'install';
      else if (!word.startsWith('-')) state = 'none';
    } else if (skipNext) skipNext = false;
    else if (word.startsWith('-')) {
      // Options taking a value: the next word is not a package.
      if (/^(-r|--requirement|-c|--constraint|-e|--editable|-i|--index-url|--extra-index-url|-f|--find-links|-t|--target|--prefix|--root)$/.test(word)) skipNext = true;
    } else {
      const m = PIP_ARG.exec(word);
      const version = m ? pin(m[1].toLowerCase().replace(/_/g, '-')) : null;
      if (m && version) {
        parts[i] = `${m[1]}${m[2] ?? ''}==${version}${trailing}`;
        pinned.push(m[1]);
      }
    }
    if (trailing) state = 'none';
  }
  return { raw: parts.join(''), pinned };
}
