/**
 * @module node-worker/compiler-helpers
 * The helpers compilers put at the top of a file and call from inside functions: tsc's (the `tslib`
 * package, the same code tsc inlines) and esbuild's (and so tsx's, vite's, vitest's). A shipped function
 * compiled for an older target calls them by name without carrying them; the node hands each function the
 * ones it calls, from the family it was compiled by (both define `__await` and `__asyncGenerator`, with
 * different protocols). Each family is built once per process, when first called for, and hardened: they
 * hold no state, so sharing them across evals and nodes carries nothing from one to the next.
 */
/* eslint-disable */
import type { HelperFamily } from '../protocol/function-source.js';

declare function harden<T>(value: T): T;

type Any = any;

/**
 * esbuild's runtime helpers, as esbuild 0.28 emits them for ES2015+ targets (from esbuild's
 * internal/runtime/runtime.go, MIT licence), minus the module-system ones (__require, __toESM, __commonJS,
 * __export, ...): those appear only at a file's top level, never inside a shipped function.
 */
function esbuildHelpers(): Record<string, unknown> {
  var __create = Object.create;
  var __freeze = Object.freeze;
  var __defProp = Object.defineProperty;
  var __defProps = Object.defineProperties;
  var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
  var __getOwnPropDescs = Object.getOwnPropertyDescriptors;
  var __getOwnPropNames = Object.getOwnPropertyNames;
  var __getOwnPropSymbols = Object.getOwnPropertySymbols;
  var __getProtoOf = Object.getPrototypeOf;
  var __hasOwnProp = Object.prototype.hasOwnProperty;
  var __propIsEnum = Object.prototype.propertyIsEnumerable;
  var __reflectGet = Reflect.get;
  var __reflectSet = Reflect.set;
  var __knownSymbol = (name: Any, symbol?: Any) => ((symbol = (Symbol as Any)[name]) ? symbol : Symbol.for('Symbol.' + name));
  var __typeError = (msg: Any): never => {
    throw TypeError(msg);
  };
  var __pow = Math.pow;
  var __defNormalProp = (obj: Any, key: Any, value: Any) => (key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : (obj[key] = value));
  var __spreadValues = (a: Any, b: Any) => {
    for (var prop in (b ||= {})) if (__hasOwnProp.call(b, prop)) __defNormalProp(a, prop, b[prop]);
    if (__getOwnPropSymbols)
      for (var sym of __getOwnPropSymbols(b)) {
        if (__propIsEnum.call(b, sym)) __defNormalProp(a, sym, b[sym]);
      }
    return a;
  };
  var __spreadProps = (a: Any, b: Any) => __defProps(a, __getOwnPropDescs(b));
  var __name = (target: Any, value: Any) => __defProp(target, 'name', { value, configurable: true });
  var __restKey = (key: Any) => (typeof key === 'symbol' ? key : key + '');
  var __objRest = (source: Any, exclude: Any) => {
    var target: Any = {};
    for (var prop in source) if (__hasOwnProp.call(source, prop) && exclude.indexOf(prop) < 0) target[prop] = source[prop];
    if (source != null && __getOwnPropSymbols)
      for (var sym of __getOwnPropSymbols(source)) {
        if (exclude.indexOf(sym) < 0 && __propIsEnum.call(source, sym)) target[sym] = source[sym];
      }
    return target;
  };
  var __decorateClass = (decorators: Any, target: Any, key?: Any, kind?: Any) => {
    var result = kind > 1 ? void 0 : kind ? __getOwnPropDesc(target, key) : target;
    for (var i = decorators.length - 1, decorator; i >= 0; i--) if ((decorator = decorators[i])) result = (kind ? decorator(target, key, result) : decorator(result)) || result;
    if (kind && result) __defProp(target, key, result);
    return result;
  };
  var __decorateParam = (index: Any, decorator: Any) => (target: Any, key: Any) => decorator(target, key, index);
  var __decoratorStart = (base: Any) => [, , , __create(base?.[__knownSymbol('metadata')] ?? null)];
  var __decoratorStrings = ['class', 'method', 'getter', 'setter', 'accessor', 'field', 'value', 'get', 'set'];
  var __expectFn = (fn: Any) => (fn !== void 0 && typeof fn !== 'function' ? __typeError('Function expected') : fn);
  var __decoratorContext = (kind: Any, name: Any, done: Any, metadata: Any, fns: Any): Any => ({
    kind: __decoratorStrings[kind],
    name,
    metadata,
    addInitializer: (fn: Any) => (done._ ? __typeError('Already initialized') : fns.push(__expectFn(fn || null))),
  });
  var __decoratorMetadata = (array: Any, target: Any) => __defNormalProp(target, __knownSymbol('metadata'), array[3]);
  var __runInitializers = (array: Any, flags: Any, self: Any, value?: Any) => {
    for (var i = 0, fns = array[flags >> 1], n = fns && fns.length; i < n; i++) flags & 1 ? fns[i].call(self) : (value = fns[i].call(self, value));
    return value;
  };
  var __decorateElement = function (this: Any, array: Any, flags: Any, name: Any, decorators: Any, target: Any, extra?: Any) {
    var fn: Any, it: Any, done: Any, ctx: Any, access: Any, k = flags & 7, s = !!(flags & 8), p = !!(flags & 16);
    var j = k > 3 ? array.length + 1 : k ? (s ? 1 : 2) : 0, key = __decoratorStrings[k + 5];
    var initializers: Any = k > 3 && (array[j - 1] = []), extraInitializers = array[j] || (array[j] = []);
    var desc: Any =
      k &&
      (!p && !s && (target = target.prototype),
      k < 5 &&
        (k > 3 || !p) &&
        __getOwnPropDesc(
          k < 4
            ? target
            : {
                get [name]() {
                  return __privateGet(this, extra);
                },
                set [name](x: Any) {
                  __privateSet(this, extra, x);
                },
              },
          name,
        ));
    k ? p && k < 4 && __name(extra, (k > 2 ? 'set ' : k > 1 ? 'get ' : '') + name) : __name(target, name);
    for (var i = decorators.length - 1; i >= 0; i--) {
      ctx = __decoratorContext(k, name, (done = {}), array[3], extraInitializers);
      if (k) {
        (ctx.static = s), (ctx.private = p), (access = ctx.access = { has: p ? (x: Any) => __privateIn(target, x) : (x: Any) => name in x });
        if (k ^ 3) access.get = p ? (x: Any) => (k ^ 1 ? __privateGet : __privateMethod)(x, target, k ^ 4 ? extra : desc.get) : (x: Any) => x[name];
        if (k > 2) access.set = p ? (x: Any, y: Any) => __privateSet(x, target, y, k ^ 4 ? extra : desc.set) : (x: Any, y: Any) => (x[name] = y);
      }
      (it = (0, decorators[i])(k ? (k < 4 ? (p ? extra : desc[key]) : k > 4 ? void 0 : { get: desc.get, set: desc.set }) : target, ctx)), (done._ = 1);
      if (k ^ 4 || it === void 0) __expectFn(it) && (k > 4 ? initializers.unshift(it) : k ? (p ? (extra = it) : (desc[key] = it)) : (target = it));
      else if (typeof it !== 'object' || it === null) __typeError('Object expected');
      else __expectFn((fn = it.get)) && (desc.get = fn), __expectFn((fn = it.set)) && (desc.set = fn), __expectFn((fn = it.init)) && initializers.unshift(fn);
    }
    return k || __decoratorMetadata(array, target), desc && __defProp(target, name, desc), p ? (k ^ 4 ? extra : desc) : target;
  };
  var __publicField = (obj: Any, key: Any, value: Any) => __defNormalProp(obj, typeof key !== 'symbol' ? key + '' : key, value);
  var __accessCheck = (obj: Any, member: Any, msg: Any) => member.has(obj) || __typeError('Cannot ' + msg);
  var __privateIn = (member: Any, obj: Any) => (Object(obj) !== obj ? __typeError('Cannot use the "in" operator on this value') : member.has(obj));
  var __privateGet = (obj: Any, member: Any, getter?: Any) => (__accessCheck(obj, member, 'read from private field'), getter ? getter.call(obj) : member.get(obj));
  var __privateAdd = (obj: Any, member: Any, value?: Any) =>
    member.has(obj) ? __typeError('Cannot add the same private member more than once') : member instanceof WeakSet ? member.add(obj) : member.set(obj, value);
  var __privateSet = (obj: Any, member: Any, value: Any, setter?: Any) => (__accessCheck(obj, member, 'write to private field'), setter ? setter.call(obj, value) : member.set(obj, value), value);
  var __privateMethod = (obj: Any, member: Any, method: Any) => (__accessCheck(obj, member, 'access private method'), method);
  var __earlyAccess = (name: Any): never => {
    throw ReferenceError('Cannot access "' + name + '" before initialization');
  };
  var __privateWrapper = (obj: Any, member: Any, setter?: Any, getter?: Any) => ({
    set _(value: Any) {
      __privateSet(obj, member, value, setter);
    },
    get _() {
      return __privateGet(obj, member, getter);
    },
  });
  var __superGet = (cls: Any, obj: Any, key: Any) => __reflectGet(__getProtoOf(cls), key, obj);
  var __superSet = (cls: Any, obj: Any, key: Any, val: Any) => (__reflectSet(__getProtoOf(cls), key, val, obj), val);
  var __superWrapper = (cls: Any, obj: Any, key: Any) => ({
    get _() {
      return __superGet(cls, obj, key);
    },
    set _(val: Any) {
      __superSet(cls, obj, key, val);
    },
  });
  var __template = (cooked: Any, raw?: Any) => __freeze(__defProp(cooked, 'raw', { value: __freeze(raw || cooked.slice()) }));
  var __async = (__this: Any, __arguments: Any, generator: Any) => {
    return new Promise((resolve, reject) => {
      var fulfilled = (value: Any) => {
        try {
          step(generator.next(value));
        } catch (e) {
          reject(e);
        }
      };
      var rejected = (value: Any) => {
        try {
          step(generator.throw(value));
        } catch (e) {
          reject(e);
        }
      };
      var step = (x: Any) => (x.done ? resolve(x.value) : Promise.resolve(x.value).then(fulfilled, rejected));
      step((generator = generator.apply(__this, __arguments)).next());
    });
  };
  var __await = function (this: Any, promise: Any, isYieldStar?: Any) {
    this[0] = promise;
    this[1] = isYieldStar;
  } as Any;
  var __asyncGenerator = (__this: Any, __arguments: Any, generator: Any) => {
    var resume = (k: Any, v: Any, yes: Any, no: Any) => {
        try {
          var x = generator[k](v),
            isAwait = (v = x.value) instanceof __await,
            done = x.done;
          Promise.resolve(isAwait ? v[0] : v)
            .then((y: Any) => (isAwait ? resume(k === 'return' ? k : 'next', v[1] ? { done: y.done, value: y.value } : y, yes, no) : yes({ value: y, done })))
            .catch((e: Any) => resume('throw', e, yes, no));
        } catch (e) {
          no(e);
        }
      },
      method = (k: Any, call?: Any, wait?: Any, clear?: Any) =>
        (it[k] = (x: Any) => (
          (call = new Promise((yes, no) => {
            var run = () => resume(k, x, yes, no);
            q ? q.then(run) : run();
          })),
          (clear = () => q === wait && (q = 0)),
          (q = wait = call.then(clear, clear)),
          call
        )),
      q: Any,
      it: Any = {};
    return (generator = generator.apply(__this, __arguments)), (it[__knownSymbol('asyncIterator')] = () => it), method('next'), method('throw'), method('return'), it;
  };
  var __yieldStar = (value: Any) => {
    var obj = value[__knownSymbol('asyncIterator')],
      isAwait = false,
      method: Any,
      it: Any = {};
    if (obj == null) {
      obj = value[__knownSymbol('iterator')]();
      method = (k: Any) => (it[k] = (x: Any) => obj[k](x));
    } else {
      obj = obj.call(value);
      method = (k: Any) =>
        (it[k] = (v: Any) => {
          if (isAwait) {
            isAwait = false;
            if (k === 'throw') throw v;
            return v;
          }
          isAwait = true;
          return {
            done: false,
            value: new __await(
              new Promise((resolve) => {
                var x = obj[k](v);
                if (!(x instanceof Object)) __typeError('Object expected');
                resolve(x);
              }),
              1,
            ),
          };
        });
    }
    return (
      (it[__knownSymbol('iterator')] = () => it),
      method('next'),
      'throw' in obj
        ? method('throw')
        : (it.throw = (x: Any) => {
            throw x;
          }),
      'return' in obj && method('return'),
      it
    );
  };
  var __forAwait = (obj: Any, it?: Any, method?: Any) =>
    (it = obj[__knownSymbol('asyncIterator')])
      ? it.call(obj)
      : ((obj = obj[__knownSymbol('iterator')]()),
        (it = {}),
        (method = (key: Any, fn?: Any) =>
          (fn = obj[key]) &&
          (it[key] = (arg: Any) =>
            new Promise((yes, no) => {
              arg = fn.call(obj, arg);
              var done = arg.done;
              Promise.resolve(arg.value).then((value) => yes({ value, done }), no);
            }))),
        method('next'),
        method('return'),
        it);
  var __using = (stack: Any, value: Any, async?: Any) => {
    if (value != null) {
      if (typeof value !== 'object' && typeof value !== 'function') __typeError('Object expected');
      var dispose: Any, inner: Any;
      if (async) dispose = value[__knownSymbol('asyncDispose')];
      if (dispose === void 0) {
        dispose = value[__knownSymbol('dispose')];
        if (async) inner = dispose;
      }
      if (typeof dispose !== 'function') __typeError('Object not disposable');
      if (inner)
        dispose = function (this: Any) {
          try {
            inner.call(this);
          } catch (e) {
            return Promise.reject(e);
          }
        };
      stack.push([async, dispose, value]);
    } else if (async) {
      stack.push([async]);
    }
    return value;
  };
  var __callDispose = (stack: Any, error: Any, hasError: Any) => {
    var E: Any =
      typeof (globalThis as Any).SuppressedError === 'function'
        ? (globalThis as Any).SuppressedError
        : function (e: Any, s: Any, m: Any, _?: Any) {
            return (_ = Error(m)), (_.name = 'SuppressedError'), (_.error = e), (_.suppressed = s), _;
          };
    var fail = (e: Any) => (error = hasError ? new E(e, error, 'An error was suppressed during disposal') : ((hasError = true), e));
    var next = (it?: Any): Any => {
      while ((it = stack.pop())) {
        try {
          var result = it[1] && it[1].call(it[2]);
          if (it[0]) return Promise.resolve(result).then(next, (e) => (fail(e), next()));
        } catch (e) {
          fail(e);
        }
      }
      if (hasError) throw error;
    };
    return next();
  };
  return {
    __create, __freeze, __defProp, __defProps, __getOwnPropDesc, __getOwnPropDescs, __getOwnPropNames, __getOwnPropSymbols,
    __getProtoOf, __hasOwnProp, __propIsEnum, __reflectGet, __reflectSet, __knownSymbol, __typeError, __pow, __defNormalProp,
    __spreadValues, __spreadProps, __name, __restKey, __objRest, __decorateClass, __decorateParam, __decoratorStart,
    __decoratorMetadata, __runInitializers, __decorateElement, __publicField, __privateIn, __privateGet, __privateAdd,
    __privateSet, __privateMethod, __earlyAccess, __privateWrapper, __superGet, __superSet, __superWrapper, __template,
    __async, __await, __asyncGenerator, __yieldStar, __forAwait, __using, __callDispose,
  };
}

const families: Partial<Record<HelperFamily, Readonly<Record<string, unknown>>>> = {};

/** A family's helpers, loaded and hardened the first time a function calls one (most never do). */
function helpersOf(family: HelperFamily): Readonly<Record<string, unknown>> {
  let set = families[family];
  if (!set) {
    if (family === 'tslib') {
      // tslib assigns its helpers to the host's global object too: harmless, no node's code can see it.
      const tslib = require('tslib') as Record<string, unknown>;
      const picked: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(tslib)) if (k.startsWith('__') && typeof v === 'function') picked[k] = v;
      set = harden(picked);
    } else {
      set = harden(esbuildHelpers());
    }
    families[family] = set;
  }
  return set;
}

/** The helpers a function calls, in the order of `names`, from its compiler's family. */
export function helperValues(family: HelperFamily | undefined, names: readonly string[]): unknown[] {
  if (!names.length) return [];
  const set = helpersOf(family ?? 'tslib');
  return names.map((n) => set[n]);
}

/** Every helper name a node provides, by family (for tests that check the client's list). */
export function providedHelpers(): Record<HelperFamily, string[]> {
  return { tslib: Object.keys(helpersOf('tslib')), esbuild: Object.keys(helpersOf('esbuild')) };
}
