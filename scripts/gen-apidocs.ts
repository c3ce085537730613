import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateApidocs } from '../src/commands/apidocs';
import { ALL_COMMANDS } from '../src/commands/registry';

/** Regenerates apidocs/ from the command declarations. */
const dir = join(__dirname, '..', 'apidocs');
mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) rmSync(join(dir, f));
const files = generateApidocs(ALL_COMMANDS);
for (const [name, content] of files) writeFileSync(join(dir, name), content);
process.stdout.write(`apidocs: wrote ${files.size} files\n`);
