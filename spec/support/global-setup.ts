/**
 * Says loudly which real services the run uses. Under CI (CI=1) a missing service fails the run
 * instead of letting its tests skip.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';

const SOFTHSM = process.env.SOFTHSM2_LIB ?? '/usr/lib/softhsm/libsofthsm2.so';

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    s.setTimeout(1000);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
    s.once('timeout', () => { s.destroy(); resolve(false); });
  });
}

export default async function globalSetup(): Promise<void> {
  const problems: string[] = [];
  if (!existsSync(SOFTHSM)) problems.push(`SoftHSM2 library not found at ${SOFTHSM} (apt-get install -y softhsm2)`);
  try { execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' }); } catch { problems.push('softhsm2-util is not on PATH'); }
  if (!existsSync(process.env.PYKMIP_SERVER ?? '/usr/bin/pykmip-server')) problems.push('pykmip-server not found (apt-get install -y python3-pykmip): the KMIP provider tests start it');
  if (!(await reachable('127.0.0.1', 6379))) problems.push('Redis is not reachable on 127.0.0.1:6379');
  if (process.env.KMS_TEST_DATABASE_URL) {
    const u = new URL(process.env.KMS_TEST_DATABASE_URL);
    if (!(await reachable(u.hostname, Number(u.port || 3306)))) problems.push(`MariaDB is not reachable at ${u.host}`);
  }
  const db = process.env.KMS_TEST_DATABASE_URL ? `MariaDB (${process.env.KMS_TEST_DATABASE_URL})` : 'SQLite (set KMS_TEST_DATABASE_URL=mysql://root@127.0.0.1:3306 for MariaDB)';
  process.stderr.write(`\n[kms tests] database: ${db}\n`);
  if (problems.length) {
    const banner = `\n${'!'.repeat(72)}\n[kms tests] REAL SERVICES MISSING — tests that need them WILL FAIL:\n  - ${problems.join('\n  - ')}\nRun: bash .ci/run   (installs and starts them)\n${'!'.repeat(72)}\n`;
    process.stderr.write(banner);
    if (process.env.CI) throw new Error(`Required services missing: ${problems.join('; ')}`);
  }
}
