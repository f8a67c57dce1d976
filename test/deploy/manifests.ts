/**
 * Reading and checking deploy/kubernetes offline, in two layers:
 * - the Kubernetes OpenAPI schemas as `kubernetes-models` bundles them (types, formats, enums, required
 *   fields), through each model's `validate()`;
 * - unknown fields, which those schemas allow (the API server refuses them under strict field validation, the
 *   default of `kubectl apply`): each object is type-checked as an object literal against the same package's
 *   TypeScript interfaces, whose excess-property check names any field the API does not have.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { Secret, Service } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MANIFESTS = join(ROOT, 'deploy', 'kubernetes');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Doc = Record<string, any>;

/** The kinds the manifests may hold: their model (schema) and the module of their TypeScript interface. */
const KINDS: Record<string, { model: new (data: never) => { validate(): void }; types: string; iface: string }> = {
  'apps/v1 StatefulSet': { model: StatefulSet as never, types: 'kubernetes-models/apps/v1/StatefulSet', iface: 'IStatefulSet' },
  'v1 Service': { model: Service as never, types: 'kubernetes-models/v1/Service', iface: 'IService' },
  'v1 Secret': { model: Secret as never, types: 'kubernetes-models/v1/Secret', iface: 'ISecret' },
  'policy/v1 PodDisruptionBudget': { model: PodDisruptionBudget as never, types: 'kubernetes-models/policy/v1/PodDisruptionBudget', iface: 'IPodDisruptionBudget' },
  'networking.k8s.io/v1 NetworkPolicy': { model: NetworkPolicy as never, types: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', iface: 'INetworkPolicy' },
};

export interface Manifest {
  file: string;
  doc: Doc;
}

/** Every document of every YAML file but the kustomization, parsed as Kubernetes parses (YAML 1.1: 0400 is octal). */
export function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of readdirSync(MANIFESTS).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()) {
    for (const d of parseAllDocuments(readFileSync(join(MANIFESTS, file), 'utf8'), { version: '1.1' })) {
      if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
      const doc = d.toJS() as Doc | null;
      if (doc !== null) out.push({ file, doc });
    }
  }
  return out;
}

export function loadKustomization(): Doc {
  return parseAllDocuments(readFileSync(join(MANIFESTS, 'kustomization.yaml'), 'utf8'), { version: '1.1' })[0]!.toJS() as Doc;
}

const kindOf = (doc: Doc): string => `${doc.apiVersion} ${doc.kind}`;
const nameOf = (m: Manifest): string => `${m.file}: ${m.doc.kind}/${m.doc.metadata?.name}`;

/** Schema problems, one line per object that fails, naming the file and object. */
export function schemaProblems(manifests: Manifest[]): string[] {
  const problems: string[] = [];
  for (const m of manifests) {
    const kind = KINDS[kindOf(m.doc)];
    if (!kind) {
      problems.push(`${nameOf(m)}: ${kindOf(m.doc)} is not a kind these tests know (add it to KINDS in test/deploy/manifests.ts)`);
      continue;
    }
    try {
      new kind.model(structuredClone(m.doc) as never).validate();
    } catch (e) {
      problems.push(`${nameOf(m)}: ${(e as Error).message}`);
    }
  }
  return problems;
}

/** Fields the Kubernetes API does not have, found by TypeScript's excess-property check; one line each. */
export function unknownFieldProblems(manifests: Manifest[]): string[] {
  const known = manifests.filter((m) => KINDS[kindOf(m.doc)]);
  const lines = known.map((m, i) => {
    const { types, iface } = KINDS[kindOf(m.doc)]!;
    return `import type { ${iface} as T${i} } from '${types}';\nexport const d${i}: T${i} = ${JSON.stringify(m.doc)};`;
  });
  // A file that is never written: in the repository's root so `kubernetes-models` resolves from node_modules.
  const virtual = join(ROOT, '__deploy_manifests_check__.ts');
  const options: ts.CompilerOptions = { strict: true, noEmit: true, skipLibCheck: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, types: [] };
  const host = ts.createCompilerHost(options);
  const source = lines.join('\n');
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) => (name === virtual ? ts.createSourceFile(name, source, lang) : getSourceFile.call(host, name, lang, ...rest));
  host.fileExists = (name) => name === virtual || fileExists.call(host, name);
  host.readFile = (name) => (name === virtual ? source : readFile.call(host, name));
  const program = ts.createProgram([virtual], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file?.fileName !== virtual || d.start === undefined) return text;
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    return `${nameOf(known[Math.floor(line / 2)]!)}: ${text}`;
  });
}
