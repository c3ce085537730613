import { KmsError } from '../../src/core/errors';
import { ProfileCircuits, type ProfileHealth } from '../../src/providers/circuit';
import type { HsmProfileConfig } from '../../src/providers/provider';
import { rejection } from './kek-provider-contract';

const profile: HsmProfileConfig = { id: 'p-1', name: 'rack-a', protocol: 'pkcs11', details: {} };
const down = () => Promise.reject(new KmsError('unavailable', 'HSM unavailable: pkcs11 C_WrapKey failed: CKR_DEVICE_ERROR'));

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
}

describe('ProfileCircuits', () => {
  let circuits: ProfileCircuits;
  let probeAnswers: boolean;
  let changes: ProfileHealth[];
  let probes: number;
  beforeEach(() => {
    probeAnswers = false;
    changes = [];
    probes = 0;
    circuits = new ProfileCircuits({
      threshold: 3, probeDelayMs: 1, maxProbeDelayMs: 5,
      probe: async () => { probes++; if (!probeAnswers) throw new KmsError('unavailable', 'still down'); },
      onChange: (h) => changes.push(h),
    });
  });
  afterEach(() => circuits.close());

  it('marks a profile Degraded after 3 unavailable operations in a row, then fails calls at once naming the profile', async () => {
    for (let i = 0; i < 3; i++) await rejection(circuits.guard(profile, down));
    expect(circuits.isDegraded('p-1')).toBe(true);
    expect(changes).toEqual([expect.objectContaining({ profileId: 'p-1', name: 'rack-a', health: 'Degraded', reason: expect.stringContaining('CKR_DEVICE_ERROR') })]);
    let called = false;
    const err = await rejection(circuits.guard(profile, async () => { called = true; }));
    expect(called).toBe(false);
    expect(err.kind).toBe('unavailable');
    expect(err.message).toMatch(/^HSM profile rack-a is degraded \(.*CKR_DEVICE_ERROR\); failing fast until it answers again$/);
  });

  it('does not count answers that prove the HSM reachable (a wrong PIN, a tampered blob) and resets on success', async () => {
    await rejection(circuits.guard(profile, down));
    await rejection(circuits.guard(profile, down));
    await rejection(circuits.guard(profile, () => Promise.reject(new KmsError('integrity', 'tampered'))));
    await rejection(circuits.guard(profile, down));
    await rejection(circuits.guard(profile, down));
    await circuits.guard(profile, async () => 'ok');
    await rejection(circuits.guard(profile, down));
    expect(circuits.isDegraded('p-1')).toBe(false);
    expect(changes).toEqual([]);
  });

  it('keeps probing with back-off while the HSM is down and closes the circuit when a probe answers', async () => {
    for (let i = 0; i < 3; i++) await rejection(circuits.guard(profile, down));
    await until(() => probes >= 3);
    expect(circuits.isDegraded('p-1')).toBe(true);
    probeAnswers = true;
    await until(() => !circuits.isDegraded('p-1'));
    expect(changes.map((c) => c.health)).toEqual(['Degraded', 'Healthy']);
    expect(circuits.list()).toEqual([expect.objectContaining({ profileId: 'p-1', health: 'Healthy' })]);
    await expect(circuits.guard(profile, async () => 'served')).resolves.toBe('served');
  });
});
