// The worker runs as CommonJS (fewer threads and a faster start than an ES module entry; see README):
// mark its compiled tree so Node loads its .js files that way.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const dist = new URL('../dist/worker/', import.meta.url);
writeFileSync(new URL('package.json', dist), '{ "type": "commonjs" }\n');

// Every worker holds the parser that reads shipped functions. Minified it costs each worker ~0.4 MB less
// (the source V8 keeps, and smaller function metadata); it resolves as `acorn` from the worker's own tree,
// which the worker's permission model already lets it read. Without esbuild (a dev dependency) the worker
// gets acorn as published.
const require = createRequire(import.meta.url);
const vendored = new URL('node_modules/acorn/', dist);
const source = require.resolve('acorn');
const target = new URL('acorn.min.js', vendored).pathname;
mkdirSync(vendored, { recursive: true });
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  esbuild = undefined;
}
if (esbuild) {
  esbuild.buildSync({ entryPoints: [source], outfile: target, minify: true, format: 'cjs', platform: 'node', target: 'node20', logLevel: 'error', banner: { js: '/* acorn: MIT licence, see LICENSE here and https://github.com/acornjs/acorn */' } });
} else {
  copyFileSync(source, target);
}
copyFileSync(join(dirname(require.resolve('acorn/package.json')), 'LICENSE'), new URL('LICENSE', vendored));
const { version } = require('acorn/package.json');
writeFileSync(new URL('package.json', vendored), `${JSON.stringify({ name: 'acorn', version, main: 'acorn.min.js', license: 'MIT' })}\n`);
