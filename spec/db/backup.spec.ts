/**
 * A backup is one consistent snapshot while the server keeps writing: volumes are created during
 * it, and in the file every volume's wrapped key is there, and each KEK version's count of wrapped
 * keys equals the wrapped keys the file holds under it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../support/server';
import { adminCall, createActor, enableDefaultProfile } from '../support/actors';
import { readBackup, writeBackup } from '../../src/db/backup';

describe('backup under writes', () => {
  let s: TestServer;
  let dir: string;

  beforeAll(async () => {
    s = await startTestServer();
    dir = mkdtempSync(join(tmpdir(), 'kms-backup-'));
  });
  afterAll(async () => {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds a consistent snapshot while volumes are being created', async () => {
    const zone = (await adminCall(s.client, { command: 'createZone', name: 'z' })).zone.id;
    const alice = await createActor(s.client, { name: 'alice' });
    const key = (await s.client.signed(alice.keys, { command: 'createKMSKey', name: 'k', zoneid: zone, hsmprofileid: await enableDefaultProfile(s.client) })).body.kmskey.id;
    const owner = (await s.app.directory.loadCaller((await s.app.db('user').where({ uuid: alice.userId }).first()).id))!;
    for (let i = 0; i < 50; i++) await s.app.kms.volumes.create(owner, { name: `pre${i}`, zoneUuid: zone, encrypt: true, kmsKeyUuid: key });

    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await s.app.kms.volumes.create(owner, { name: `during${written}`, zoneUuid: zone, encrypt: true, kmsKeyUuid: key });
        written++;
      }
    })();
    const backups = [];
    for (let i = 0; i < 3; i++) backups.push(await writeBackup(s.app.db, join(dir, `b${i}`)));
    writing = false;
    await writer;

    for (const b of backups) {
      const { rows } = await readBackup(b.file);
      const wrapped = rows.get('kms_wrapped_key')!;
      const live = new Set(wrapped.filter((w) => w.removed === null).map((w) => Number(w.id)));
      const volumes = rows.get('volumes')!;
      expect(volumes.length).toBeGreaterThanOrEqual(50);
      for (const v of volumes) expect(live.has(Number(v.kms_wrapped_key_id))).toBe(true);
      // The kept counts (shard rows, migration 010) are in the same snapshot as the wrapped keys.
      const shards = rows.get('kms_kek_version_counts') ?? [];
      for (const version of rows.get('kms_kek_versions')!) {
        const kept = shards.filter((c) => Number(c.kek_version_id) === Number(version.id)).reduce((n, c) => n + Number(c.n), 0);
        expect(kept).toBe(wrapped.filter((w) => w.removed === null && Number(w.kek_version_id) === Number(version.id)).length);
      }
      // Transient tables are not in it.
      expect(rows.has('http_session')).toBe(false);
      expect(rows.has('kms_lock')).toBe(false);
      expect(rows.has('kms_cluster_lock')).toBe(false);
    }
    console.log(`volumes created during the 3 backups: ${written}`);
  });
});
