import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
export const DIST_MAIN = join(ROOT, 'dist', 'main.js');
export const DIST_WORKER = join(ROOT, 'dist', 'worker-main.js');

const newest = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
    const p = join(dir, e.name);
    return Math.max(m, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }, 0);

/**
 * Compiles src/ into dist/ (`npm run build`) unless dist/ is newer than every source file, so
 * process tests run what production runs: `node dist/main.js`, no tsx or npm in between.
 */
export function ensureBuilt(): void {
  const built = existsSync(DIST_MAIN) && existsSync(DIST_WORKER) ? Math.min(statSync(DIST_MAIN).mtimeMs, statSync(DIST_WORKER).mtimeMs) : 0;
  if (built > newest(join(ROOT, 'src'))) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
}
