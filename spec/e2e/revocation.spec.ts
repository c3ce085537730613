/**
 * Revocation everywhere at once: two API processes (A and B) and a worker, as production runs them
 * (`node dist/main.js` with KMS_ROLE=api, `node dist/worker-main.js`), on one database and Redis.
 * Node A keeps a user's credentials in its cache (it has just served them); the change is made
 * elsewhere (disableUser and disableAccount run as jobs on the worker, registerUserKeys and
 * enableUser on node B), and node A refuses the old credentials at its very next request: each
 * authenticated request reads the credentials version that every change moves.
 */
import { randomBytes } from 'node:crypto';
import { ApiClient } from '../support/client';
import { createTestDb, type TestDb } from '../support/db';
import { DIST_MAIN, DIST_WORKER, ensureBuilt } from '../support/dist';
import { NodeProcess } from '../support/node-process';
import { dropPrefix, randomQueuePrefix, SHARED_REDIS_URL } from '../support/redis';
import { ADMIN_KEYS } from '../support/server';
import { waitFor } from '../support/wait';

jest.setTimeout(180_000);

let t: TestDb;
const prefix = randomQueuePrefix();
const procs: NodeProcess[] = [];
let a: ApiClient;
let b: ApiClient;

beforeAll(async () => {
  ensureBuilt();
  t = await createTestDb();
  await t.db.destroy();
  const env = {
    KMS_DATA_DIR: t.dataDir, KMS_MASTER_KEY: randomBytes(32).toString('base64'), REDIS_URL: SHARED_REDIS_URL, KMS_QUEUE_PREFIX: prefix,
    KMS_ADMIN_API_KEY: ADMIN_KEYS.apiKey, KMS_ADMIN_SECRET_KEY: ADMIN_KEYS.secretKey, PORT: '0', KMS_SHUTDOWN_DELAY_SEC: '0',
    ...(t.databaseUrl ? { DATABASE_URL: t.databaseUrl } : {}),
  };
  // One first, so the others find the database migrated and bootstrapped.
  procs.push(NodeProcess.node(DIST_MAIN, { ...env, KMS_ROLE: 'api' }));
  a = new ApiClient(`http://127.0.0.1:${await procs[0]!.portOf('CloudStack KMS API listening', 120_000)}`);
  procs.push(NodeProcess.node(DIST_MAIN, { ...env, KMS_ROLE: 'api' }), NodeProcess.node(DIST_WORKER, { ...env, KMS_OPS_PORT: '0' }));
  b = new ApiClient(`http://127.0.0.1:${await procs[1]!.portOf('CloudStack KMS API listening', 120_000)}`);
  await procs[2]!.waitForLine('job worker started', 120_000);
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.signal('SIGTERM')));
  await Promise.all(procs.map((p) => p.kill()));
  await dropPrefix(SHARED_REDIS_URL, prefix);
  await t?.drop().catch(() => undefined);
});

const admin = async (client: ApiClient, params: Record<string, string | number | boolean>): Promise<Record<string, any>> => {
  const res = await client.signed(ADMIN_KEYS, params);
  if (res.status !== 200) throw new Error(`${String(params.command)}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
};

/** Submits on node B and waits (asking node B) until the worker finished the job. */
async function jobOnWorker(params: Record<string, string>): Promise<void> {
  const { jobid } = await admin(b, params);
  const done = await waitFor(async () => {
    const r = await admin(b, { command: 'queryAsyncJobResult', jobid });
    return r.jobstatus !== 0 && r;
  }, 30_000, `${params.command} on the worker`);
  expect(done.jobstatus).toBe(1);
}

describe('2 API nodes and a worker', () => {
  it('node A refuses old credentials at its very next request after disableUser and disableAccount (worker) and registerUserKeys (node B)', async () => {
    const acct = await admin(a, { command: 'createAccount', username: 'revoked', password: 'pw-revoked-123', firstname: 'R', lastname: 'U', accounttype: 0 });
    const user = acct.account.user[0];
    const uk = (await admin(b, { command: 'registerUserKeys', id: user.id })).userkeys;
    const keys = { apiKey: uk.apikey, secretKey: uk.secretkey };
    const onA = async (k: typeof keys) => (await a.signed(k, { command: 'listZones' })).status;

    // disableUser, run by the worker: node A served the keys a moment before (they are in its cache).
    expect(await onA(keys)).toBe(200);
    await jobOnWorker({ command: 'disableUser', id: user.id });
    expect(await onA(keys)).toBe(401);

    // enableUser on node B: node A lets the keys in again at once.
    await admin(b, { command: 'enableUser', id: user.id });
    expect(await onA(keys)).toBe(200);

    // registerUserKeys on node B: the old pair is refused by node A, the new one accepted.
    const fresh = (await admin(b, { command: 'registerUserKeys', id: user.id })).userkeys;
    const newKeys = { apiKey: fresh.apikey, secretKey: fresh.secretkey };
    expect(await onA(keys)).toBe(401);
    expect(await onA(newKeys)).toBe(200);

    // disableAccount, run by the worker: refused by node A at once; a session on node A too.
    const session = await a.login('revoked', 'pw-revoked-123');
    expect((await session.get({ command: 'listZones' })).status).toBe(200);
    await jobOnWorker({ command: 'disableAccount', id: acct.account.id, lock: 'false' });
    expect(await onA(newKeys)).toBe(401);
    expect((await session.get({ command: 'listZones' })).status).toBe(401);
  });
});
