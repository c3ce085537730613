/**
 * Bad start-up conditions: one clear line, a non-zero exit, no stack trace, nothing started and
 * no directory created: a port in use, a wrong database password, a master-key file whose
 * directory does not exist, an unknown log level.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST_MAIN, DIST_WORKER, ensureBuilt } from '../support/dist';
import { NodeProcess } from '../support/node-process';

jest.setTimeout(120_000);

const dir = mkdtempSync(join(tmpdir(), 'kms-badstart-'));
const mysql = new URL(process.env.KMS_TEST_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306');
let busy: Server;
let busyPort: number;

beforeAll(async () => {
  ensureBuilt();
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  busyPort = (busy.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise((r) => busy.close(r));
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the script to its exit; returns the exit code and what it wrote. */
async function start(script: string, env: Record<string, string>) {
  const p = NodeProcess.node(script, { KMS_MASTER_KEY: randomBytes(32).toString('base64'), PORT: '0', ...env });
  const { code } = await p.exited;
  return { code, stderr: p.stderr.join(''), stdout: p.stdout.join(''), lines: p.lines() };
}

const expectOneLine = (r: Awaited<ReturnType<typeof start>>, text: string) => {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.lines[0]).toMatchObject({ level: 'error', msg: `cannot start: ${text}` });
};

describe('a start that cannot succeed', () => {
  it('says the port is in use, before creating anything or starting a worker', async () => {
    const dataDir = join(dir, 'port');
    const r = await start(DIST_MAIN, { KMS_DATA_DIR: dataDir, PORT: String(busyPort) });
    expectOneLine(r, `port ${busyPort} on 127.0.0.1 is already in use; stop the process that holds it or set PORT`);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('says so when the health port is in use (a worker with KMS_OPS_PORT)', async () => {
    const r = await start(DIST_WORKER, { KMS_DATA_DIR: join(dir, 'ops'), KMS_OPS_PORT: String(busyPort) });
    expectOneLine(r, `port ${busyPort} on 127.0.0.1 is already in use; stop the process that holds it or set KMS_OPS_PORT`);
  });

  it('names the database and user, not the password, when the database refuses the login', async () => {
    const url = new URL(mysql.toString());
    url.password = 'certainly-wrong-pw';
    url.pathname = '/kms_badstart';
    const dataDir = join(dir, 'dbpass');
    const r = await start(DIST_MAIN, { KMS_DATA_DIR: dataDir, DATABASE_URL: url.toString() });
    const user = decodeURIComponent(mysql.username || 'root');
    expectOneLine(r, `the database refused the login (${mysql.hostname}:${mysql.port || 3306}/kms_badstart as user '${user}'): check the user and password in DATABASE_URL`);
    expect(r.stderr).not.toContain('certainly-wrong-pw');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('refuses a master-key file in a directory that does not exist, and creates no directory', async () => {
    const dataDir = join(dir, 'mk-data');
    const file = join(dir, 'no-such-dir', 'master.key');
    const r = await start(DIST_MAIN, { KMS_DATA_DIR: dataDir, KMS_MASTER_KEY: '', KMS_MASTER_KEY_FILE: file });
    expectOneLine(r, `KMS_MASTER_KEY_FILE ${file}: directory ${join(dir, 'no-such-dir')} does not exist; create it, or set KMS_MASTER_KEY`);
    expect(existsSync(dataDir)).toBe(false);
    expect(existsSync(join(dir, 'no-such-dir'))).toBe(false);
  });

  it('refuses an unknown KMS_LOG_LEVEL', async () => {
    const r = await start(DIST_MAIN, { KMS_DATA_DIR: join(dir, 'level'), KMS_LOG_LEVEL: 'verbose' });
    expectOneLine(r, 'KMS_LOG_LEVEL must be one of debug, info, warn, error (got verbose)');
  });
});
