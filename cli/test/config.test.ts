/** The credentials file: where it is, its modes, refusing a readable one, env overrides. */
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configDir, configFile, normalizeUrl, readConfig, resolveSettings, writeConfig } from '../src/config.js';
import { CliError } from '../src/errors.js';

describe('config file', () => {
  let home: string;
  beforeEach(() => (home = mkdtempSync(path.join(os.tmpdir(), 'dockyard-cli-unit-'))));
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  it('lives in ~/.config/dockyard, or under XDG_CONFIG_HOME', () => {
    expect(configDir({ HOME: home })).toBe(path.join(home, '.config/dockyard'));
    expect(configFile({ HOME: home, XDG_CONFIG_HOME: '/x/cfg' })).toBe('/x/cfg/dockyard/config.json');
    // A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
    expect(configDir({ HOME: home, XDG_CONFIG_HOME: 'rel' })).toBe(path.join(home, '.config/dockyard'));
  });

  it('is written 0600 in a 0700 directory, even over a looser directory, and read back', () => {
    const env = { HOME: home };
    mkdirSync(path.join(home, '.config/dockyard'), { recursive: true, mode: 0o755 });
    const file = writeConfig({ url: 'http://gw:8080', token: 'secret', login: 'me' }, env);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(readConfig(env)).toEqual({ url: 'http://gw:8080', token: 'secret', login: 'me' });
  });

  it('refuses a file others may read, saying how to fix it (exit code 3)', () => {
    const env = { HOME: home };
    const file = writeConfig({ token: 'secret' }, env);
    chmodSync(file, 0o644);
    expect(() => readConfig(env)).toThrow(CliError);
    expect(() => readConfig(env)).toThrow(/readable by other users \(mode 644\).*chmod 600/);
    try {
      readConfig(env);
    } catch (err) {
      expect((err as CliError).exitCode).toBe(3);
    }
  });

  it('nothing stored is {}; broken JSON is a clear error', () => {
    expect(readConfig({ HOME: home })).toEqual({});
    const file = writeConfig({}, { HOME: home });
    writeFileSync(file, '{nope', { mode: 0o600 });
    expect(() => readConfig({ HOME: home })).toThrow(/not valid JSON/);
  });

  it('DOCKYARD_URL / DOCKYARD_TOKEN override the file; --url overrides both; another URL does not get the stored token', () => {
    const env = { HOME: home };
    writeConfig({ url: 'http://stored:1', token: 'stored-token' }, env);
    expect(resolveSettings({}, env)).toEqual({ url: 'http://stored:1', token: 'stored-token', source: 'file' });
    expect(resolveSettings({}, { ...env, DOCKYARD_TOKEN: 'env-token' })).toMatchObject({ url: 'http://stored:1', token: 'env-token', source: 'env' });
    expect(resolveSettings({}, { ...env, DOCKYARD_URL: 'http://e:2', DOCKYARD_TOKEN: 't' })).toMatchObject({ url: 'http://e:2', token: 't' });
    expect(resolveSettings({ url: 'other:3' }, env)).toMatchObject({ url: 'http://other:3', token: undefined });
    expect(resolveSettings({}, { HOME: path.join(home, 'none') })).toEqual({ url: 'http://127.0.0.1:8080', token: undefined, source: 'default' });
  });

  it('normalizes URLs and refuses other schemes', () => {
    expect(normalizeUrl('localhost:8080/')).toBe('http://localhost:8080');
    expect(normalizeUrl('https://dock.example.org/base/')).toBe('https://dock.example.org/base');
    expect(() => normalizeUrl('ftp://x')).toThrow(/Only http and https/);
  });
});
