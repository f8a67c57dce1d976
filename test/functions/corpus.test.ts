/**
 * Every function of ./corpus.ts, compiled as people compile TypeScript (tsc at ES2017, ES2020, ES2022 and
 * ESNext; esbuild with its defaults, for es2017, and with the options tsx uses), is called in plain Node and
 * in a node with the same arguments: the node must return exactly what plain Node returns (or throw the same
 * error). Arguments and the plain result pass through the codec, as they do on the wire. The compilers run
 * here, on the real corpus: their helpers (__awaiter, __rest, __publicField, __name...) are what the node
 * must provide.
 *
 * To keep the suite fast, the functions travel in batches: one shipped function holds a batch's sources
 * verbatim and calls each with its own arguments (names of the runner start with `$$`, which no corpus
 * function uses, so none can resolve to them). Every function is also checked on its own by the client's
 * analysis, and a batch that fails is run again one function at a time to name the culprits.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { transform, type TransformOptions } from 'esbuild';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { isKeynodeError, Lifetime, type NodeHandle } from 'keynode';
import { makeCodec } from '../../dist/protocol/codec.js';
import { analyzeFunction } from '../../dist/protocol/function-source.js';
import { startContainer, type TestContainer } from '../helpers/containers.js';
import type { Case } from './corpus.js';

const SOURCE = readFileSync(new URL('./corpus.ts', import.meta.url), 'utf8');
const nodeRequire = createRequire(import.meta.url);
const codec = makeCodec((url) => ({ url }));

function tsc(target: ts.ScriptTarget): (src: string) => Promise<string> {
  return async (src) => ts.transpileModule(src, { compilerOptions: { target, module: ts.ModuleKind.CommonJS, strict: true } }).outputText;
}

function esbuild(options: TransformOptions): (src: string) => Promise<string> {
  return async (src) => (await transform(src, { loader: 'ts', format: 'cjs', ...options })).code;
}

const VARIANTS: [string, (src: string) => Promise<string>][] = [
  ['as written (tsc ESNext, types stripped)', tsc(ts.ScriptTarget.ESNext)],
  ['tsc ES2022', tsc(ts.ScriptTarget.ES2022)],
  ['tsc ES2020', tsc(ts.ScriptTarget.ES2020)],
  ['tsc ES2017', tsc(ts.ScriptTarget.ES2017)],
  ['esbuild defaults', esbuild({})],
  ['esbuild es2017', esbuild({ target: 'es2017' })],
  // tsx's own transform options (tsx/src/utils/transform/get-esbuild-options.ts), with a tsconfig that does
  // not use define semantics for class fields, as most projects targeting ES2017-ES2021 have.
  ['tsx', esbuild({ target: 'node20', keepNames: true, minifyWhitespace: true, tsconfigRaw: { compilerOptions: { useDefineForClassFields: false } } })],
];

/** The compiled module, run as the ES module it was written as would run: strict. */
function load(code: string): Case[] {
  const module = { exports: {} as { cases?: Case[] } };
  new Function('exports', 'require', 'module', `"use strict";${code}`)(module.exports, nodeRequire, module);
  return module.exports.cases!;
}

type Outcome = { value: unknown } | { threw: { name: string; message: string } };

const quiet = Object.fromEntries(['log', 'info', 'warn', 'error', 'debug', 'table', 'dir', 'trace'].map((k) => [k, () => {}]));

async function inPlainNode(c: Case): Promise<Outcome> {
  const args = codec.decode(codec.encode(c.args)) as unknown[];
  const real = globalThis.console;
  globalThis.console = quiet as unknown as Console;
  try {
    return { value: codec.decode(codec.encode(await c.fn(undefined as never, ...args))) };
  } catch (e) {
    return { threw: e instanceof Error ? { name: e.name, message: e.message } : { name: 'Thrown', message: String(e) } };
  } finally {
    globalThis.console = real;
  }
}

function threw(e: unknown): Outcome {
  if (isKeynodeError(e) && e.code === 'ERR_USER' && e.remote) return { threw: { name: e.remote.name, message: e.remote.message } };
  return { threw: { name: `keynode ${isKeynodeError(e) ? e.code : 'error'}`, message: (e as Error).message } };
}

async function inNode(node: NodeHandle, c: Case): Promise<Outcome> {
  try {
    return { value: await tc.client.at(node, c.fn, ...c.args) };
  } catch (e) {
    return threw(e);
  }
}

/** One shipped function that runs the batch's functions, each as a node runs one: awaited, errors reduced. */
function runner(batch: Case[]): (ctx: never, args: unknown[][]) => Promise<Outcome[]> {
  const sources = batch.map((c) => Function.prototype.toString.call(c.fn));
  return new Function(`return async (ctx, $$args) => {
  const $$fns = [
${sources.join(',\n')}
  ];
  const $$out = [];
  for (let $$i = 0; $$i < $$fns.length; $$i++) {
    try {
      $$out.push({ value: await $$fns[$$i](ctx, ...$$args[$$i]) });
    } catch ($$e) {
      $$out.push({ threw: $$e instanceof Error ? { name: $$e.name, message: $$e.message } : { name: 'Thrown', message: String($$e) } });
    }
  }
  return $$out;
}`)();
}

const BATCH = 60;

let tc: TestContainer;
/** Each variant's compiled corpus, made before the container starts: tsc holds this process while it runs. */
const compiledCorpus = new Map<string, string>();
beforeAll(async () => {
  for (const [variant, compile] of VARIANTS) compiledCorpus.set(variant, await compile(SOURCE));
  tc = await startContainer();
});

describe('the corpus of ordinary functions', () => {
  it('has at least 150 functions', () => {
    expect(load(compiledCorpus.get(VARIANTS[0]![0])!).length).toBeGreaterThanOrEqual(150);
  });

  describe.concurrent.each(VARIANTS.map(([name]) => name))('%s', (variant) => {
    it('returns in a node exactly what it returns in plain Node', async () => {
      const cases = load(compiledCorpus.get(variant)!);
      // The client's check accepts each function as shipped on its own.
      const refused = cases.flatMap((c) => {
        try {
          analyzeFunction(Function.prototype.toString.call(c.fn));
          return [];
        } catch (e) {
          return [`${c.name}: ${(e as Error).message}`];
        }
      });
      expect(refused, variant).toEqual([]);
      const node = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { log: true } });
      const mismatches: string[] = [];
      for (let i = 0; i < cases.length; i += BATCH) {
        const batch = cases.slice(i, i + BATCH);
        let got: Outcome[];
        try {
          got = await tc.client.at(node, runner(batch), batch.map((c) => c.args));
        } catch (e) {
          // The batch as a whole failed: find which functions fail on their own.
          got = await Promise.all(batch.map((c) => inNode(node, c)));
          mismatches.push(`batch ${i / BATCH} failed: ${show(threw(e))}`);
        }
        for (const [j, c] of batch.entries()) {
          const expected = await inPlainNode(c);
          try {
            expect(got[j]).toStrictEqual(expected);
          } catch {
            mismatches.push(`${c.name}:\n    node:  ${show(got[j]!)}\n    plain: ${show(expected)}`);
          }
        }
      }
      expect(mismatches, `${variant}: ${mismatches.length} of ${cases.length} differ`).toEqual([]);
    });
  });
});

function show(o: Outcome): string {
  try {
    return JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Map ? { Map: [...v] } : v instanceof Set ? { Set: [...v] } : v)).slice(0, 600);
  } catch {
    return String(o);
  }
}
