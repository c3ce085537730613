import { adminCall, createActor, enableDefaultProfile } from './actors';
import { startTestServer, type TestServer } from './server';

/**
 * The world of the volume and migration specs: a server, two zones, users alice and bob (each its
 * own account), the seeded database profile enabled, and a KMS key of alice's in zone1.
 */
export interface VolumeWorld {
  readonly s: TestServer;
  readonly zone1: string;
  readonly zone2: string;
  readonly alice: Awaited<ReturnType<typeof createActor>>;
  readonly bob: Awaited<ReturnType<typeof createActor>>;
  readonly profileId: string;
  readonly aliceKey: string;
}

export async function startVolumeWorld(): Promise<VolumeWorld> {
  const s = await startTestServer();
  const zone1 = (await adminCall(s.client, { command: 'createZone', name: 'zone1' })).zone.id;
  const zone2 = (await adminCall(s.client, { command: 'createZone', name: 'zone2' })).zone.id;
  const alice = await createActor(s.client, { name: 'alice' });
  const bob = await createActor(s.client, { name: 'bob' });
  const profileId = await enableDefaultProfile(s.client);
  const aliceKey = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'alice-key', zoneid: zone1, hsmprofileid: profileId })).body.kmskey.id;
  return { s, zone1, zone2, alice, bob, profileId, aliceKey };
}
