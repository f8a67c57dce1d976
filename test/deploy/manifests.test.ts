/**
 * deploy/kubernetes, checked offline: every object against the Kubernetes OpenAPI schemas and for fields the
 * API does not have (test/deploy/manifests.ts), broken copies refused by each layer, and the promises the
 * objects make to each other and to keynode: selectors that select the pods, the names keynode is given,
 * the probes' paths, the drain before a pod goes, resources that hold the capacity keynode is told.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalizeOptions, optionsFromEnv, parsePeers } from 'keynode/container';
import { loadKustomization, loadManifests, ROOT, schemaProblems, unknownFieldProblems, type Doc, type Manifest } from './manifests.js';

const manifests = loadManifests();
const one = (kind: string, name?: string): Doc => {
  const found = manifests.filter((m) => m.doc.kind === kind && (name === undefined || m.doc.metadata.name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0]!.doc;
};
const sts = one('StatefulSet');
const pod = sts.spec.template.spec;
const keynode = pod.containers.find((c: Doc) => c.name === 'keynode') as Doc;
const env = Object.fromEntries((keynode.env as Doc[]).filter((e) => 'value' in e).map((e) => [e.name, e.value])) as Record<string, string>;
const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

/** Mebibytes in a Kubernetes quantity (Mi, Gi). */
function mib(q: string): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`quantity ${q} is not in Mi or Gi`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

/** Kubernetes' $(VAR) expansion of an env value, with the downward API's values for one pod. */
function expand(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\(([A-Z_]+)\)/g, (all, name: string) => vars[name] ?? all);
}

describe('Kubernetes manifests', () => {
  it('every object validates against the Kubernetes schemas and has no field the API lacks', () => {
    expect(manifests.map((m) => `${m.doc.kind}/${m.doc.metadata.name}`).sort()).toEqual(
      ['NetworkPolicy/keynode', 'PodDisruptionBudget/keynode', 'Service/keynode', 'Service/keynode-peers', 'StatefulSet/keynode'],
    );
    expect(schemaProblems(manifests)).toEqual([]);
    expect(unknownFieldProblems(manifests)).toEqual([]);
  });

  it('refuses broken copies: a wrong type, a missing required field, a misspelt field', () => {
    const broken = (file: string, f: (doc: Doc) => void): Manifest[] =>
      manifests.map((m) => {
        if (m.doc.kind !== 'StatefulSet') return m;
        const doc = structuredClone(m.doc);
        f(doc);
        return { file, doc };
      });
    const wrongType = schemaProblems(broken('wrong-type.yaml', (d) => (d.spec.replicas = 'three')));
    expect(wrongType).toHaveLength(1);
    expect(wrongType[0]).toMatch(/^wrong-type\.yaml: StatefulSet\/keynode: .*replicas/);

    const missing = schemaProblems(broken('missing.yaml', (d) => delete d.spec.template.spec.containers[0].name));
    expect(missing).toHaveLength(1);
    expect(missing[0]).toMatch(/name/);

    const probe = (d: Doc) => {
      const c = d.spec.template.spec.containers[0];
      c.livenesProbe = c.livenessProbe;
      delete c.livenessProbe;
    };
    expect(schemaProblems(broken('misspelt.yaml', probe))).toEqual([]); // what the schemas alone let through
    const misspelt = unknownFieldProblems(broken('misspelt.yaml', probe));
    expect(misspelt).toHaveLength(1);
    expect(misspelt[0]).toMatch(/^misspelt\.yaml: StatefulSet\/keynode: .*livenesProbe.* does not exist/);
  });

  it('kustomization lists every manifest and tags the image with this version', () => {
    const k = loadKustomization();
    expect([...k.resources].sort()).toEqual([...new Set(manifests.map((m) => m.file))].sort());
    expect(k.images).toEqual([{ name: 'keynode', newTag: version }]);
    for (const c of [...pod.initContainers, ...pod.containers]) expect(c.image, c.name).toBe(`keynode:${version}`);
  });

  it('selectors select the pods; the headless Service names them and lists them even when not ready', () => {
    const labels = sts.spec.template.metadata.labels as Record<string, string>;
    const selects = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
    expect(selects(sts.spec.selector.matchLabels)).toBe(true);
    for (const s of manifests.filter((m) => m.doc.kind === 'Service')) expect(selects(s.doc.spec.selector), s.doc.metadata.name).toBe(true);
    expect(selects(one('PodDisruptionBudget').spec.selector.matchLabels)).toBe(true);
    const policy = one('NetworkPolicy');
    expect(selects(policy.spec.podSelector.matchLabels)).toBe(true);

    const headless = one('Service', sts.spec.serviceName);
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    // A client's session is with one container: the client Service keeps a client on one pod.
    expect(one('Service', 'keynode').spec.sessionAffinity).toBe('ClientIP');
    const port = keynode.ports.find((p: Doc) => p.name === 'http').containerPort;
    for (const s of manifests.filter((m) => m.doc.kind === 'Service')) expect(s.doc.spec.ports).toEqual([{ name: 'http', port, targetPort: 'http', protocol: 'TCP' }]);

    // Ingress: peers (the pods themselves) and labelled clients, on the one port; nothing else.
    expect(policy.spec.policyTypes).toEqual(['Ingress']);
    expect(policy.spec.ingress).toHaveLength(2);
    for (const rule of policy.spec.ingress) expect(rule.ports).toEqual([{ port, protocol: 'TCP' }]);
    expect(selects(policy.spec.ingress[0].from[0].podSelector.matchLabels)).toBe(true);
    expect(policy.spec.ingress[1].from[0].podSelector.matchLabels).toEqual({ 'keynode.client': 'allowed' });
  });

  it("keynode's settings: its per-pod public URL and peers name the headless Service, and it accepts them", () => {
    const vars = { POD_NAME: 'keynode-1', POD_NAMESPACE: 'apps' };
    const byName = Object.fromEntries((keynode.env as Doc[]).map((e) => [e.name, e]));
    expect(byName.POD_NAME.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
    expect(byName.POD_NAMESPACE.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, expand(v, vars)]));
    const service = `${sts.spec.serviceName}.apps.svc.cluster.local`;
    expect(resolved.KEYNODE_PUBLIC_URL).toBe(`http://keynode-1.${service}:7070`);
    expect(parsePeers(resolved.KEYNODE_PEERS!)).toEqual([`dns:${service}:7070`]);
    // keynode reads these variables as the container will have them, and refuses none.
    const options = optionsFromEnv(resolved);
    expect(options.publicUrl).toBe(resolved.KEYNODE_PUBLIC_URL);
    expect(options.capacity).toMatchObject({ memoryMB: 3072, maxAwake: 200, storageMB: 8192 });
    // Service links would add KEYNODE_PORT=tcp://... for the Service named keynode, which keynode refuses.
    expect(pod.enableServiceLinks).toBe(false);
    expect(() => normalizeOptions({ ...options, ...optionsFromEnv({ KEYNODE_PORT: 'tcp://10.0.0.1:7070' }) })).toThrow(/port/);
    expect(() => normalizeOptions(options)).not.toThrow();
    expect(keynode.args).toEqual(['--host', '0.0.0.0', '--port', String(keynode.ports[0].containerPort), '--data', '/data/keynode']);
  });

  it('probes, the drain before a pod goes, and a grace period that holds both', () => {
    expect(keynode.livenessProbe.httpGet).toEqual({ path: '/livez', port: 'http' });
    expect(keynode.startupProbe.httpGet).toEqual({ path: '/livez', port: 'http' });
    expect(keynode.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    const [shell, flag, script] = keynode.lifecycle.preStop.exec.command as string[];
    expect([shell, flag]).toEqual(['sh', '-c']);
    const drain = /^timeout (\d+) keynode drain \|\|/.exec(script!);
    expect(drain, script).not.toBeNull();
    // The drain's bound, then a minute for the graceful stop that SIGTERM starts.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(Number(drain![1]) + 60);
    expect(env.KEYNODE_URL).toBe(`http://127.0.0.1:${keynode.ports[0].containerPort}`);
    expect(env.KEYNODE_IDENTITY).toBe('/run/keynode-keys/operator.key');
  });

  it('runs as the image\'s non-root user with its data on the claim and its keys from the Secret, in memory', () => {
    const containerfile = readFileSync(join(ROOT, 'deploy', 'Containerfile'), 'utf8');
    const user = /^USER (\d+):(\d+)$/m.exec(containerfile);
    expect(user).not.toBeNull();
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: Number(user![1]), runAsGroup: Number(user![2]), fsGroup: Number(user![2]) });
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const c of [...pod.initContainers, ...pod.containers]) {
      expect(c.securityContext, c.name).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    }
    const claim = sts.spec.volumeClaimTemplates[0];
    expect(keynode.volumeMounts).toContainEqual({ name: claim.metadata.name, mountPath: '/data' });
    const volumes = Object.fromEntries((pod.volumes as Doc[]).map((v) => [v.name, v]));
    expect(volumes.secret.secret).toEqual({ secretName: 'keynode-keys', defaultMode: 0o400 });
    expect(volumes.keys.emptyDir.medium).toBe('Memory');
    expect(keynode.volumeMounts.map((m: Doc) => m.name)).not.toContain('secret'); // only the init container reads it
    expect(sts.spec.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
  });

  it('resources hold what keynode is told it may use (README: Kubernetes, sizing)', () => {
    const { requests, limits } = keynode.resources;
    // Heap grants of awake nodes, plus ~1 GiB for the container process (~0.7 GB RSS with 10 million sleeping
    // nodes in the benchmarks) and workers' memory beyond their heap.
    expect(Number(env.KEYNODE_CAPACITY_MEMORY_MB) + 1024).toBeLessThanOrEqual(mib(limits.memory));
    // Requests: the container process plus 100 idle awake nodes at ~15 MB PSS each.
    expect(mib(requests.memory)).toBeGreaterThanOrEqual(512 + 100 * 15);
    // The store leaves a fifth of the volume for LevelDB's compactions and logs.
    expect(Number(env.KEYNODE_CAPACITY_STORAGE_MB)).toBeLessThanOrEqual(mib(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage) * 0.8);
    expect(one('PodDisruptionBudget').spec.maxUnavailable).toBe(1);
  });
});
