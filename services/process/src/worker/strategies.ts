import type Docker from 'dockerode';
import type { FastifyBaseLogger } from 'fastify';
import type { NatsConnection } from '@nats-io/transport-node';
import type { BlobStore, Subjects } from '@dockyard/kit';
import type { Process } from '../generated/prisma/client.js';
import type { ProcessLog } from '../domain/processes.js';
import { BuildServiceUnavailable, buildThroughService } from '../domain/builds.js';
import { aptInstalls, fromLines, parseDockerfile, pinFrom, pipInstalls, serialize } from '../domain/dockerfile.js';
import { comparePackages, describeDiff, diffIsEmpty, inspectImage, runScript, type ImageContents, type Pkg } from '../domain/packages.js';
import { cycloneDx, osMatches, parseSbom, type SbomPackage } from '../domain/sbom.js';
import { copyEntries, readEntries, zipToTar, ZipWriter } from '../domain/zip.js';
import { parseRee, REE_FILE, type BaseRecord, type ReeFile } from '../domain/ree.js';

/** A failure of the process itself (bad project, failed build, verification mismatch): its message is the reason. */
export class ProcessFailure extends Error {}

export interface StrategyDeps {
  docker: Docker;
  nc: NatsConnection;
  subjects: Subjects;
  blobs: BlobStore;
  log: FastifyBaseLogger;
  baseImages: Record<string, string>;
}

export interface Job {
  process: Process;
  /** The uploaded zip, as a local file. */
  input: string;
  log: ProcessLog;
  signal: AbortSignal;
  attempt: number;
  /** Run once the output is written (or abandoned). */
  cleanup: (() => void)[];
}

/** What a strategy produced: the output zip's writer, filled and ended by the strategy. */
export type Output = ZipWriter;

/** The engine's view of an image reference: immutable id, repository digest when it has one. */
export async function resolveImage(docker: Docker, reference: string): Promise<BaseRecord | null> {
  try {
    const info = await docker.getImage(reference).inspect();
    const repoDigest = info.RepoDigests?.[0] ?? null;
    // Local images (made with docker import/build) have no repository digest: pin by image id,
    // which the engine's builder accepts in FROM (`FROM sha256:<id>`) and which cannot move.
    return { reference, imageId: info.Id, repoDigest, pinned: repoDigest ?? info.Id };
  } catch {
    return null;
  }
}

const labelsOf = (subjects: Subjects) => ({ 'dockyard.prefix': subjects.prefix || '-' });

/** Copies every file of the input zip into the output (streamed), except the names in `skip`. */
async function copyProject(job: Job, out: ZipWriter, skip: Set<string>): Promise<void> {
  job.cleanup.push(await copyEntries(job.input, out, skip));
}

async function buildImage(deps: StrategyDeps, job: Job, o: { context: NodeJS.ReadableStream; dockerfile: string; tag: string; phase: string; lines?: string[] }) {
  job.log.line(`Building ${o.dockerfile} through the build service as ${o.tag}`);
  const outcome = await buildThroughService(deps.nc, deps.subjects, {
    contextName: `process-${job.process.uuid}-${o.phase}-${job.attempt}`,
    context: o.context as never,
    dockerfile: o.dockerfile,
    tag: o.tag,
    owner: job.process.ownerLogin || job.process.ownerId,
    label: `process ${job.process.uuid} (${o.phase})`,
    line: (l) => {
      job.log.line(l);
      o.lines?.push(l);
    },
    signal: job.signal,
  }).catch((err) => {
    throw err instanceof BuildServiceUnavailable ? new ProcessFailure(err.message) : err;
  });
  if (outcome.result === 'TIMEOUT') throw new Error('aborted');
  if (outcome.result !== 'SUCCESS') throw new ProcessFailure(`The image build failed (build ${outcome.buildId}): ${outcome.error ?? outcome.result}`);
  job.log.line(`Build ${outcome.buildId} succeeded`);
  return outcome;
}

function summary(c: ImageContents): string {
  const counts = new Map<string, number>();
  for (const p of c.packages) counts.set(p.type, (counts.get(p.type) ?? 0) + 1);
  return [...counts].map(([t, n]) => `${n} ${t}`).join(', ') || 'no packages';
}

/** Recording define: build the project, record what it installed, pin the Dockerfile. */
export async function recordingDefine(deps: StrategyDeps, job: Job, out: ZipWriter): Promise<void> {
  const { docker } = deps;
  const dockerfileName = job.process.dockerfile;
  const text = (await readEntries(job.input, (n) => n === dockerfileName)).get(dockerfileName)?.toString('utf8');
  if (text === undefined) throw new ProcessFailure(`The archive has no ${dockerfileName}`);
  const instructions = parseDockerfile(text);
  const froms = fromLines(instructions);
  if (!froms.length) throw new ProcessFailure(`${dockerfileName} has no FROM instruction`);
  const bases: (BaseRecord & { index: number })[] = [];
  for (const f of froms.filter((x) => !x.stage)) {
    if (f.image.includes('$')) throw new ProcessFailure(`FROM ${f.image}: base images given by build arguments cannot be pinned`);
    const base = await resolveImage(docker, f.image);
    if (!base) throw new ProcessFailure(`Base image ${f.image} is not available on the engine`);
    job.log.line(`Base image ${f.image} is ${base.imageId}${base.repoDigest ? ` (${base.repoDigest})` : ' (local image, no repository digest: pinned by image id)'}`);
    bases.push({ ...base, index: f.index });
  }
  const startedAt = new Date();
  const tag = `dockyard-process/${job.process.uuid}:define`;
  await buildImage(deps, job, { context: zipToTarOf(job.input), dockerfile: dockerfileName, tag, phase: 'define' });
  try {
    const contents = await inspectImage(docker, tag, { labels: labelsOf(deps.subjects), signal: job.signal });
    job.log.line(`Recorded ${summary(contents)} in the built image (${contents.os?.prettyName ?? 'unknown OS'})`);
    const debs = new Map(contents.packages.filter((p) => p.type === 'deb').map((p) => [p.name, p.version]));
    const pips = new Map(contents.packages.filter((p) => p.type === 'pypi').map((p) => [p.name, p.version]));
    const pinnedApt: Pkg[] = [];
    const unpinned: string[] = [];
    // The final stage: its apt-get install commands also get the packages they pulled in.
    const finalFrom = froms[froms.length - 1];
    const finalBase = finalFrom.stage ? null : bases.find((b) => b.index === finalFrom.index) ?? null;
    const requested = new Set<string>();
    let lastInstall = -1;
    for (const [i, ins] of instructions.entries()) {
      if (ins.keyword !== 'RUN') continue;
      const found = aptInstalls(ins.raw);
      for (const p of found.packages) requested.add(p.name);
      if (found.installs && i > finalFrom.index) lastInstall = i;
    }
    let dependencies: Pkg[] = [];
    if (finalBase && lastInstall >= 0) {
      // Every Debian package the build installed or changed beyond what was asked for by name.
      const baseContents = await inspectImage(docker, finalBase.imageId, { labels: labelsOf(deps.subjects), signal: job.signal });
      const inBase = new Map(baseContents.packages.filter((p) => p.type === 'deb').map((p) => [p.name, p.version]));
      dependencies = contents.packages.filter((p) => p.type === 'deb' && inBase.get(p.name) !== p.version && !requested.has(p.name));
    }
    for (const [i, ins] of instructions.entries()) {
      if (ins.keyword !== 'RUN') continue;
      const append = i === lastInstall ? dependencies.map((p) => `${p.name}=${p.version}`) : [];
      const rewritten = aptInstalls(
        ins.raw,
        (req) => {
          const version = debs.get(req.name);
          if (version) pinnedApt.push({ type: 'deb', name: req.name, version, arch: req.arch });
          return version ?? null;
        },
        append,
      );
      const pip = pipInstalls(rewritten.raw, (name) => {
        const version = pips.get(name);
        if (version) pinnedApt.push({ type: 'pypi', name, version });
        return version ?? null;
      });
      instructions[i] = { ...ins, raw: pip.raw };
      unpinned.push(...rewritten.unpinned);
    }
    if (dependencies.length) {
      job.log.line(`Pinned ${dependencies.length} package(s) the build installed as dependencies: ${dependencies.map((p) => `${p.name}=${p.version}`).join(' ')}`);
      for (const p of dependencies) pinnedApt.push({ type: 'deb', name: p.name, version: p.version, arch: p.arch ?? null, dependency: true });
    }
    if (unpinned.length) job.log.line(`Not pinned (not an installed package name): ${unpinned.join(' ')}`);
    for (const b of bases) instructions[b.index] = pinFrom(instructions[b.index], b.pinned, `Dockyard: ${b.reference} pinned to ${b.repoDigest ?? `image id ${b.imageId}`}`);
    job.log.line(`Pinned ${pinnedApt.length} package(s): ${pinnedApt.map((p) => `${p.name}=${p.version}`).join(' ') || 'none'}`);
    const definedAt = new Date();
    const ree: ReeFile = {
      schema: 'dockyard.ree/1',
      strategy: 'recording',
      verification: 'exact',
      dockerfile: dockerfileName,
      input: { sha256: job.process.inputSha },
      bases: bases.map(({ index: _i, ...b }) => b),
      os: contents.os,
      architecture: contents.architecture,
      pinned: pinnedApt,
      packages: contents.packages,
      timestamps: { started: startedAt.toISOString(), defined: definedAt.toISOString() },
      process: job.process.uuid,
    };
    await copyProject(job, out, new Set([dockerfileName, REE_FILE, 'sbom.cdx.json']));
    out.addBuffer(dockerfileName, serialize(instructions));
    out.addBuffer(REE_FILE, JSON.stringify(ree, null, 2) + '\n');
    out.addBuffer('sbom.cdx.json', JSON.stringify(cycloneDx({ name: job.process.tag ?? job.process.uuid, os: contents.os, packages: contents.packages, timestamp: definedAt, properties: { 'dockyard:ree:strategy': 'recording', 'dockyard:ree:input-sha256': job.process.inputSha } }), null, 2) + '\n');
  } finally {
    await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  }
}

/** Recording build: build the defined REE, verify its packages against the record, ship the image. */
export async function recordingBuild(deps: StrategyDeps, job: Job, out: ZipWriter): Promise<void> {
  const { docker } = deps;
  const found = await readEntries(job.input, (n) => n === REE_FILE);
  const raw = found.get(REE_FILE);
  const ree = parseRee(raw);
  const text = (await readEntries(job.input, (n) => n === ree.dockerfile)).get(ree.dockerfile)?.toString('utf8');
  if (text === undefined) throw new ProcessFailure(`The defined REE has no ${ree.dockerfile}`);
  // The Dockerfile must still build on the pinned bases: a FROM edited since the definition is refused.
  const pinned = new Set(ree.bases.map((b) => b.pinned));
  for (const f of fromLines(parseDockerfile(text)).filter((x) => !x.stage)) {
    if (!pinned.has(f.image)) throw new ProcessFailure(`${ree.dockerfile}: FROM ${f.image} is not one of the base images pinned in ${REE_FILE} (${[...pinned].join(', ')})`);
  }
  for (const b of ree.bases) {
    const found = await resolveImage(docker, b.pinned);
    if (!found) throw new ProcessFailure(`The pinned base image ${b.reference} (${b.pinned}) is not available on the engine`);
  }
  const startedAt = new Date();
  // One tag per defined REE: a second build of the same REE reuses the engine's layer cache.
  const tag = `dockyard-ree/${job.process.inputSha.slice(0, 24)}:latest`;
  const buildLines: string[] = [];
  await buildImage(deps, job, { context: zipToTarOf(job.input), dockerfile: ree.dockerfile, tag, phase: 'build', lines: buildLines });
  const contents = await inspectImage(docker, tag, { labels: labelsOf(deps.subjects), signal: job.signal });
  const image = await docker.getImage(tag).inspect();
  const diff = comparePackages(ree.packages, contents.packages, ree.verification);
  const verified = diffIsEmpty(diff);
  const finishedAt = new Date();
  const verification = {
    verified,
    mode: ree.verification,
    strategy: ree.strategy,
    recorded: ree.packages.length,
    found: contents.packages.length,
    difference: diff,
    image: { tag, id: image.Id },
    bases: ree.bases,
    timestamps: { started: startedAt.toISOString(), finished: finishedAt.toISOString(), defined: ree.timestamps?.defined ?? null },
  };
  job.log.line(`Verification (${ree.verification}): ${verified ? 'the rebuilt package set matches the record' : describeDiff(diff)}`);
  if (!verified) throw new ProcessFailure(`Verification failed: the rebuilt image's packages differ from the recorded ones: ${describeDiff(diff)}`);
  out.addLazy('image.tar', async () => (await docker.getImage(tag).get()) as unknown as NodeJS.ReadableStream as never, false);
  out.addBuffer('build.log', buildLines.join('\n') + '\n');
  out.addBuffer('sbom.cdx.json', JSON.stringify(cycloneDx({ name: tag, version: image.Id, os: contents.os, packages: contents.packages, timestamp: finishedAt, properties: { 'dockyard:ree:strategy': ree.strategy, 'dockyard:image:id': image.Id } }), null, 2) + '\n');
  out.addBuffer('verification.json', JSON.stringify(verification, null, 2) + '\n');
  out.addBuffer(REE_FILE, raw!);
}

// Debian package names and versions as policy allows them (and nothing a shell would interpret).
const DEB_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const DEB_VERSION = /^[A-Za-z0-9.+~:_-]+$/;
const SBOM_FILE = /\.json$/i;

/** SBOM define: pick the base matching the SBOM's OS, check every package can be installed, pin them all. */
export async function sbomDefine(deps: StrategyDeps, job: Job, out: ZipWriter): Promise<void> {
  const { docker } = deps;
  const candidates = await readEntries(job.input, (n) => SBOM_FILE.test(n) && n !== REE_FILE);
  let sbomName = '';
  let sbom = null;
  for (const [name, content] of candidates) {
    try {
      sbom = parseSbom(JSON.parse(content.toString('utf8')));
    } catch {
      sbom = null;
    }
    if (sbom) {
      sbomName = name;
      break;
    }
  }
  if (!sbom) throw new ProcessFailure('No CycloneDX or SPDX JSON SBOM found in the archive');
  job.log.line(`SBOM ${sbomName}: ${sbom.format}, ${sbom.packages.length} package(s), operating system ${sbom.os ? `${sbom.os.id} ${sbom.os.version ?? ''}`.trim() : 'not stated'}`);
  if (!sbom.os) throw new ProcessFailure(`The SBOM ${sbomName} does not say which operating system its packages are for (an operating-system component or purl distro)`);
  const seenOs: string[] = [];
  let chosen: { name: string; base: BaseRecord; contents: ImageContents } | null = null;
  for (const [name, reference] of Object.entries(deps.baseImages)) {
    const base = await resolveImage(docker, reference);
    if (!base) continue;
    const contents = await inspectImage(docker, base.imageId, { labels: labelsOf(deps.subjects), signal: job.signal });
    seenOs.push(`${name} (${contents.os ? `${contents.os.id} ${contents.os.versionId ?? ''}`.trim() : 'unknown'})`);
    if (osMatches(sbom.os, contents.os)) {
      chosen = { name, base, contents };
      break;
    }
  }
  if (!chosen) throw new ProcessFailure(`No base image matches the SBOM's operating system (${sbom.os.id} ${sbom.os.version ?? ''}); available: ${seenOs.join(', ') || 'none'}`);
  job.log.line(`Base image ${chosen.name}: ${chosen.base.reference} (${chosen.base.pinned})`);
  const unprovidable: SbomPackage[] = [];
  const debs: SbomPackage[] = [];
  for (const p of sbom.packages) {
    if ((p.type === 'deb' || p.type === 'unknown') && DEB_NAME.test(p.name) && DEB_VERSION.test(p.version)) debs.push(p);
    else unprovidable.push(p);
  }
  const installed = new Map(chosen.contents.packages.filter((p) => p.type === 'deb').map((p) => [p.name, p.version]));
  const needed = debs.filter((p) => installed.get(p.name) !== p.version);
  job.log.line(`${debs.length - needed.length} package(s) already in the base at the listed version; ${needed.length} to install`);
  if (needed.length) {
    const names = [...new Set(needed.map((p) => p.name))];
    const script = ['apt-get update -qq >/dev/null 2>&1 || echo "##update-failed"', ...names.map((n) => `echo "##pkg ${n}"; apt-cache madison ${n} 2>/dev/null`), 'echo "##end"'].join('\n');
    job.log.line(`Checking ${names.length} package(s) in the base's apt sources`);
    const { stdout } = await runScript(docker, chosen.base.imageId, script, { network: true, labels: labelsOf(deps.subjects), signal: job.signal });
    if (stdout.includes('##update-failed')) throw new ProcessFailure('apt-get update failed in a container of the base image: the package archive is not reachable');
    const available = new Map<string, Set<string>>();
    let current = '';
    for (const line of stdout.split('\n')) {
      const head = /^##pkg (\S+)$/.exec(line.trim());
      if (head) {
        current = head[1];
        available.set(current, new Set());
        continue;
      }
      const cols = line.split('|').map((s) => s.trim());
      if (current && cols.length >= 3 && cols[0] === current) available.get(current)!.add(cols[1]);
    }
    for (const p of needed) if (!available.get(p.name)?.has(p.version)) unprovidable.push(p);
  }
  if (unprovidable.length) {
    throw new ProcessFailure(`Packages no base image can provide: ${unprovidable.map((p) => (p.type === 'deb' || p.type === 'unknown' ? `${p.name}=${p.version}` : p.ref)).join(', ')}`);
  }
  const dockerfile = [
    `# Defined by Dockyard from the SBOM ${sbomName} (${sbom.format}): base ${chosen.name} = ${chosen.base.reference}`,
    `# Dockyard: ${chosen.base.reference} pinned to ${chosen.base.repoDigest ?? `image id ${chosen.base.imageId}`}`,
    `FROM ${chosen.base.pinned}`,
  ];
  if (needed.length) {
    dockerfile.push(
      'RUN apt-get update \\',
      ' && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --allow-downgrades \\',
      ...needed.map((p) => `    ${p.name}=${p.version} \\`),
      ' && rm -rf /var/lib/apt/lists/*',
    );
  }
  const packages: Pkg[] = debs.map((p) => ({ type: 'deb', name: p.name, version: p.version, arch: p.arch ?? null }));
  const definedAt = new Date();
  const ree: ReeFile = {
    schema: 'dockyard.ree/1',
    strategy: 'sbom',
    verification: 'listed',
    dockerfile: 'Dockerfile',
    input: { sha256: job.process.inputSha, sbom: sbomName, format: sbom.format },
    bases: [{ ...chosen.base, name: chosen.name }],
    os: chosen.contents.os,
    architecture: chosen.contents.architecture,
    pinned: needed.map((p) => ({ type: 'deb', name: p.name, version: p.version, arch: p.arch ?? null })),
    packages,
    timestamps: { defined: definedAt.toISOString() },
    process: job.process.uuid,
  };
  await copyProject(job, out, new Set(['Dockerfile', REE_FILE, 'sbom.cdx.json']));
  out.addBuffer('Dockerfile', dockerfile.join('\n') + '\n');
  out.addBuffer(REE_FILE, JSON.stringify(ree, null, 2) + '\n');
  out.addBuffer('sbom.cdx.json', JSON.stringify(cycloneDx({ name: job.process.tag ?? job.process.uuid, os: chosen.contents.os, packages, timestamp: definedAt, properties: { 'dockyard:ree:strategy': 'sbom' } }), null, 2) + '\n');
}

const zipToTarOf = (file: string) => zipToTar(file) as unknown as NodeJS.ReadableStream;
