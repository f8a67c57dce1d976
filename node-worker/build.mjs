// The worker runs as CommonJS (fewer threads and a faster start than an ES module entry; see README):
// mark its compiled tree so Node loads its .js files that way.
import { writeFileSync } from 'node:fs';

writeFileSync(new URL('../dist/worker/package.json', import.meta.url), '{ "type": "commonjs" }\n');
