/**
 * The web console (issue 8) in real Chromium against the whole platform (startStack): the gateway
 * serves the bundle at `/`; a user signs in with login and password, submits an app from a local git
 * daemon, watches its build reach SUCCESS and its log on the page, runs a job, sees its log line
 * arrive live, and downloads the result zip. Screenshots of every page go to .run/screenshots/console/.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { gitDaemon, type Stack } from '@dockyard/kit/testing';
import { startConsoleStack } from '../bench/console/stack.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const shots = path.join(root, '.run/screenshots/console');
const LONG = 150_000;

describe('web console', () => {
  let stack: Stack;
  let browser: Browser;
  let daemon: Awaited<ReturnType<typeof gitDaemon>> | undefined;
  let page: Page;
  let user = '';

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    // The bundle the gateway serves (make generate builds it; build it here if a run skipped that).
    await run('pnpm', ['--filter', '@dockyard/console', 'run', 'generate'], { cwd: root });
    stack = await startConsoleStack();
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    daemon?.stop();
    await stack?.stop();
    console.log(`console screenshots: ${shots}`);
  });

  const shot = (name: string, p: Page = page) => p.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const go = async (hash: string, p: Page = page) => {
    await p.evaluate(`location.hash = ${JSON.stringify(hash)}`);
  };

  it('serves the bundle at / (index no-cache, hashed assets immutable) without shadowing the APIs', async () => {
    const index = await fetch(`${stack.base}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(`${stack.base}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('cache-control')).toContain('immutable');
    // APIs keep their paths.
    expect((await fetch(`${stack.base}/auth/whoami`)).status).toBe(401);
    expect((await fetch(`${stack.base}/assets/nope.js`)).status).toBe(404);
  });

  it('signs in with login and password, submits an app and watches its build succeed', async () => {
    // A user with a password (the admin API), to sign in as Kabuto users do.
    user = `webuser${process.env.CONSOLE_TEST_STACK ? Date.now() % 100000 : ''}`;
    const created = await fetch(`${stack.base}/auth/users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ login: user, password: 'S3cret-web', email: 'web@example.org', approved: true }),
    });
    expect(created.status).toBeLessThan(300);

    const repos = path.join(stack.dir, 'git');
    const work = path.join(repos, 'hello');
    mkdirSync(work, { recursive: true });
    writeFileSync(path.join(work, 'Dockerfile'), 'FROM dockyard/busybox:latest\nRUN echo built-in-console > /greeting\n');
    const git = (...args: string[]) => run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args]);
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-q', '-m', 'hello');
    daemon = await gitDaemon(repos);

    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 800 } });
    page = await context.newPage();
    await page.goto(`${stack.base}/`);
    await page.waitForURL(/#\/signin$/);
    await shot('01-signin');
    await page.fill('#login', user);
    await page.fill('#password', 'S3cret-web');
    await page.click('#password-form button[type=submit]');
    await page.waitForSelector('#who');
    expect(await page.textContent('#who')).toContain(user);
    await page.waitForSelector('#apps');

    await page.click('a[href="#/submit"]');
    const ns = user.replace('webuser', 'web');
    await page.fill('#submit-namespace', ns);
    await page.fill('#submit-repository', 'hello');
    await page.fill('#submit-version', '1.0');
    await page.fill('#submit-spec', JSON.stringify({ description: 'from the console', source: { url: daemon.url('hello'), branch: 'main', architectures: ['linux/amd64'] } }, null, 2));
    await shot('02-submit');
    await page.click('#submit-form button[type=submit]');
    await page.waitForURL(new RegExp(`#/apps/${ns}/hello/1\\.0$`), { timeout: 60_000 });
    await page.waitForSelector('#start-build');
    expect(await page.textContent('#app-info')).toContain(user);
    await page.click('#start-build');
    // The page follows the build by itself (events or polling): no reload.
    await page.waitForSelector('#build [data-state="SUCCESS"]', { timeout: LONG });
    await page.waitForFunction(`/Successfully|Step 2\\/2/.test(document.getElementById('build-log')?.textContent ?? '')`, null, { timeout: 60_000 });
    expect(await page.textContent('#build-image')).toContain(`${ns}/hello:1.0`);
    expect(await page.textContent('#build-digest')).toMatch(/^sha256:/);
    await shot('03-app-built');

    await go('#/apps');
    await page.waitForSelector(`#apps a[href="#/apps/${ns}/hello/1.0"]`);
    await shot('04-apps');
  }, 240_000);

  it('runs a job: its state and log lines arrive live, and the result downloads as a zip', async () => {
    await go('#/pipelines');
    await page.fill('#pipeline-name', 'console');
    await page.click('#pipeline-form button[type=submit]');
    await page.waitForURL(/#\/pipelines\/\d+$/);
    await page.fill('#job-command', 'echo job-started; sleep 2; echo console-log-line; cat /inbox/note.txt > /outbox/out.txt');
    await page.fill('#job-image', 'dockyard/busybox:latest');
    await page.setInputFiles('#job-files', { name: 'note.txt', mimeType: 'text/plain', buffer: Buffer.from('from the browser\n') });
    await page.click('#job-form button[type=submit]');
    await page.waitForSelector('#jobs .job-link');
    await page.click('#submit-pipeline');
    await page.waitForSelector('#jobs [data-state]:not([data-state="ready"])');
    await shot('05-pipeline');
    await page.click('#jobs .job-link');
    await page.waitForSelector('#job-log');
    await page.waitForFunction(`document.getElementById('job-log')?.textContent?.includes('console-log-line')`, null, { timeout: LONG });
    await page.waitForSelector('#job-state [data-state="done"]', { timeout: LONG });
    expect(await page.textContent('#job-log')).toContain('job-started');
    await page.waitForSelector('#download-result');
    await shot('06-job');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-result')]);
    const zip = path.join(stack.dir, 'console-result.zip');
    await download.saveAs(zip);
    const { stdout } = await run('unzip', ['-p', zip, 'out.txt']);
    expect(stdout).toBe('from the browser\n');
  }, 240_000);

  it('shows the other pages, and an admin signs in with a token and sees users', async () => {
    for (const [hash, sel, name] of [
      ['#/images', '#images', '07-images'],
      ['#/cachito', '#requests', '08-cachito'],
      ['#/processes', '#processes', '09-processes'],
      ['#/base-images', 'main table, main p', '10-base-images'],
      ['#/tokens', '#tokens', '11-tokens'],
    ]) {
      await go(hash);
      await page.waitForSelector(sel);
      expect(await page.locator('main .error').count()).toBe(0);
      await shot(name);
    }
    await page.click('#signout');
    await page.waitForURL(/#\/signin$/);

    const admin = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
    await admin.goto(`${stack.base}/#/admin`);
    await admin.waitForURL(/#\/signin$/);
    await admin.fill('#token', stack.adminToken);
    await admin.click('#token-form button[type=submit]');
    await admin.waitForURL(/#\/admin$/);
    await admin.waitForSelector('#users td');
    expect(await admin.textContent('#users')).toContain(user);
    await shot('12-admin', admin);
  }, 120_000);
});
