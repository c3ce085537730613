/**
 * Cluster start: two API processes and two workers started at the same instant on an empty
 * MariaDB database (the `docker compose up` case) all come up, taking turns on the migration and
 * bootstrap locks, and leave exactly one ROOT domain, admin user and default profile.
 * Runs on MariaDB whatever KMS_TEST_DATABASE_URL says: the race is MySQL's.
 */
import { migrationSource } from '../../src/db/migrations';
import knexFactory from 'knex';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIST_MAIN, DIST_WORKER, ensureBuilt } from '../support/dist';
import { NodeProcess } from '../support/node-process';
import { dropPrefix, randomQueuePrefix, SHARED_REDIS_URL } from '../support/redis';
import { waitFor } from '../support/wait';

jest.setTimeout(240_000);

const base = new URL(process.env.KMS_TEST_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306');
const dbName = `kms_cluster_${randomBytes(5).toString('hex')}`;
const admin = () => knexFactory({
  client: 'mysql2',
  connection: { host: base.hostname, port: Number(base.port || 3306), user: decodeURIComponent(base.username || 'root'), password: decodeURIComponent(base.password), database: undefined },
});
const prefix = randomQueuePrefix();
const dataDir = mkdtempSync(join(tmpdir(), 'kms-cluster-'));
const procs: NodeProcess[] = [];

beforeAll(() => ensureBuilt());
afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  const a = admin();
  await a.raw('DROP DATABASE IF EXISTS ??', [dbName]);
  await a.destroy();
  await dropPrefix(SHARED_REDIS_URL, prefix);
  rmSync(dataDir, { recursive: true, force: true });
});

const readyz = async (port: number): Promise<{ status: number; body: any }> => {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: await res.json() };
};

describe('2 API processes and 2 workers started at once on an empty MariaDB database', () => {
  it('all become ready, and the database is bootstrapped exactly once', async () => {
    const url = new URL(base.toString());
    url.pathname = `/${dbName}`;
    const env = {
      DATABASE_URL: url.toString(), REDIS_URL: SHARED_REDIS_URL, KMS_QUEUE_PREFIX: prefix, KMS_DATA_DIR: dataDir,
      KMS_MASTER_KEY: randomBytes(32).toString('base64'), KMS_OPS_PORT: '0', PORT: '0', KMS_LOG_LEVEL: 'info',
    };
    procs.push(
      NodeProcess.node(DIST_MAIN, { ...env, KMS_ROLE: 'api' }),
      NodeProcess.node(DIST_MAIN, { ...env, KMS_ROLE: 'api' }),
      NodeProcess.node(DIST_WORKER, env),
      NodeProcess.node(DIST_WORKER, env),
    );
    const opsPorts = await Promise.all(procs.map((p) => p.portOf('health and metrics listening', 180_000)));
    for (const port of opsPorts) {
      const ready = await waitFor(async () => { const r = await readyz(port); return r.status === 200 && r; }, 30_000, `readiness on ${port}`);
      expect(ready.body).toMatchObject({ status: 'ready', down: [] });
      expect(ready.body.checks.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(['database', 'migrations', 'redis']));
    }
    for (const p of procs) expect(p.lines().filter((l) => l.level === 'error')).toEqual([]);

    const a = admin();
    try {
      const count = async (sql: string) => Number(((await a.raw(sql)) as any)[0][0].n);
      expect(await count(`SELECT COUNT(*) AS n FROM \`${dbName}\`.domain WHERE path = '/'`)).toBe(1);
      expect(await count(`SELECT COUNT(*) AS n FROM \`${dbName}\`.user WHERE username = 'admin'`)).toBe(1);
      expect(await count(`SELECT COUNT(*) AS n FROM \`${dbName}\`.kms_hsm_profiles WHERE name = 'default'`)).toBe(1);
      expect(await count(`SELECT COUNT(*) AS n FROM \`${dbName}\`.knex_migrations`)).toBe((await migrationSource.getMigrations([])).length);
    } finally {
      await a.destroy();
    }
    const waited = procs.flatMap((p) => p.lines()).filter((l) => /^waiting for the (migration|bootstrap) lock/.test(l.msg));
    process.stderr.write(`[cluster start] ${new Set(waited.map((l) => l.pid)).size} of 4 processes logged that they waited for a lock\n`);

    const exits = await Promise.all(procs.map((p) => p.signal('SIGTERM')));
    expect(exits).toEqual(Array(4).fill({ code: 0, signal: null }));
  });
});
