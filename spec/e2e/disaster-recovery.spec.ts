/**
 * The disaster-recovery drill (README "Backups and disaster recovery"), on SoftHSM2, on SQLite or
 * MariaDB (KMS_TEST_DATABASE_URL): volumes are created; the database is backed up; the key is
 * rotated and the rewrap finishes (v1 archived); more volumes are created; the backup is restored
 * into a new database and a new node starts on it with the same master key and token.
 *
 * With the archived KEK kept (kms.kek.destroy.delay.days 30, the default) every secret of the
 * backup reads back unchanged and verify-keys finds no failure; a rotation on the restored node
 * then moves the restored DEKs to the new Active version. With the delay 0 (CloudStack's at-once
 * destruction) the same drill loses every KMS volume of the backup, and verify-keys names them.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall, createActor, createPkcs11Profile, waitForJob } from '../support/actors';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';
import { createTestDb } from '../support/db';
import { runAdmin } from '../../src/cli/admin';
import { readEnv, type Env } from '../../src/config/env';

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached in time`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs an admin CLI command in this process; answers its printed lines, or throws its error with them. */
async function admin(args: string[], env: Env): Promise<string[]> {
  const lines: string[] = [];
  try {
    await runAdmin(args, env, (l) => lines.push(l));
  } catch (e) {
    throw Object.assign(new Error(`${(e as Error).message}\n${lines.join('\n')}`), { lines });
  }
  return lines;
}

const BEFORE = 5;
const AFTER = 2;

describe.each([
  { delayDays: '30', kept: true },
  { delayDays: '0', kept: false },
])('disaster-recovery drill with kms.kek.destroy.delay.days=$delayDays', ({ delayDays, kept }) => {
  let token: SoftHsmToken;
  let s: TestServer | undefined;
  let restored: TestServer | undefined;
  let dir: string;
  let backupFile: string;
  let zone: string;
  let key: string;
  let user: Awaited<ReturnType<typeof createActor>>;
  /** Secrets at the backup: volume id → base64 secret; which are KMS volumes. */
  const atBackup = new Map<string, string>();
  const kmsVolumes = new Set<string>();
  const afterBackup: string[] = [];
  let pin: string;
  let masterKey: string;

  const call = async (srv: TestServer, keys: typeof ADMIN_KEYS, params: Record<string, string | number | boolean>) => {
    const res = await srv.client.signed(keys, params);
    if (res.status !== 200) throw new Error(`${String(params.command)}: ${res.status} ${res.raw}`);
    return res.body;
  };
  const createVolume = async (srv: TestServer, params: Record<string, string | boolean>) => {
    const started = await call(srv, user.keys, { command: 'createVolume', ...params });
    expect((await waitForJob(srv.client, user.keys, started.jobid)).jobstatus).toBe(1);
    return started.id as string;
  };
  const secret = async (srv: TestServer, id: string) => (await call(srv, ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id })).volumeencryptionkey.secret as string;
  const keyView = async (srv: TestServer) => (await call(srv, ADMIN_KEYS, { command: 'listKMSKeys', id: key, listall: true })).kmskey[0];
  const setting = (srv: TestServer, name: string, value: string) => adminCall(srv.client, { command: 'updateConfiguration', name, value });
  const rotateAndDrain = async (srv: TestServer) => {
    const started = await call(srv, user.keys, { command: 'rotateKMSKey', id: key });
    expect((await waitForJob(srv.client, user.keys, started.jobid)).jobstatus).toBe(1);
    await setting(srv, 'kms.rewrap.interval.ms', '20');
    await eventually('rewrap drained', async () => (await keyView(srv)).rewrapremaining === 0 && (await keyView(srv)).versions.some((v: any) => v.status === 'Archived'));
    await setting(srv, 'kms.rewrap.interval.ms', '0');
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kms-drill-'));
    backupFile = join(dir, 'kms.backup');
    token = await createSoftHsmToken();
    pin = token.pin;
    s = await startTestServer({ KMS_SCHEDULE_POLL_MS: '50' });
    masterKey = s.masterKey;
    await setting(s, 'kms.rewrap.interval.ms', '0');
    await setting(s, 'kms.kek.destroy.delay.days', delayDays);
    zone = (await call(s, ADMIN_KEYS, { command: 'createZone', name: 'dr-zone' })).zone.id;
    user = await createActor(s.client, { name: 'druser' });
    const profile = await createPkcs11Profile(s.client, token.details());
    key = (await call(s, user.keys, { command: 'createKMSKey', name: 'dr-key', zoneid: zone, hsmprofileid: profile })).kmskey.id;
  }, 120_000);

  afterAll(async () => {
    await s?.close();
    await restored?.close();
    await token?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('1-2. creates volumes and backs the database up, with no plaintext secret in the file', async () => {
    const srv = s!;
    for (let i = 0; i < BEFORE; i++) {
      const id = await createVolume(srv, { name: `kms-${i}`, zoneid: zone, kmskeyid: key });
      kmsVolumes.add(id);
      atBackup.set(id, await secret(srv, id));
    }
    const legacy = await createVolume(srv, { name: 'legacy', zoneid: zone, encrypt: true });
    atBackup.set(legacy, await secret(srv, legacy));

    const lines = await admin(['backup', backupFile], srv.app.env);
    expect(lines[0]).toMatch(new RegExp(`wrote .*kms\\.backup: \\d+ rows of \\d+ tables \\(${BEFORE} wrapped keys, ${BEFORE + 1} volumes\\)`));
    await expect(admin(['backup', backupFile], srv.app.env)).rejects.toThrow(/exists; choose a new file name/);

    // The scan: no secret in any form the server knows it by.
    const text = readFileSync(backupFile, 'utf8');
    const forms = (b64: string) => {
      const raw = Buffer.from(b64, 'base64');
      return [b64, raw.toString('hex'), raw.toString('base64url'), raw.toString('latin1')].filter((f) => f.length >= 16);
    };
    const secrets = [...atBackup.values()].flatMap(forms);
    secrets.push(pin, ADMIN_KEYS.secretKey, masterKey, Buffer.from(masterKey, 'base64').toString('hex'));
    for (const sec of secrets) expect(text.includes(sec)).toBe(false);
    expect(text).toContain('"format":"cloudstack-kms-backup"');
  });

  it('3-4. rotates the key, lets the rewrap archive v1, and creates more volumes', async () => {
    const srv = s!;
    await rotateAndDrain(srv);
    const view = await keyView(srv);
    const v1 = view.versions.find((v: any) => v.version === 1);
    expect(v1).toMatchObject({ status: 'Archived', wrappedkeys: 0, destroyed: !kept });
    if (kept) {
      // Shown with the date it will be destroyed: archival + 30 days.
      expect(Date.parse(v1.destroyat) - Date.parse(v1.archived)).toBe(30 * 86_400_000);
    } else {
      expect(v1.destroyat).toBeUndefined();
    }
    for (let i = 0; i < AFTER; i++) afterBackup.push(await createVolume(srv, { name: `late-${i}`, zoneid: zone, kmskeyid: key }));
  });

  it('5. restore refuses a file that is not a backup, a damaged one, another master key, and a database that is not empty', async () => {
    const fresh = await createTestDb();
    await fresh.db.destroy();
    const env = (extra: Record<string, string> = {}) => readEnv({
      KMS_DATA_DIR: fresh.dataDir, KMS_MASTER_KEY: masterKey, ...(fresh.databaseUrl ? { DATABASE_URL: fresh.databaseUrl } : {}), ...extra,
    });
    try {
      const notBackup = join(dir, 'notes.txt');
      writeFileSync(notBackup, 'hello\n');
      await expect(admin(['restore', notBackup], env())).rejects.toThrow(/is not a backup of this server: its first line is not a cloudstack-kms-backup header/);
      const cut = join(dir, 'cut.backup');
      writeFileSync(cut, readFileSync(backupFile, 'utf8').split('\n').slice(0, 5).join('\n') + '\n');
      await expect(admin(['restore', cut], env())).rejects.toThrow(/is incomplete: it has no end line/);
      const other = Buffer.alloc(32, 7).toString('base64');
      await expect(admin(['restore', backupFile], env({ KMS_MASTER_KEY: other }))).rejects.toThrow(/The backup belongs to another master key: no key given to this process is its master key version 1/);
      // The refusals wrote nothing: the database is still empty, so a real restore into it works (and then a second is refused).
      await admin(['restore', backupFile], env());
      await expect(admin(['restore', backupFile], env())).rejects.toThrow(/The target database is not empty \(table \w+ has \d+ rows\)/);
    } finally {
      await fresh.drop();
    }
  });

  it('5-6. restored into a new database, a new node with the same master key and token serves the backup', async () => {
    // The disaster: the old node and its database are gone.
    await s!.close();
    s = undefined;
    const fresh = await createTestDb();
    await fresh.db.destroy();
    const env = readEnv({ KMS_DATA_DIR: fresh.dataDir, KMS_MASTER_KEY: masterKey, ...(fresh.databaseUrl ? { DATABASE_URL: fresh.databaseUrl } : {}) });
    const lines = await admin(['restore', backupFile], env);
    expect(lines[0]).toMatch(new RegExp(`restored \\d+ rows of \\d+ tables .*; ${BEFORE} wrapped keys, ${BEFORE + 1} volumes`));
    restored = await startTestServer({ KMS_MASTER_KEY: masterKey, KMS_SCHEDULE_POLL_MS: '50' }, { testDb: fresh });
    const srv = restored;
    await setting(srv, 'kms.rewrap.interval.ms', '0');

    // Volumes made after the backup are not in it.
    for (const id of afterBackup) expect((await srv.client.signed(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id })).status).toBe(431);

    const unreadable: string[] = [];
    for (const [id, sec] of atBackup) {
      const res = await srv.client.signed(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id });
      if (res.status === 200) expect(res.body.volumeencryptionkey.secret).toBe(sec);
      else {
        expect(res.body).toMatchObject({ errorcode: 530 });
        expect(res.body.errortext).toContain(`The KEK of KMS key ${key} version v1 is missing from its backend`);
        unreadable.push(id);
      }
    }
    const verify = admin(['verify-keys', '--rate', '0'], srv.app.env);
    if (kept) {
      expect(unreadable).toEqual([]);
      const out = await verify;
      expect(out.at(-1)).toMatch(new RegExp(`^verified ${BEFORE} wrapped DEKs, 1 legacy passphrases, [1-9]\\d* master-key values: 0 failed$`));
    } else {
      // The loss the delay prevents: every KMS volume of the backup, and only those.
      expect(unreadable.sort()).toEqual([...kmsVolumes].sort());
      const err = await verify.then(() => undefined, (e: Error & { lines: string[] }) => e);
      expect(err?.message).toMatch(new RegExp(`^${BEFORE} of \\d+ secrets cannot be opened`));
      const failed = err!.lines.filter((l) => l.startsWith('FAILED'));
      expect(failed).toHaveLength(BEFORE);
      for (const id of kmsVolumes) {
        expect(failed.some((l) => l.includes(`(${id}), KMS key ${key} v1:`) && l.includes('missing from its backend'))).toBe(true);
      }
    }
  }, 120_000);

  it(kept
    ? '7. the background rewrap then moves the restored DEKs to the new Active version, secrets unchanged'
    : '7. the rewrap cannot move the lost DEKs: they stay on v1, each failing with its reason', async () => {
    const srv = restored!;
    // The restored key is on v1; v2's KEK, made by the forgotten database, is still in the token:
    // the rotation leaves it alone and takes v3.
    expect((await keyView(srv)).versions.map((v: any) => [v.version, v.status, v.wrappedkeys])).toEqual([[1, 'Active', BEFORE]]);
    if (kept) {
      await rotateAndDrain(srv);
      const view = await keyView(srv);
      expect(view.versions.map((v: any) => [v.version, v.status, v.wrappedkeys])).toEqual([[1, 'Archived', 0], [3, 'Active', BEFORE]]);
      for (const [id, sec] of atBackup) expect(await secret(srv, id)).toBe(sec);
      expect((await admin(['verify-keys'], srv.app.env)).at(-1)).toMatch(/: 0 failed$/);
    } else {
      const started = await call(srv, user.keys, { command: 'rotateKMSKey', id: key });
      expect((await waitForJob(srv.client, user.keys, started.jobid)).jobstatus).toBe(1);
      const report = await srv.app.kms.rewrap.tick({ batchSize: 100, workerId: 'drill', claimMs: 60_000 });
      expect(report.rewrapped).toBe(0);
      expect(report.failed).toHaveLength(BEFORE);
      for (const f of report.failed) expect(f.error).toMatch(/KEK not found: volume-kek-.*-v1/);
      expect((await keyView(srv)).versions.map((v: any) => [v.version, v.status, v.wrappedkeys])).toEqual([[1, 'Previous', BEFORE], [3, 'Active', 0]]);
    }
  }, 120_000);
});
