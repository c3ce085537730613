/**
 * /metrics in Prometheus text: after a createVolume and a rotation on a SoftHSM2 profile, the API,
 * job and backend counters have moved, and the gauges show HSM sessions, wrapped DEKs per KEK state
 * and the DEKs still to rewrap. The ops port answers anyone with the anonymous view, which names no
 * HSM profile and no KMS key; the bearer token (KMS_METRICS_TOKEN) gets the detailed view, on the
 * API port too, which without it has no /metrics. No parameter value appears in either view.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createOpsServer } from '../../src/api/ops-routes';
import { adminCall, createActor, createPkcs11Profile, waitForJob } from '../support/actors';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { waitFor } from '../support/wait';

const METRICS_TOKEN = 'metrics-spec-token-0123456789';
let s: TestServer;
let token: SoftHsmToken;
let ops: Server;
let opsUrl: string;

beforeAll(async () => {
  token = await createSoftHsmToken();
  s = await startTestServer({ KMS_METRICS_TOKEN: METRICS_TOKEN, KMS_METRICS_REFRESH_SEC: '0.2' });
  ops = await new Promise((resolve) => { const h = createOpsServer(s.app).listen(0, '127.0.0.1', () => resolve(h)); });
  opsUrl = `http://127.0.0.1:${(ops.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => ops?.close(r));
  ops?.closeAllConnections();
  await s?.close();
  await token?.cleanup();
});

/** The value of one series, or undefined when it is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** The detailed view (the token), from the API port. */
const scrape = async (): Promise<string> => {
  const res = await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
};

describe('GET /metrics', () => {
  it('counts a createVolume and a rotation: API requests, jobs, backend operations, sessions and DEKs', async () => {
    await adminCall(s.client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'metrics-zone' })).zone.id;
    const alice = await createActor(s.client, { name: 'metrics-alice' });
    const profileId = await createPkcs11Profile(s.client, token.details(), 'metrics-hsm');
    const key = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: profileId })).body.kmskey.id;
    const before = await scrape();
    expect(sample(before, 'kms_api_requests_total', { command: 'createVolume' })).toBeUndefined();

    const created = await s.client.signed(alice.keys, { command: 'createVolume', name: 'v1', zoneid: zone, kmskeyid: key });
    expect((await waitForJob(s.client, alice.keys, created.body.jobid)).jobstatus).toBe(1);
    const rotated = await s.client.signed(alice.keys, { command: 'rotateKMSKey', id: key });
    expect((await waitForJob(s.client, alice.keys, rotated.body.jobid)).jobstatus).toBe(1);
    await s.client.signed(alice.keys, { command: 'rotateKMSKey', id: 'not-a-uuid' });

    // The database gauges are read in the background (every 0.2 s here) and a view is rendered at most once a second.
    const after = await waitFor(async () => {
      const text = await scrape();
      return sample(text, 'kms_deks_to_rewrap', { kms_key: key }) === 1 && sample(text, 'kms_api_requests_total', { command: 'rotateKMSKey', errorcode: '431' }) === 1 && text;
    }, 15_000, 'the gauges to show the rotation');
    expect(sample(after, 'kms_api_requests_total', { command: 'createVolume', errorcode: '0' })).toBe(1);
    expect(sample(after, 'kms_api_requests_total', { command: 'rotateKMSKey', errorcode: '0' })).toBe(1);
    expect(sample(after, 'kms_api_requests_total', { command: 'rotateKMSKey', errorcode: '431' })).toBe(1);
    expect(sample(after, 'kms_api_request_duration_seconds_count', { command: 'createVolume' })).toBe(1);
    expect(sample(after, 'kms_jobs_total', { kind: 'volume.create', status: 'succeeded' })).toBe(1);
    expect(sample(after, 'kms_jobs_total', { kind: 'kms.rotate', status: 'succeeded' })).toBe(1);
    expect(sample(after, 'kms_job_duration_seconds_count', { kind: 'kms.rotate' })).toBe(1);
    expect(sample(after, 'kms_job_queue_depth', { state: 'waiting' })).toBe(0);
    expect(sample(after, 'kms_job_queue_depth', { state: 'active' })).toBe(0);
    const createKek = { profile: 'metrics-hsm', operation: 'createKek', outcome: 'ok' };
    expect(sample(after, 'kms_backend_operations_total', createKek)).toBe(2); // the key's first KEK and the rotation's
    expect(sample(after, 'kms_backend_operations_total', { profile: 'metrics-hsm', operation: 'generateAndWrap', outcome: 'ok' })).toBe(1);
    expect(sample(after, 'kms_backend_operation_duration_seconds_count', { profile: 'metrics-hsm', operation: 'createKek' })).toBe(2);
    expect(sample(after, 'kms_backend_retries_total', { profile: 'metrics-hsm' }) ?? 0).toBe(0);
    expect(sample(after, 'kms_hsm_sessions', { profile: 'metrics-hsm', state: 'idle' })).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'kms_hsm_sessions', { profile: 'metrics-hsm', state: 'in_use' })).toBe(0);
    // rewrap is paused: the volume's DEK still sits under the Previous version
    expect(sample(after, 'kms_wrapped_keys', { kms_key: key, kek_state: 'Previous' })).toBe(1);
    expect(sample(after, 'kms_deks_to_rewrap', { kms_key: key })).toBe(1);
    expect(sample(after, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0);
    expect(sample(after, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(after).not.toContain(alice.keys.secretKey);
    expect(after).not.toContain(token.pin);

    // The anonymous view (the ops port): the same figures, summed over profiles and keys, naming none.
    const anonymous = await (await fetch(`${opsUrl}/metrics`)).text();
    expect(sample(anonymous, 'kms_backend_operations_total', { operation: 'createKek', outcome: 'ok' })).toBe(2);
    expect(sample(anonymous, 'kms_wrapped_keys', { kek_state: 'Previous' })).toBe(1);
    expect(sample(anonymous, 'kms_deks_to_rewrap')).toBe(1);
    expect(sample(anonymous, 'kms_hsm_sessions', { state: 'idle' })).toBeGreaterThanOrEqual(1);
    expect(sample(anonymous, 'kms_api_requests_total', { command: 'createVolume', errorcode: '0' })).toBe(1);
    expect(anonymous).not.toContain('metrics-hsm');
    expect(anonymous).not.toContain(key);
    expect(anonymous).not.toMatch(/profile="|kms_key="/);
    expect(anonymous).not.toContain(alice.keys.secretKey);
  });

  it('is on the API port only with the token; a wrong token there is a 404, on the ops port the anonymous view', async () => {
    expect((await fetch(`${s.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${s.url}/metrics`, { headers: { authorization: 'Bearer not-the-token-at-all' } })).status).toBe(404);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const wrong = await fetch(`${opsUrl}/metrics`, { headers: { authorization: 'Bearer not-the-token-at-all' } });
    expect(wrong.status).toBe(200);
    expect(await wrong.text()).not.toMatch(/profile="/);
  });

  it('paces a flood of anonymous scrapes: 40 at once are all answered, a few a second, while the token skips the queue', async () => {
    const started = Date.now();
    const answered: number[] = [];
    const flood = Array.from({ length: 40 }, () => fetch(`${opsUrl}/metrics`).then(async (r) => { await r.text(); answered.push(Date.now() - started); return r.status; }));
    await new Promise((r) => setTimeout(r, 200));
    const detailed = await fetch(`${opsUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(detailed.status).toBe(200);
    const waitingWhenTokenAnswered = 40 - answered.length;
    const statuses = await Promise.all(flood);
    expect(statuses).toEqual(Array(40).fill(200));
    // 8 at once (the burst), then 4 a second: the token's scrape found most of the flood still waiting.
    expect(waitingWhenTokenAnswered).toBeGreaterThan(20);
    console.log(`anonymous flood: 40 scrapes answered over ${answered.sort((a, b) => a - b).at(-1)} ms; the token's scrape passed ${waitingWhenTokenAnswered} waiting`);
  });

  it('64 anonymous scrapers looping beside signed listKMSKeys: every API call answered, no scrape reaches the database (bench/metrics-flood.ts prints the throughput kept)', async () => {
    const quiet = await startTestServer({ KMS_METRICS_REFRESH_SEC: '600' }); // one background read, at start
    const h: Server = await new Promise((resolve) => { const x = createOpsServer(quiet.app).listen(0, '127.0.0.1', () => resolve(x)); });
    try {
      await quiet.app.metrics.scrape(); // the first background read is done before the flood
      await waitFor(async () => (await (await fetch(`http://127.0.0.1:${(h.address() as AddressInfo).port}/metrics`)).text()).includes('kms_state_metrics_refreshed_timestamp_seconds 1'), 5000, 'the first state read');
      const counts = jest.spyOn(quiet.app.repos.kekVersions, 'wrappedKeyCounts');
      const depth = jest.spyOn(quiet.app.repos.opsState, 'jobQueueDepth');
      let running = true;
      let scraped = 0;
      const url = `http://127.0.0.1:${(h.address() as AddressInfo).port}/metrics`;
      const stop = new AbortController();
      const scrapers = Array.from({ length: 64 }, async () => {
        while (running) {
          const r = await fetch(url, { signal: stop.signal }).catch(() => undefined);
          if ((await r?.text().catch(() => undefined)) !== undefined && r!.status === 200) scraped++;
        }
      });
      const statuses: number[] = [];
      const end = Date.now() + 3000;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (Date.now() < end) statuses.push((await quiet.client.signed(ADMIN_KEYS, { command: 'listKMSKeys', listall: true })).status);
      }));
      running = false;
      stop.abort(); // the scrapes still waiting for their turn
      await Promise.all(scrapers);
      console.log(`beside 64 looping scrapers: ${statuses.length} listKMSKeys answered, ${scraped} scrapes answered, ${counts.mock.calls.length + depth.mock.calls.length} state reads`);
      expect(statuses.length).toBeGreaterThan(0);
      expect(statuses.every((x) => x === 200)).toBe(true);
      expect(scraped).toBeGreaterThan(0);
      expect(counts).not.toHaveBeenCalled();
      expect(depth).not.toHaveBeenCalled();
    } finally {
      await new Promise((r) => h.close(r));
      h.closeAllConnections();
      await quiet.close();
    }
  });
});
