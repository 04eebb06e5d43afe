// Builds engine.js into a component of the `engine` world: node build.mjs OUT.wasm
// (componentize-js must be installed where node finds it; ./dev.sh plugins does that).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const { component } = await componentize({
  sourcePath: here('./engine.js'),
  witPath: here('../../wit'),
  worldName: 'engine',
  // Without these the component would import wasi:http, which the sandbox does not give.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(process.argv[2], component);
