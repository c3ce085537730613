/**
 * /metrics in Prometheus text: after a createVolume and a rotation on a SoftHSM2 profile, the API,
 * job and backend counters have moved, and the gauges show HSM sessions, wrapped DEKs per KEK state
 * and the DEKs still to rewrap. No authentication is needed, and no parameter value appears.
 */
import { adminCall, createActor, createPkcs11Profile, waitForJob } from '../support/actors';
import { startTestServer, type TestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';

let s: TestServer;
let token: SoftHsmToken;

beforeAll(async () => {
  token = await createSoftHsmToken();
  s = await startTestServer();
});
afterAll(async () => {
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

const scrape = async (): Promise<string> => {
  const res = await fetch(`${s.url}/metrics`);
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

    const after = await scrape();
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
  });
});
