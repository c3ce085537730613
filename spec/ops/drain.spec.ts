/**
 * SIGTERM drains: the production process (`node dist/main.js`, no npm or tsx in the signal path)
 * turns /readyz to 503 at once, keeps accepting for KMS_SHUTDOWN_DELAY_SEC, then stops listening;
 * every request whose bytes reached it is answered (pipelined ones too) and no connection is
 * reset; it exits 0. `npm start` passes the signal on to node too.
 */
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { randomBytes } from 'node:crypto';
import { signedQuery } from '../support/client';
import { DEFAULT_PASSWORD_WARNING } from '../../src/ops/default-password';
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
    PORT: '0', KMS_OPS_PORT: '0', KMS_SHUTDOWN_TIMEOUT_SEC: '60', KMS_SHUTDOWN_DELAY_SEC: '0.3',
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
      expect(msgs).toContain(DEFAULT_PASSWORD_WARNING); // admin still has the default password here
      expect(server.lines().find((l) => l.msg === 'shutting down')).toMatchObject({ signal: 'SIGTERM', inFlight: 50 });
      expect(server.lines().filter((l) => l.msg === 'api request' && l.command === 'listZones' && l.status === 200)).toHaveLength(50);
    } finally {
      await server.kill();
    }
  });
});

/** One raw keep-alive connection: writes bytes, splits what comes back into HTTP answers, notes how it ended. */
class RawConnection {
  readonly answers: Array<{ status: number; connection: string | undefined }> = [];
  ended: 'fin' | 'reset' | 'refused' | 'error' | undefined;
  #buf = Buffer.alloc(0);
  readonly #socket;
  readonly closed: Promise<void>;

  constructor(port: number) {
    this.#socket = createConnection({ host: '127.0.0.1', port });
    this.#socket.on('data', (b: Buffer) => { this.#buf = Buffer.concat([this.#buf, b]); this.#parse(); });
    this.closed = new Promise((resolve) => {
      this.#socket.on('error', (e: NodeJS.ErrnoException) => { this.ended ??= e.code === 'ECONNRESET' ? 'reset' : e.code === 'ECONNREFUSED' ? 'refused' : 'error'; });
      this.#socket.on('end', () => { this.ended ??= 'fin'; this.#socket.end(); });
      this.#socket.on('close', () => resolve());
    });
  }

  write(text: string): void {
    this.#socket.write(text);
  }

  #parse(): void {
    for (;;) {
      const head = this.#buf.indexOf('\r\n\r\n');
      if (head < 0) return;
      const lines = this.#buf.subarray(0, head).toString('latin1').split('\r\n');
      const headers = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const length = Number(headers.get('content-length') ?? 0);
      if (this.#buf.length < head + 4 + length) return;
      this.answers.push({ status: Number(lines[0]!.split(' ')[1]), connection: headers.get('connection') });
      this.#buf = this.#buf.subarray(head + 4 + length);
    }
  }
}

const getRequest = (): string => `GET /client/api?${signedQuery({ command: 'listZones' }, ADMIN_KEYS.apiKey, ADMIN_KEYS.secretKey)} HTTP/1.1\r\nHost: kms\r\n\r\n`;

describe('SIGTERM while requests are pipelined and connections are opening', () => {
  it('answers 50 requests pipelined on 10 keep-alive connections and 5 on connections opened as the signal lands: 55 answers, 0 resets, ten times in a row', async () => {
    for (let run = 1; run <= 10; run++) {
      const server = NodeProcess.node(DIST_MAIN, env);
      try {
        const port = await server.portOf('CloudStack KMS API listening');
        // Ten keep-alive connections, each used once already.
        const kept = Array.from({ length: 10 }, () => new RawConnection(port));
        for (const c of kept) c.write(getRequest());
        await waitFor(async () => kept.every((c) => c.answers.length === 1), 30_000, 'the first answers');

        // In one tick: 5 requests pipelined on each (one write), 5 new connections each sending one, and the signal.
        for (const c of kept) c.write(Array.from({ length: 5 }, getRequest).join(''));
        const fresh = Array.from({ length: 5 }, () => new RawConnection(port));
        for (const c of fresh) c.write(getRequest());
        server.proc.kill('SIGTERM');

        await Promise.all([...kept, ...fresh].map((c) => c.closed));
        const answers = [...kept.map((c) => c.answers.slice(1)), ...fresh.map((c) => c.answers)].flat();
        const ends = [...kept, ...fresh].map((c) => c.ended);
        expect({ run, answers: answers.length, ok: answers.filter((a) => a.status === 200 || a.status === 503).length, resets: ends.filter((e) => e !== 'fin').length })
          .toEqual({ run, answers: 55, ok: 55, resets: 0 });
        // Every connection was closed by the server with a FIN after its last answer (none is left
        // open: the process exited), whether that answer said `Connection: close` or came just before the signal.
        expect(await server.exited).toEqual({ code: 0, signal: null });
        expect(server.lines().map((l) => l.msg)).toContain('every request received was answered');
      } finally {
        await server.kill();
      }
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
