/**
 * SIGTERM drains: the production process (`node dist/main.js`, no npm or tsx in the signal path)
 * stops accepting connections, answers every request it had already received, and exits 0.
 * `npm start` passes the signal on to node too.
 */
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { randomBytes } from 'node:crypto';
import { signedQuery } from '../support/client';
import { createTestDb, type TestDb } from '../support/db';
import { DIST_MAIN, ensureBuilt } from '../support/dist';
import { NodeProcess } from '../support/node-process';
import { ADMIN_KEYS } from '../support/server';
import { waitFor } from '../support/wait';

jest.setTimeout(180_000);

let t: TestDb;
let env: Record<string, string>;

beforeAll(async () => {
  ensureBuilt();
  t = await createTestDb();
  await t.db.destroy();
  env = {
    KMS_DATA_DIR: t.dataDir, KMS_MASTER_KEY: randomBytes(32).toString('base64'),
    KMS_ADMIN_API_KEY: ADMIN_KEYS.apiKey, KMS_ADMIN_SECRET_KEY: ADMIN_KEYS.secretKey,
    PORT: '0', KMS_OPS_PORT: '0', KMS_SHUTDOWN_TIMEOUT_SEC: '60',
    ...(t.databaseUrl ? { DATABASE_URL: t.databaseUrl } : {}),
  };
});
afterAll(async () => {
  await t.drop().catch(() => undefined);
});

/** A form POST whose headers and all but the last byte of its body are sent now; `finish()` sends the rest. */
function heldRequest(port: number, body: string): { finish(): void; answer: Promise<{ status: number; body: string }> } {
  let finish = (): void => undefined;
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, method: 'POST', path: '/client/api', agent: false,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.flushHeaders();
    req.write(body.slice(0, -1));
    finish = () => req.end(body.slice(-1));
  });
  return { finish: () => finish(), answer };
}

const refusesConnections = (port: number): Promise<boolean> => new Promise((resolve) => {
  const s = createConnection({ host: '127.0.0.1', port });
  s.once('connect', () => { s.destroy(); resolve(false); });
  s.once('error', () => resolve(true));
});

const inFlight = async (opsPort: number): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  return Number(/^kms_api_requests_in_flight (\d+)/m.exec(text)?.[1] ?? -1);
};

describe('SIGTERM to node dist/main.js', () => {
  it('answers all 50 requests already received, refuses new connections, and exits 0', async () => {
    const server = NodeProcess.node(DIST_MAIN, env);
    try {
      const port = await server.portOf('CloudStack KMS API listening');
      const opsPort = await server.portOf('health and metrics listening');
      const held = Array.from({ length: 50 }, () => heldRequest(port, signedQuery({ command: 'listZones' }, ADMIN_KEYS.apiKey, ADMIN_KEYS.secretKey)));
      await waitFor(async () => (await inFlight(opsPort)) === 50, 30_000, '50 requests in flight');

      server.proc.kill('SIGTERM');
      await waitFor(() => refusesConnections(port), 30_000, 'the API port to refuse new connections');
      expect(server.running).toBe(true);
      for (const h of held) h.finish();
      const answers = await Promise.all(held.map((h) => h.answer));

      expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
      for (const a of answers) expect(JSON.parse(a.body)).toHaveProperty('listzonesresponse');
      expect(await server.exited).toEqual({ code: 0, signal: null });
      const msgs = server.lines().map((l) => l.msg);
      expect(msgs).toContain('every request received was answered');
      expect(server.lines().find((l) => l.msg === 'shutting down')).toMatchObject({ signal: 'SIGTERM', inFlight: 50 });
      expect(server.lines().filter((l) => l.msg === 'api request' && l.command === 'listZones' && l.status === 200)).toHaveLength(50);
    } finally {
      await server.kill();
    }
  });
});

describe('SIGTERM to npm start', () => {
  it('reaches the node process, which drains and exits, freeing the port', async () => {
    const npm = NodeProcess.spawn('npm', ['start', '--silent'], { ...env, HOME: process.env.HOME ?? '/tmp', KMS_OPS_PORT: '' });
    try {
      const listening = await npm.waitForLine('CloudStack KMS API listening', 90_000);
      const port = Number(new URL(listening.url).port);
      expect(listening.pid).not.toBe(npm.proc.pid);
      expect(await npm.signal('SIGTERM')).toEqual({ code: 0, signal: null });
      expect(npm.lines().map((l) => l.msg)).toContain('stopped');
      expect(() => process.kill(listening.pid, 0)).toThrow(/ESRCH/);
      expect(await refusesConnections(port)).toBe(true);
    } finally {
      await npm.kill();
    }
  });
});
