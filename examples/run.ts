/**
 * `npm run example -- <name>`: runs one example. Each lives in examples/<name>/main.ts.
 */
const NAMES = ['trading', 'functions', 'checker', 'sharing', 'assistant'];
const name = process.argv[2];
if (!name || !NAMES.includes(name)) {
  console.error(`usage: npm run example -- <${NAMES.join('|')}>`);
  process.exit(2);
}
await import(`./${name}/main.js`);
