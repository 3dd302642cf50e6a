import { simpleGit, type SimpleGit } from 'simple-git';
import { assertGitUrlAllowed, type GitPolicy } from '@dockyard/kit';
import { BuildFailure } from './types.js';

export interface CheckoutOptions {
  url: string;
  dir: string;
  policy: GitPolicy;
  commit?: string | null;
  branch?: string | null;
  tag?: string | null;
  submodules: boolean;
  signal: AbortSignal;
  log: (line: string) => void;
}

/** Protocols git may use: only those the policy allows (so a submodule cannot reach ext:: or file://). */
function protocolConfig(policy: GitPolicy): string[] {
  const config = ['protocol.allow=never'];
  for (const scheme of policy.schemes) if (/^[a-z0-9+.-]+$/.test(scheme) && scheme !== 'ext') config.push(`protocol.${scheme}.allow=always`);
  return config;
}

function gitFor(dir: string, policy: GitPolicy, signal: AbortSignal): SimpleGit {
  return simpleGit({
    baseDir: dir,
    config: protocolConfig(policy),
    abort: signal,
    unsafe: { allowUnsafeProtocolOverride: true },
  }).env({ ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '/bin/false' });
}

const describe = (err: unknown) => (err instanceof Error ? err.message : String(err)).trim().split('\n').slice(-3).join(' ');

/**
 * Clones `url` into `dir` and checks out the recorded commit (else the tag, else the branch, else
 * the default branch), submodules included. The URL and every submodule URL obey the git policy.
 */
export async function checkout(opts: CheckoutOptions): Promise<string> {
  const { url, dir, policy, signal, log } = opts;
  await assertGitUrlAllowed(url, policy).catch((err: Error) => {
    throw new BuildFailure(err.message);
  });
  const git = gitFor(process.cwd(), policy, signal);
  log(`Cloning ${url}`);
  try {
    await git.clone(url, dir, ['--no-checkout', '--quiet']);
  } catch (err) {
    if (signal.aborted) throw err;
    throw new BuildFailure(`Could not clone ${url}: ${describe(err)}`);
  }
  const repo = gitFor(dir, policy, signal);
  const ref = opts.commit || (opts.tag ? `refs/tags/${opts.tag}` : opts.branch ? `origin/${opts.branch}` : 'HEAD');
  let commit: string;
  try {
    commit = (await repo.revparse([`${ref}^{commit}`])).trim();
    await repo.checkout(['--quiet', '--detach', commit]);
  } catch (err) {
    if (signal.aborted) throw err;
    const what = opts.commit ? `commit ${opts.commit}` : opts.tag ? `tag ${opts.tag}` : opts.branch ? `branch ${opts.branch}` : 'the default branch';
    throw new BuildFailure(`Could not check out ${what}: ${describe(err)}`);
  }
  log(`Checked out ${commit}`);
  if (opts.submodules) {
    let urls: string[] = [];
    try {
      const raw = await repo.raw(['config', '-f', '.gitmodules', '--get-regexp', '^submodule\\..*\\.url$']);
      urls = raw.split('\n').filter(Boolean).map((l) => l.slice(l.indexOf(' ') + 1).trim());
    } catch {
      // No .gitmodules: nothing to fetch.
    }
    if (urls.length) {
      for (const sub of urls) {
        // Relative submodule URLs live beside the repository, on the host already allowed.
        if (!sub.startsWith('../') && !sub.startsWith('./')) {
          await assertGitUrlAllowed(sub, policy).catch((err: Error) => {
            throw new BuildFailure(`Submodule ${sub}: ${err.message}`);
          });
        }
      }
      log(`Fetching ${urls.length} submodule(s)`);
      try {
        await repo.raw(['submodule', 'update', '--init', '--recursive']);
      } catch (err) {
        if (signal.aborted) throw err;
        throw new BuildFailure(`Could not fetch submodules: ${describe(err)}`);
      }
    }
  }
  return commit;
}
