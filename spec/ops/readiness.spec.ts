/**
 * /healthz and /readyz, without authentication: readiness names the database, the migrations,
 * Redis and each enabled HSM profile, turns 503 naming Redis while a (private) Redis is down and
 * ready again once it is back. Nothing secret is in either answer.
 */
import { createPkcs11Profile } from '../support/actors';
import { PrivateRedis, randomQueuePrefix } from '../support/redis';
import { startTestServer, type TestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { waitFor } from '../support/wait';

let redis: PrivateRedis;
let s: TestServer;
let token: SoftHsmToken;

beforeAll(async () => {
  token = await createSoftHsmToken();
  redis = await PrivateRedis.start();
  s = await startTestServer({ KMS_ROLE: 'api', REDIS_URL: redis.url, KMS_QUEUE_PREFIX: randomQueuePrefix(), KMS_READY_TIMEOUT_MS: '1000' });
});
afterAll(async () => {
  await s?.close();
  await redis?.stop();
  await token?.cleanup();
});

const readyz = async () => {
  const res = await fetch(`${s.url}/readyz`);
  const raw = await res.text();
  return { status: res.status, raw, body: JSON.parse(raw) };
};

describe('GET /healthz', () => {
  it('answers 200 without credentials', async () => {
    const res = await fetch(`${s.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });
});

describe('GET /readyz', () => {
  it('reports the database, migrations, Redis and each enabled HSM profile', async () => {
    await createPkcs11Profile(s.client, token.details(), 'ready-hsm');
    const r = await readyz();
    expect(r.body.down).toEqual([]);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      status: 'ready',
      down: [],
      checks: [
        { name: 'database', status: 'up' },
        { name: 'migrations', status: 'up' },
        { name: 'redis', status: 'up' },
        { name: 'hsm:ready-hsm', status: 'up' },
      ],
    });
    expect(r.raw).not.toContain(token.pin);
    expect(r.raw).not.toContain(token.library);
  });

  it('turns 503 naming redis while Redis is stopped, and ready again when it is back', async () => {
    await redis.stop();
    const down = await waitFor(async () => { const r = await readyz(); return r.status === 503 && r; }, 15_000, 'readiness to drop');
    expect(down.body).toMatchObject({ status: 'not ready', down: ['redis'] });
    expect(down.body.checks).toContainEqual({ name: 'redis', status: 'down', reason: expect.any(String) });
    expect(down.body.checks).toContainEqual({ name: 'database', status: 'up' });
    expect(down.raw).not.toContain(redis.url);

    await redis.start();
    const up = await waitFor(async () => { const r = await readyz(); return r.status === 200 && r; }, 15_000, 'readiness to return');
    expect(up.body).toMatchObject({ status: 'ready', down: [] });
  });
});
