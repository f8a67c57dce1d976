/**
 * @module protocol/function-source
 * Reads a shipped function with a real JavaScript parser (acorn): is it one function expression, which names
 * does it use that it does not define (a shipped function closes over nothing, so each must be a global of
 * the node or a compiler helper the node provides), and how to write it so SES accepts it (SES refuses the
 * character sequences `<!--`, `-->` and `import(` anywhere, strings and comments included; here they are
 * rewritten, from the parse, to escapes that mean the same). The client runs this before sending, for errors
 * with line and column; the worker runs it again on what arrives, because a client's check proves nothing.
 */
import { Parser, type Node } from 'acorn';
import { KeynodeError } from './errors.js';

/** Globals of a node's Compartment (the worker checks against its own list; a test keeps the two equal). */
export const NODE_GLOBALS: readonly string[] = [
  // ECMAScript, as SES shares them (frozen)
  'AggregateError', 'Array', 'ArrayBuffer', 'BigInt', 'BigInt64Array', 'BigUint64Array', 'Boolean', 'DataView', 'Date',
  'Error', 'EvalError', 'Float32Array', 'Float64Array', 'Function', 'Infinity', 'Int16Array', 'Int32Array', 'Int8Array',
  'JSON', 'Map', 'Math', 'NaN', 'Number', 'Object', 'Promise', 'Proxy', 'RangeError', 'ReferenceError', 'Reflect',
  'RegExp', 'Set', 'String', 'Symbol', 'SyntaxError', 'TypeError', 'URIError', 'Uint16Array', 'Uint32Array',
  'Uint8Array', 'Uint8ClampedArray', 'WeakMap', 'WeakSet', 'decodeURI', 'decodeURIComponent', 'encodeURI',
  'encodeURIComponent', 'escape', 'eval', 'globalThis', 'isFinite', 'isNaN', 'parseFloat', 'parseInt', 'undefined',
  'unescape',
  // SES
  'Compartment', 'harden', 'lockdown',
  // keynode's I/O-free web platform subset
  'Intl', 'TextEncoder', 'TextDecoder', 'URL', 'URLSearchParams', 'atob', 'btoa', 'console', 'crypto',
  'queueMicrotask', 'structuredClone',
];

/** Helpers `tsc` emits at the top of a file (the `tslib` package's exports): a node provides them. */
export const TSLIB_HELPERS: readonly string[] = [
  '__extends', '__assign', '__rest', '__decorate', '__param', '__esDecorate', '__runInitializers', '__propKey',
  '__setFunctionName', '__metadata', '__awaiter', '__generator', '__exportStar', '__createBinding', '__values', '__read',
  '__spread', '__spreadArrays', '__spreadArray', '__await', '__asyncGenerator', '__asyncDelegator', '__asyncValues',
  '__makeTemplateObject', '__importStar', '__importDefault', '__classPrivateFieldGet', '__classPrivateFieldSet',
  '__classPrivateFieldIn', '__addDisposableResource', '__disposeResources', '__rewriteRelativeImportExtension',
];

/** Helpers esbuild (and so tsx, vite, vitest) emits at the top of a file: a node provides them too. */
export const ESBUILD_HELPERS: readonly string[] = [
  '__create', '__freeze', '__defProp', '__defProps', '__getOwnPropDesc', '__getOwnPropDescs', '__getOwnPropNames',
  '__getOwnPropSymbols', '__getProtoOf', '__hasOwnProp', '__propIsEnum', '__reflectGet', '__reflectSet', '__knownSymbol',
  '__typeError', '__pow', '__defNormalProp', '__spreadValues', '__spreadProps', '__name', '__restKey', '__objRest',
  '__decorateClass', '__decorateParam', '__decoratorStart', '__decoratorMetadata', '__runInitializers',
  '__decorateElement', '__publicField', '__privateIn', '__privateGet', '__privateAdd', '__privateSet', '__privateMethod',
  '__earlyAccess', '__privateWrapper', '__superGet', '__superSet', '__superWrapper', '__template', '__async', '__await',
  '__asyncGenerator', '__yieldStar', '__forAwait', '__using', '__callDispose',
];

export type HelperFamily = 'tslib' | 'esbuild';

export interface FunctionAnalysis {
  /** The source to evaluate: the same function, with what SES would refuse rewritten to equivalent text. */
  readonly source: string;
  /** Compiler helpers it calls (sorted), and whose: each is passed to it by name. */
  readonly helpers: readonly string[];
  readonly family: HelperFamily | undefined;
}

const TSLIB = new Set(TSLIB_HELPERS);
const ESBUILD = new Set(ESBUILD_HELPERS);
const CLIENT_GLOBALS = new Set(NODE_GLOBALS);

/** What SES refuses, as it tests for it (ses/src/transforms.js), plus a parse-free pre-check. */
const SES_HTML_COMMENT = /(?:<!--|-->)/g;
const SES_IMPORT = /(^|[^.]|\.\.\.)\bimport(\s*(?:\(|\/[/*]))/g;
const MAYBE_REFUSED = /<!--|-->|import/;

const PREFIX = '"use strict";(';
const SUFFIX = '\n)';
const MAX_REPORTED = 5;

interface Scope {
  readonly parent: Scope | undefined;
  readonly names: Set<string>;
  /** Where `var` declarations land: a function body (or the program). */
  readonly varScope: boolean;
}

interface Reference {
  name: string;
  scope: Scope;
  at: number;
  /** Only ever `typeof name`: legal for an undefined name, and the node's answer is 'undefined' too. */
  typeofOnly: boolean;
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

type AnyNode = Node & Record<string, unknown>;

function newScope(parent: Scope | undefined, varScope: boolean): Scope {
  return { parent, names: new Set(), varScope };
}

function bad(message: string): never {
  throw new KeynodeError('ERR_BAD_FUNCTION', message);
}

/** 1-based line and column of an offset in `source`. */
export function lineColumn(source: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = source.indexOf('\n'); i !== -1 && i < offset; i = source.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

function where(source: string, offset: number): string {
  const { line, column } = lineColumn(source, Math.max(0, Math.min(offset, source.length)));
  return `line ${line}, column ${column}`;
}

/** Why a name the function uses but does not define is refused, and what to do, for one or several names. */
interface Hint {
  test(name: string): boolean;
  /** `names`: the names with where each is; `first`: the first name alone, for an example. */
  say(names: string, many: boolean, first: string): string;
}

const NODE_JS = new Set(['process', 'require', 'module', 'exports', '__dirname', '__filename', 'global', 'Buffer']);
const TIMERS = new Set(['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate']);
const NETWORK = new Set(['fetch', 'XMLHttpRequest', 'WebSocket', 'Request', 'Response', 'Headers', 'EventSource']);
const BROWSER = new Set(['window', 'document', 'self', 'navigator', 'localStorage', 'sessionStorage', 'location']);
const ABSENT = new Set(['WebAssembly', 'SharedArrayBuffer', 'Atomics', 'performance', 'AbortController', 'AbortSignal', 'Blob', 'ReadableStream', 'WritableStream', 'EventTarget', 'Event', 'DOMException', 'FinalizationRegistry', 'WeakRef']);

const HINTS: Hint[] = [
  { test: (n) => n === 'arguments', say: (n) => `${n} in an arrow function means the arguments of the code around it, which does not travel with the function: use rest parameters, \`(ctx, ...args) => ...\`` },
  { test: (n) => NODE_JS.has(n), say: (n, many) => `${n} ${many ? 'are' : 'is'} part of Node.js, not of a node: a node has no process, modules or file system; pass what you need as arguments (Uint8Array and TextEncoder stand in for Buffer)` },
  { test: (n) => TIMERS.has(n), say: (n) => `a node has no timers, so ${n} cannot be used: an eval runs until its promise settles (within sandbox.timeoutMs); await ctx calls instead of waiting, and start later work from outside (another at(), a Leased check)` },
  { test: (n) => NETWORK.has(n), say: (n) => `a node has no network, so ${n} cannot be used: pass the data in as an argument, or reach other code with ctx.at(node, fn) or a capability (ctx.caps)` },
  { test: (n) => n === 'Lifetime', say: (n) => `${n} is an import of the file around the function, which does not travel with it: inside a node use ctx.Lifetime` },
  { test: (n) => BROWSER.has(n), say: (n, many) => `${n} ${many ? 'belong' : 'belongs'} to browsers: a node has none; its state is ctx.ref(name) and ctx.index(name)` },
  { test: (n) => ABSENT.has(n), say: (n, many) => `${n} ${many ? 'are' : 'is'} not available in a node (see "Writing functions" in the README for what is: Date.now() measures time)` },
  {
    // tsc's `keynode_1`, esbuild's `import_keynode`, vite's and vitest's `__vi_import_0__`
    test: (n) => /^__(?:require|toESM|toCommonJS|commonJS|esm|export|reExport|importDefault|importStar|setModuleDefault)$/.test(n) || /^[A-Za-z_$][\w$]*_\d+_*$/.test(n) || /^import_[\w$]+$/.test(n),
    say: (n, many) => `${n} ${many ? 'are' : 'is'} how your compiler names imports of the file around the function; imports do not travel with a shipped function: pass the values as arguments (inside a node, ctx.Lifetime stands in for Lifetime)`,
  },
  {
    test: (n) => /^(?:__[\w$]+|_[a-z]\d*|_this|_super|_classThis|_[A-Z][\w$]*_[\w$]+)$/.test(n),
    say: (n, many) => `${n} ${many ? 'look' : 'looks'} like ${many ? 'helpers or temporary variables' : 'a helper or temporary variable'} your compiler (tsc, esbuild, tsx) put outside the function, so ${many ? 'they do' : 'it does'} not travel with it: compile for a newer target (tsc ES2022 or later, esbuild es2022 or later), or move the class or statement that needs ${many ? 'them' : 'it'} inside the function`,
  },
  {
    test: () => true,
    say: (n, many, x) => `${n} ${many ? 'are' : 'is'} defined outside the function: pass ${many ? 'them as arguments' : 'it as an argument'}, \`client.at(node, (ctx, ${x}${many ? ', ...' : ''}) => ..., ${x}${many ? ', ...' : ''})\`, or define ${many ? 'them' : 'it'} inside the function`,
  },
];

/**
 * The message for names used but defined nowhere the node can see, grouped by what to do about them.
 * `where` is asked only for the names shown (it scans the source).
 */
export function outsideNames(found: readonly { name: string; at: number }[], where: (at: number) => string): string {
  const groups = new Map<Hint, { name: string; at: number }[]>();
  for (const f of found) {
    const hint = HINTS.find((h) => h.test(f.name))!;
    let list = groups.get(hint);
    if (!list) groups.set(hint, (list = []));
    list.push(f);
  }
  return [...groups]
    .map(([hint, list]) => {
      const first = list[0]!;
      if (list.length === 1) return `${hint.say(`\`${first.name}\``, false, first.name)} (${where(first.at)})`;
      const shown = list.slice(0, MAX_REPORTED).map((f) => `\`${f.name}\` (${where(f.at)})`);
      const rest = list.length > MAX_REPORTED ? ` and ${list.length - MAX_REPORTED} more` : '';
      return hint.say(shown.join(', ') + rest, true, first.name);
    })
    .join('; ');
}

/** The scope walk: declarations per scope, and every name read or written with the scope it is in. */
class Walker {
  readonly refs: Reference[] = [];
  readonly imports: number[] = [];
  readonly literals: AnyNode[] = [];
  readonly templates: { node: AnyNode; tagged: boolean }[] = [];
  readonly names: AnyNode[] = [];
  readonly declared = new Set<string>();
  newAwait = false;
  readonly #collect: boolean;

  constructor(collect: boolean) {
    this.#collect = collect;
  }

  #declare(scope: Scope, name: string): void {
    scope.names.add(name);
    this.declared.add(name);
  }

  #varScope(scope: Scope): Scope {
    let s = scope;
    while (!s.varScope && s.parent) s = s.parent;
    return s;
  }

  #name(node: AnyNode): void {
    if (this.#collect) this.names.push(node);
  }

  bind(pattern: AnyNode | null, target: Scope, scope: Scope): void {
    if (!pattern) return;
    switch (pattern.type) {
      case 'Identifier':
        this.#name(pattern);
        this.#declare(target, pattern.name as string);
        return;
      case 'ObjectPattern':
        for (const p of pattern.properties as AnyNode[]) {
          if (p.type === 'RestElement') {
            this.bind(p.argument as AnyNode, target, scope);
            continue;
          }
          if (p.computed) this.visit(p.key as AnyNode, scope);
          else this.#key(p.key as AnyNode);
          this.bind(p.value as AnyNode, target, scope);
        }
        return;
      case 'ArrayPattern':
        for (const e of pattern.elements as (AnyNode | null)[]) this.bind(e, target, scope);
        return;
      case 'RestElement':
        this.bind(pattern.argument as AnyNode, target, scope);
        return;
      case 'AssignmentPattern':
        this.bind(pattern.left as AnyNode, target, scope);
        this.visit(pattern.right as AnyNode, scope);
        return;
      default:
        // A member expression: only in assignment targets, never in declarations.
        this.visit(pattern, scope);
    }
  }

  /** A property name that is not an expression: no reference, but it may need rewriting. */
  #key(node: AnyNode): void {
    if (node.type === 'Identifier' || node.type === 'PrivateIdentifier') this.#name(node);
    else this.visit(node, undefined as unknown as Scope);
  }

  #function(node: AnyNode, outer: Scope): void {
    let scope = outer;
    if (node.type === 'FunctionExpression' && node.id) {
      scope = newScope(outer, false);
      this.bind(node.id as AnyNode, scope, scope);
    }
    const params = newScope(scope, true);
    if (node.type !== 'ArrowFunctionExpression') this.#declare(params, 'arguments');
    for (const p of node.params as AnyNode[]) this.bind(p, params, params);
    const body = node.body as AnyNode;
    if (body.type === 'BlockStatement') {
      const inner = newScope(params, true);
      for (const s of body.body as AnyNode[]) this.visit(s, inner);
    } else {
      this.visit(body, params);
    }
  }

  #class(node: AnyNode, outer: Scope): void {
    let scope = outer;
    if (node.type === 'ClassExpression' && node.id) {
      scope = newScope(outer, false);
      this.bind(node.id as AnyNode, scope, scope);
    }
    if (node.superClass) this.visit(node.superClass as AnyNode, scope);
    for (const m of (node.body as AnyNode).body as AnyNode[]) {
      if (m.type === 'StaticBlock') {
        const block = newScope(scope, true);
        for (const s of m.body as AnyNode[]) this.visit(s, block);
        continue;
      }
      if (m.computed) this.visit(m.key as AnyNode, scope);
      else this.#key(m.key as AnyNode);
      if (m.type === 'MethodDefinition') this.#function(m.value as AnyNode, scope);
      else if (m.value) this.visit(m.value as AnyNode, newScope(scope, true));
    }
  }

  #declaration(node: AnyNode, scope: Scope): void {
    const target = node.kind === 'var' ? this.#varScope(scope) : scope;
    for (const d of node.declarations as AnyNode[]) {
      this.bind(d.id as AnyNode, target, scope);
      if (d.init) this.visit(d.init as AnyNode, scope);
    }
  }

  visit(node: AnyNode | null | undefined, scope: Scope): void {
    if (!node) return;
    switch (node.type) {
      case 'Identifier':
        this.#name(node);
        this.refs.push({ name: node.name as string, scope, at: node.start, typeofOnly: false });
        return;
      case 'PrivateIdentifier':
        this.#name(node);
        return;
      case 'Literal':
        if (this.#collect && (typeof node.value === 'string' || node.regex)) this.literals.push(node);
        return;
      case 'TemplateLiteral':
        this.#template(node, scope, false);
        return;
      case 'TaggedTemplateExpression':
        this.visit(node.tag as AnyNode, scope);
        this.#template(node.quasi as AnyNode, scope, true);
        return;
      case 'FunctionDeclaration':
        if (node.id) this.bind(node.id as AnyNode, scope, scope);
        this.#function(node, scope);
        return;
      case 'FunctionExpression':
      case 'ArrowFunctionExpression':
        this.#function(node, scope);
        return;
      case 'ClassDeclaration':
        if (node.id) this.bind(node.id as AnyNode, scope, scope);
        this.#class(node, scope);
        return;
      case 'ClassExpression':
        this.#class(node, scope);
        return;
      case 'VariableDeclaration':
        this.#declaration(node, scope);
        return;
      case 'BlockStatement': {
        const block = newScope(scope, false);
        for (const s of node.body as AnyNode[]) this.visit(s, block);
        return;
      }
      case 'ForStatement':
      case 'ForInStatement':
      case 'ForOfStatement': {
        const loop = newScope(scope, false);
        for (const key of ['init', 'left', 'test', 'update', 'right', 'body']) this.visit(node[key] as AnyNode | null, loop);
        return;
      }
      case 'CatchClause': {
        const c = newScope(scope, false);
        this.bind(node.param as AnyNode | null, c, c);
        this.visit(node.body as AnyNode, c);
        return;
      }
      case 'SwitchStatement': {
        this.visit(node.discriminant as AnyNode, scope);
        const cases = newScope(scope, false);
        for (const c of node.cases as AnyNode[]) {
          this.visit(c.test as AnyNode | null, cases);
          for (const s of c.consequent as AnyNode[]) this.visit(s, cases);
        }
        return;
      }
      case 'LabeledStatement':
        this.#name(node.label as AnyNode);
        this.visit(node.body as AnyNode, scope);
        return;
      case 'BreakStatement':
      case 'ContinueStatement':
        if (node.label) this.#name(node.label as AnyNode);
        return;
      case 'MemberExpression':
        this.visit(node.object as AnyNode, scope);
        if (node.computed) this.visit(node.property as AnyNode, scope);
        else this.#key(node.property as AnyNode);
        return;
      case 'Property':
        if (node.computed) this.visit(node.key as AnyNode, scope);
        else this.#key(node.key as AnyNode);
        if (node.shorthand && (node.value as AnyNode).type === 'Identifier') {
          // `{ a }` reads `a`; the key and value are one token.
          const v = node.value as AnyNode;
          this.refs.push({ name: v.name as string, scope, at: v.start, typeofOnly: false });
          return;
        }
        this.visit(node.value as AnyNode, scope);
        return;
      case 'UnaryExpression':
        if (node.operator === 'typeof' && (node.argument as AnyNode).type === 'Identifier') {
          const a = node.argument as AnyNode;
          this.#name(a);
          this.refs.push({ name: a.name as string, scope, at: a.start, typeofOnly: true });
          return;
        }
        this.visit(node.argument as AnyNode, scope);
        return;
      case 'NewExpression':
        if ((node.callee as AnyNode).type === 'Identifier' && (node.callee as AnyNode).name === '__await') this.newAwait = true;
        break;
      case 'ImportExpression':
        this.imports.push(node.start);
        break;
      case 'MetaProperty':
      case 'ThisExpression':
      case 'Super':
      case 'TemplateElement':
        return;
    }
    for (const key in node) {
      if (key === 'type' || key === 'start' || key === 'end' || key === 'loc' || key === 'range') continue;
      const child = node[key];
      if (Array.isArray(child)) {
        for (const c of child) if (c && typeof c === 'object' && typeof (c as AnyNode).type === 'string') this.visit(c as AnyNode, scope);
      } else if (child && typeof child === 'object' && typeof (child as AnyNode).type === 'string') {
        this.visit(child as AnyNode, scope);
      }
    }
  }

  #template(node: AnyNode, scope: Scope, tagged: boolean): void {
    if (this.#collect) for (const q of node.quasis as AnyNode[]) this.templates.push({ node: q, tagged });
    for (const e of node.expressions as AnyNode[]) this.visit(e, scope);
  }
}

function resolves(ref: Reference): boolean {
  for (let s: Scope | undefined = ref.scope; s; s = s.parent) if (s.names.has(ref.name)) return true;
  return false;
}

function parse(text: string, onComment?: (block: boolean, text: string, start: number, end: number) => void): AnyNode {
  try {
    return Parser.parse(text, { ecmaVersion: 'latest', sourceType: 'script', allowHashBang: false, ...(onComment ? { onComment } : {}) }) as unknown as AnyNode;
  } catch (e) {
    if (e instanceof RangeError) bad('the function nests too deeply to be read');
    throw e;
  }
}

/** The parser's message without its "(line:column)" suffix, which counts from our wrapper, not the source. */
function syntaxMessage(e: unknown): { message: string; pos: number | undefined } {
  const err = e as { message?: unknown; pos?: unknown };
  const message = String(err?.message ?? e).replace(/\s*\(\d+:\d+\)$/, '');
  return { message, pos: typeof err?.pos === 'number' ? err.pos : undefined };
}

const METHOD_SHORTHAND = /^\s*(?:async\s+)?(?:\*\s*)?(?:(?:get|set|static)\s+)?(?:[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*|\[[^\]]*\]|#[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*)\s*\(/u;

/** Escapes that keep a string's value and leave nothing SES refuses. */
function quoted(value: string): string {
  return JSON.stringify(value).replace(/</g, '\\u003C').replace(/>/g, '\\u003E').replace(/import/g, '\\u0069mport');
}

/** The same cooked text as a template chunk (between `, `${ or } delimiters), without what SES refuses. */
function templateChunk(cooked: string): string {
  let out = '';
  for (let i = 0; i < cooked.length; i++) {
    const c = cooked[i]!;
    if (c === '\\' || c === '`') out += `\\${c}`;
    else if (c === '$' && cooked[i + 1] === '{') out += '\\$';
    else if (c === '\r') out += '\\r';
    else if (c === '<') out += '\\u003C';
    else if (c === '>') out += '\\u003E';
    else if (c === 'i' && cooked.startsWith('import', i)) out += '\\u0069';
    else out += c;
  }
  return out;
}

/** A comment's replacement: nothing of its text, the same line breaks (stack traces keep their lines). */
function blankComment(text: string): string {
  const breaks = text.match(/\r\n|[\n\r\u2028\u2029]/g);
  return breaks ? breaks.join('') : ' ';
}

/**
 * The edits that make `source` acceptable to SES without changing what it does. `offset` is where the source
 * starts in the parsed text. Only called when the source contains one of the sequences at all.
 */
function sesEdits(source: string, offset: number, w: Walker, comments: Edit[]): Edit[] {
  const edits: Edit[] = [...comments];
  const risky = (s: string) => MAYBE_REFUSED.test(s);
  for (const lit of w.literals) {
    const raw = source.slice(lit.start - offset, lit.end - offset);
    if (!risky(raw)) continue;
    if (lit.regex) {
      if (w.declared.has('RegExp')) bad(`a regular expression at ${where(source, lit.start - offset)} contains \`<!--\`, \`-->\` or \`import(\`, which keynode rewrites as RegExp(...), but this function defines its own \`RegExp\`: rename it`);
      const { pattern, flags } = lit.regex as { pattern: string; flags: string };
      edits.push({ start: lit.start - offset, end: lit.end - offset, text: ` (RegExp(${quoted(pattern)}, ${quoted(flags)})) ` });
    } else {
      edits.push({ start: lit.start - offset, end: lit.end - offset, text: quoted(lit.value as string) });
    }
  }
  for (const { node } of w.templates) {
    const raw = source.slice(node.start - offset, node.end - offset);
    if (!risky(raw)) continue;
    const cooked = (node.value as { cooked: string | null }).cooked;
    // Only a tagged template may hold an invalid escape (cooked null); its raw text is all there is.
    if (cooked === null) bad(`a tagged template at ${where(source, node.start - offset)} contains \`<!--\`, \`-->\` or \`import(\` next to an invalid escape: keynode cannot rewrite it`);
    edits.push({ start: node.start - offset, end: node.end - offset, text: templateChunk(cooked) });
  }
  // Edits and names do not overlap: sorted by start, the one holding a position is found by bisection.
  const regions = [...edits].sort((a, b) => a.start - b.start);
  const holding = <T extends { start: number; end: number }>(sorted: T[], at: number): T | undefined => {
    let lo = 0;
    let hi = sorted.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = sorted[mid]!;
      if (at < r.start) hi = mid - 1;
      else if (at >= r.end) lo = mid + 1;
      else return r;
    }
    return undefined;
  };
  const covered = (at: number) => holding(regions, at) !== undefined;
  const names = w.names
    .filter((n) => /import/.test(n.name as string))
    .map((n) => ({ node: n, start: n.start - offset, end: n.end - offset }))
    .sort((a, b) => a.start - b.start);
  const renamed = new Set<AnyNode>();
  for (const m of source.matchAll(SES_IMPORT)) {
    const at = m.index + m[1]!.length;
    if (covered(at)) continue;
    const name = holding(names, at)?.node;
    if (!name) bad(`\`import(\` at ${where(source, at)}: a node cannot load modules; pass what you need as arguments, or call another node with ctx.at`);
    if (renamed.has(name)) continue;
    renamed.add(name);
    const escaped = (name.name as string).replace(/import/g, '\\u0069mport');
    edits.push({ start: name.start - offset, end: name.end - offset, text: name.type === 'PrivateIdentifier' ? `#${escaped}` : escaped });
  }
  // What is left is `-->` between code tokens (`a-- > b`): a space between `--` and `>` means the same.
  for (const m of source.matchAll(SES_HTML_COMMENT)) {
    if (covered(m.index)) continue;
    if (m[0] === '-->') edits.push({ start: m.index + 2, end: m.index + 2, text: ' ' });
  }
  return edits;
}

function applyEdits(source: string, edits: Edit[]): string {
  if (!edits.length) return source;
  edits.sort((a, b) => a.start - b.start || a.end - b.end);
  let out = '';
  let at = 0;
  for (const e of edits) {
    if (e.start < at) continue; // nested inside an edit already made (a comment inside a rewritten region)
    out += source.slice(at, e.start) + e.text;
    at = e.end;
  }
  return out + source.slice(at);
}

function stillRefused(text: string): number | undefined {
  SES_HTML_COMMENT.lastIndex = 0;
  SES_IMPORT.lastIndex = 0;
  const h = SES_HTML_COMMENT.exec(text);
  if (h) return h.index;
  const i = SES_IMPORT.exec(text);
  return i ? i.index : undefined;
}

export interface AnalyzeOptions {
  /** Whether a free name is a global of the node (default: the client's copy of the list). */
  isGlobal?: (name: string) => boolean;
}

/**
 * Reads `source` as one function expression and checks it; throws ERR_BAD_FUNCTION naming what is wrong and
 * where (line and column in `source`). Pure: callers cache the result by source.
 */
export function analyzeFunction(source: string, options: AnalyzeOptions = {}): FunctionAnalysis {
  if (typeof source !== 'string' || source.length === 0) bad('the function source is empty');
  const isGlobal = options.isGlobal ?? ((n: string) => CLIENT_GLOBALS.has(n));
  const collect = MAYBE_REFUSED.test(source);
  const comments: Edit[] = [];
  const offset = PREFIX.length;
  let program: AnyNode;
  try {
    program = parse(`${PREFIX}${source}${SUFFIX}`, collect ? (_block, text, start, end) => {
      if (MAYBE_REFUSED.test(text)) comments.push({ start: start - offset, end: end - offset, text: blankComment(text) });
    } : undefined);
  } catch (e) {
    if (e instanceof KeynodeError) throw e;
    if (METHOD_SHORTHAND.test(source) && !/^\s*(?:async\s+)?function\b/.test(source)) {
      bad('the function must be a function expression or arrow function (a method shorthand such as `f(ctx) {}` cannot be shipped; write `f: (ctx) => {}`)');
    }
    const { message, pos } = syntaxMessage(e);
    bad(`the function does not parse: ${message}${pos === undefined ? '' : ` (${where(source, pos - offset)})`}`);
  }
  const body = program.body as AnyNode[];
  const stmt = body.length === 2 ? body[1] : undefined;
  const fn = stmt?.type === 'ExpressionStatement' ? (stmt.expression as AnyNode) : undefined;
  if (!fn || (fn.type !== 'ArrowFunctionExpression' && fn.type !== 'FunctionExpression')) {
    bad(fn?.type === 'ClassExpression' ? 'a class cannot be shipped: ship a function that builds what it needs, `(ctx, ...args) => new class { ... }().run(...args)`' : 'the source is not one function expression: ship an arrow function or a function expression, such as `(ctx, x) => x * 2`');
  }
  if (fn.generator) bad('a generator function returns an iterator, which cannot be sent back: return an array instead, such as `[...gen()]`');

  const w = new Walker(collect);
  const top = newScope(undefined, true);
  try {
    w.visit(fn, top);
  } catch (e) {
    if (e instanceof RangeError) bad('the function nests too deeply to be read');
    throw e;
  }
  if (w.imports.length) bad(`\`import()\` at ${where(source, w.imports[0]! - offset)}: a node cannot load modules; pass what you need as arguments, or call another node with ctx.at`);

  // Free names: neither declared in the function nor a global of the node.
  const free = new Map<string, number>();
  for (const ref of w.refs) {
    if (ref.typeofOnly || free.has(ref.name) || resolves(ref)) continue;
    free.set(ref.name, ref.at - offset);
  }
  const names = [...free.keys()];
  const esbuildOnly = names.filter((n) => ESBUILD.has(n) && !TSLIB.has(n));
  const tslibOnly = names.filter((n) => TSLIB.has(n) && !ESBUILD.has(n));
  if (esbuildOnly.length && tslibOnly.length) bad(`the function calls helpers of two compilers (\`${tslibOnly[0]}\` from tsc, \`${esbuildOnly[0]}\` from esbuild): compile it with one`);
  const family: HelperFamily | undefined = esbuildOnly.length ? 'esbuild' : tslibOnly.length ? 'tslib' : names.some((n) => TSLIB.has(n)) ? (w.newAwait ? 'esbuild' : 'tslib') : undefined;
  const provided = family === 'esbuild' ? ESBUILD : family === 'tslib' ? TSLIB : undefined;
  const helpers: string[] = [];
  const outside: [string, number][] = [];
  for (const [name, at] of free) {
    if (isGlobal(name)) continue;
    if (provided?.has(name)) helpers.push(name);
    else outside.push([name, at]);
  }
  if (outside.length) bad(outsideNames(outside.map(([name, at]) => ({ name, at })), (at) => where(source, at)));
  helpers.sort();

  let rewritten = source;
  if (collect) {
    rewritten = applyEdits(source, sesEdits(source, offset, w, comments));
    const left = stillRefused(rewritten);
    if (left !== undefined) bad(`the function contains text the sandbox refuses and keynode cannot rewrite, near ${where(rewritten, left)}`);
    // The node evaluates the rewritten text, not the one checked above: it must still be one function.
    let again: AnyNode[] | undefined;
    try {
      again = parse(`${PREFIX}${rewritten}${SUFFIX}`).body as AnyNode[];
    } catch {
      again = undefined;
    }
    const expr = again?.length === 2 && again[1]!.type === 'ExpressionStatement' ? (again[1]!.expression as AnyNode).type : undefined;
    if (expr !== fn.type) bad('keynode could not rewrite the function into one SES accepts (please report this)');
  }
  return { source: rewritten, helpers, family };
}

/**
 * Source given to a node's `eval`, rewritten the same way (strings and comments with `<!--`, `-->` or
 * `import(` made acceptable). Nothing to check about names: eval'd code sees only the node's globals.
 * Throws a SyntaxError with the parser's message.
 */
export function rewriteScript(source: string): string {
  if (!MAYBE_REFUSED.test(source)) return source;
  const comments: Edit[] = [];
  const offset = '"use strict";'.length;
  let program: AnyNode;
  try {
    program = parse(`"use strict";${source}`, (_block, text, start, end) => {
      if (MAYBE_REFUSED.test(text)) comments.push({ start: start - offset, end: end - offset, text: blankComment(text) });
    });
  } catch (e) {
    const { message, pos } = syntaxMessage(e);
    throw new SyntaxError(`${message}${pos === undefined ? '' : ` (${where(source, pos - offset)})`}`);
  }
  const w = new Walker(true);
  const top = newScope(undefined, true);
  for (const s of program.body as AnyNode[]) w.visit(s, top);
  if (w.imports.length) throw new SyntaxError(`import() at ${where(source, w.imports[0]! - offset)}: a node cannot load modules`);
  let rewritten: string;
  try {
    rewritten = applyEdits(source, sesEdits(source, offset, w, comments));
  } catch (e) {
    throw new SyntaxError((e as Error).message);
  }
  if (stillRefused(rewritten) !== undefined) throw new SyntaxError('the code contains text the sandbox refuses and keynode cannot rewrite');
  return rewritten;
}
