import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from './helpers.js';

export { gitDaemon } from '@dockyard/kit/testing';

const git = (cwd: string, ...args: string[]) =>
  run('git', ['-c', 'user.name=Test', '-c', 'user.email=test@example.org', '-c', 'init.defaultBranch=main', ...args], { cwd });

export interface AppRepo {
  dir: string;
  rev: (ref: string) => Promise<string>;
}

/**
 * The app repository the ECR tests build: a root Dockerfile using a build arg, `app/` with a
 * differently named Dockerfile whose marker differs on branch `feature` and tag `v1.0`, a failing
 * build, a slow one (abort), and (branch `escape`) a symlink pointing outside the repository.
 */
export async function makeAppRepo(dir: string, label: string, submoduleUrl: string): Promise<AppRepo> {
  // Every image of this run, intermediate ones included, carries the run's label (cleanup; no cache across runs).
  const from = `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${label}\n`;
  await mkdir(path.join(dir, 'app'), { recursive: true });
  await git(dir, 'init', '-q');
  const write = (file: string, text: string) => mkdir(path.dirname(path.join(dir, file)), { recursive: true }).then(() => writeFile(path.join(dir, file), text));
  // A library repository beside it, included as a submodule at lib/.
  const lib = path.join(path.dirname(dir), 'lib');
  await mkdir(lib, { recursive: true });
  await git(lib, 'init', '-q');
  await writeFile(path.join(lib, 'lib.txt'), 'from-submodule\n');
  await git(lib, 'add', '-A');
  await git(lib, 'commit', '-qm', 'lib');
  await git(dir, 'submodule', '--quiet', 'add', submoduleUrl, 'lib');
  await write('Dockerfile', from + 'ARG GREETING=none\nRUN echo "greeting=$GREETING"\nCOPY app/marker.txt /marker.txt\nCOPY lib/lib.txt /lib.txt\nRUN cat /lib.txt\n');
  await write('app/Dockerfile_sage', from + 'COPY marker.txt /marker.txt\nRUN echo "marker=$(cat /marker.txt)"\n');
  await write('app/marker.txt', 'tagged');
  await write('fail/Dockerfile', from + 'RUN echo "this step fails" && exit 3\n');
  await write('slow/Dockerfile', from + 'RUN echo slow-start && sleep 60\n');
  await git(dir, 'add', '-A');
  await git(dir, 'commit', '-qm', 'tagged');
  await git(dir, 'tag', 'v1.0');
  await write('app/marker.txt', 'main-branch');
  await git(dir, 'commit', '-qam', 'main');
  await git(dir, 'checkout', '-qb', 'feature');
  await write('app/marker.txt', 'feature-branch');
  await git(dir, 'commit', '-qam', 'feature');
  // Branch `escape`: a symlink pointing outside the repository (kept off main, whose root is a context).
  await git(dir, 'checkout', '-q', 'main');
  await git(dir, 'checkout', '-qb', 'escape');
  await write('escape/Dockerfile', from + 'COPY . /x\n');
  await symlink('../../../../etc/passwd', path.join(dir, 'escape/passwd'));
  await git(dir, 'add', '-A');
  await git(dir, 'commit', '-qm', 'escape');
  await git(dir, 'checkout', '-q', 'main');
  return { dir, rev: async (ref) => (await git(dir, 'rev-parse', ref)).stdout.trim() };
}
