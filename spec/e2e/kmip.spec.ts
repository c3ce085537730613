/**
 * The KMIP provider end to end against a private PyKMIP server, through the signed HTTP API as cmk
 * sends it: a KMIP profile checked against the server (a wrong certificate, an unknown host, a
 * server that never answers: refused, nothing stored), a key with volumes and secrets, a rotation
 * with its full rewrap, a migration of legacy volumes, a rotation PKCS#11 → KMIP and back, PyKMIP
 * killed and restarted in the middle of a rewrap; and no private key, password or DEK in any
 * response, log line, database column or Redis value.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/core/logger';
import { SecretBytes } from '../../src/core/secret-bytes';
import { createRepositories } from '../../src/db/repositories';
import { mapLimit } from '../../src/kms/concurrency';
import { adminCall, createActor, createPkcs11Profile, detailParams, waitForJob, type Keys } from '../support/actors';
import type { ApiAnswer, Params } from '../support/client';
import { startHungTlsServer, startPyKmip, type PyKmipServer } from '../support/pykmip';
import { dropPrefix, randomQueuePrefix, SHARED_REDIS_URL } from '../support/redis';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';
import { createSoftHsmToken, type SoftHsmToken } from '../support/softhsm';

const lines: string[] = [];
const answers: string[] = [];
const password = `kmip-Pw-${randomBytes(6).toString('hex')}`;
const dekSecrets = new Set<string>();
const prefix = randomQueuePrefix();

let kmip: PyKmipServer;
let token: SoftHsmToken;
let ts: TestServer;
let zone: string;
let user: Awaited<ReturnType<typeof createActor>>;
let kmipProfile: string;
let kmipProfileName: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function call(keys: Keys, params: Params): Promise<ApiAnswer> {
  const res = await ts.client.signed(keys, params);
  answers.push(res.raw);
  return res;
}
async function ok(keys: Keys, params: Params): Promise<Record<string, any>> {
  const res = await call(keys, params);
  if (res.status !== 200) throw new Error(`${String(params.command)}: ${res.status} ${res.raw}`);
  return res.body;
}
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}
const kmipParams = (name: string, details: Record<string, string>): Params => ({
  command: 'createHSMProfile', name, protocol: 'kmip', ispublic: true, vendorname: 'PyKMIP', ...detailParams(details),
});
const storedProfiles = async (name: string): Promise<number> => ts.app.db('kms_hsm_profiles').where({ name }).count({ n: '*' }).first().then((r) => Number(r?.n));

/** The base64 secret of a volume, remembered as a DEK to look for afterwards. */
async function secretOf(volumeId: string): Promise<string> {
  const s = (await ok(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id: volumeId })).volumeencryptionkey.secret as string;
  const raw = Buffer.from(s, 'base64');
  dekSecrets.add(s).add(raw.toString('hex'));
  return s;
}
async function createVolume(params: Params): Promise<string> {
  const started = await ok(user.keys, { command: 'createVolume', name: `v-${randomUUID().slice(0, 8)}`, zoneid: zone, ...params });
  const job = await waitForJob(ts.client, user.keys, started.jobid);
  expect(job.jobstatus).toBe(1);
  return started.id as string;
}
/** The key's version rows, oldest first. */
const versionsOf = async (keyUuid: string) => {
  const key = await ts.app.db('kms_keys').where({ uuid: keyUuid }).first('id');
  return ts.app.db('kms_kek_versions').where({ kms_key_id: key.id }).orderBy('version_number');
};
/** Rotates (optionally onto another profile) and waits until the old version is drained, archived and destroyed. */
async function rotateAndDrain(keyUuid: string, profileUuid?: string): Promise<void> {
  const before = (await versionsOf(keyUuid)).at(-1);
  const res = await ok(user.keys, { command: 'rotateKMSKey', id: keyUuid, ...(profileUuid ? { hsmprofileid: profileUuid } : {}) });
  expect((await waitForJob(ts.client, user.keys, res.jobid, 60_000)).jobstatus).toBe(1);
  await until('the old version was drained and destroyed', async () => {
    const v = await ts.app.db('kms_kek_versions').where({ id: before.id }).first('status', 'removed');
    return v.status === 'Archived' && v.removed !== null;
  });
}

beforeAll(async () => {
  kmip = await startPyKmip();
  token = await createSoftHsmToken();
  ts = await startTestServer(
    { KMS_LOG_LEVEL: 'debug', REDIS_URL: SHARED_REDIS_URL, KMS_QUEUE_PREFIX: prefix },
    { logger: createLogger({ level: 'debug', destination: { write: (l: string) => { lines.push(l); } } }) },
  );
  for (const [name, value] of Object.entries({
    'kms.operation.timeout.sec': '2', 'kms.retry.count': '4', 'kms.retry.delay.ms': '200',
    'kms.rewrap.batch.size': '50', 'kms.rewrap.interval.ms': '100',
    'kms.kek.destroy.delay.days': '0', // drained versions destroyed at once (as CloudStack), so the spec sees Revoke/Destroy
  })) await adminCall(ts.client, { command: 'updateConfiguration', name, value });
  zone = (await adminCall(ts.client, { command: 'createZone', name: `kmip-${randomUUID().slice(0, 8)}` })).zone.id;
  user = await createActor(ts.client, { name: `kmipuser-${randomUUID().slice(0, 6)}` });
}, 120_000);

afterAll(async () => {
  await ts?.close();
  await kmip?.stop();
  await token?.cleanup();
  await dropPrefix(SHARED_REDIS_URL, prefix);
});

describe('a KMIP HSM profile', () => {
  it('is checked against the server and answered with the private key and password masked', async () => {
    kmipProfileName = `pykmip-${randomUUID().slice(0, 8)}`;
    const res = await call(ADMIN_KEYS, kmipParams(kmipProfileName, kmip.details({ username: 'kms', password })));
    expect(res.status).toBe(200);
    kmipProfile = res.body.hsmprofile.id;
    expect(res.body.hsmprofile).toMatchObject({
      protocol: 'kmip', vendor: 'PyKMIP', enabled: true,
      details: { host: '127.0.0.1', port: String(kmip.port), username: 'kms', password: '*****', private_key: '*****', client_certificate: kmip.client.cert },
    });
    const listed = await ok(ADMIN_KEYS, { command: 'listHSMProfiles', id: kmipProfile });
    expect(listed.hsmprofile[0]).toMatchObject({ protocol: 'kmip', details: { password: '*****', private_key: '*****' } });
    const byProtocol = await ok(ADMIN_KEYS, { command: 'listHSMProfiles', protocol: 'kmip', listall: true });
    expect(byProtocol.hsmprofile.map((p: { id: string }) => p.id)).toEqual([kmipProfile]);
  });

  it.each([
    ['a client certificate of another CA', () => {
      const c = kmip.makeClient('intruder', { foreign: true });
      return kmip.details({ client_certificate: c.cert, private_key: c.key });
    }, /TLS handshake refused .*check the ca, client_certificate and private_key details/],
    ['a CA that did not sign the server certificate', () => {
      kmip.makeClient('anchor', { foreign: true });
      return kmip.details({ ca: readFileSync(join(kmip.dir, 'foreign-ca.crt'), 'utf8') });
    }, /TLS handshake refused \(.*(CERT|SIGNATURE|ISSUER|SELF_SIGNED).*\)/],
    ['an unknown host', () => kmip.details({ host: 'no-such-kmip.invalid' }), /KMIP server host no-such-kmip.invalid of HSM profile .* is unknown/],
    ['bad details', () => ({ host: 'x', port: 'many' }), /Invalid details for HSM profile .*: Detail 'port' must be an integer from 1 to 65535; .*Detail 'ca' is required/],
  ])('with %s is a 431 saying which, and nothing is stored', async (_what, details, text) => {
    const name = `bad-kmip-${randomUUID().slice(0, 8)}`;
    const res = await call(ADMIN_KEYS, kmipParams(name, details()));
    expect({ status: res.status, errorcode: res.body.errorcode, cserrorcode: res.body.cserrorcode }).toEqual({ status: 431, errorcode: 431, cserrorcode: 4350 });
    expect(res.body.errortext).toMatch(text);
    expect(await storedProfiles(name)).toBe(0);
  });

  it('on a server that accepts the connection and never answers is abandoned at kms.operation.timeout.sec: a 530, nothing stored', async () => {
    const hung = await startHungTlsServer(kmip);
    try {
      const name = `hung-kmip-${randomUUID().slice(0, 8)}`;
      const t0 = Date.now();
      const res = await call(ADMIN_KEYS, kmipParams(name, kmip.details({ port: String(hung.port) })));
      console.log(`[kmip e2e] createHSMProfile against a server that never answers returned after ${Date.now() - t0} ms (timeout 2 s)`);
      expect(res.status).toBe(530);
      expect(res.body.errortext).toBe('KMS operation kmip.probe timed out after 2s');
      expect(await storedProfiles(name)).toBe(0);
      await hung.closed(1);
    } finally {
      await hung.stop();
    }
  });
});

describe('volumes on a KMIP key', () => {
  let key: string;
  const secrets = new Map<string, string>();

  it('creates a key whose KEK is an AES key on the server, and volumes whose secrets read back', async () => {
    key = (await ok(user.keys, { command: 'createKMSKey', name: `kmip-key-${randomUUID().slice(0, 6)}`, zoneid: zone, hsmprofileid: kmipProfile, keybits: 256 })).kmskey.id;
    for (let i = 0; i < 6; i++) {
      const v = await createVolume({ kmskeyid: key });
      secrets.set(v, await secretOf(v));
    }
    for (const [v, s] of secrets) expect(await secretOf(v)).toBe(s);
    expect(Buffer.from([...secrets.values()][0], 'base64')).toHaveLength(32);
  });

  it('migrates legacy passphrase volumes onto the key with their secrets unchanged', async () => {
    const legacy = new Map<string, string>();
    for (let i = 0; i < 4; i++) {
      const v = await createVolume({ encrypt: true });
      legacy.set(v, await secretOf(v));
    }
    const res = await ok(ADMIN_KEYS, { command: 'migrateVolumesToKMS', kmskeyid: key, zoneid: zone });
    expect((await waitForJob(ts.client, ADMIN_KEYS, res.jobid, 60_000)).jobstatus).toBe(1);
    for (const [v, s] of legacy) {
      expect((await ok(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id: v })).volumeencryptionkey).toMatchObject({ secret: s, kmskeyid: key });
      secrets.set(v, s);
    }
  });

  it('rotates with a full rewrap: every secret unchanged, v1 revoked and destroyed on the server', async () => {
    await rotateAndDrain(key);
    const versions = await versionsOf(key);
    expect(versions.map((v: { status: string }) => v.status)).toEqual(['Archived', 'Active']);
    for (const [v, s] of secrets) expect(await secretOf(v)).toBe(s);
    const provider = ts.app.providers.get('kmip');
    const config = await ts.app.kms.profiles.configFor(versions[0].hsm_profile_id);
    expect(await provider.hasKek({ profile: config, label: versions[0].kek_label })).toBe(false);
    expect(await provider.hasKek({ profile: config, label: versions[1].kek_label })).toBe(true);
  });
});

describe('a rotation across protocols', () => {
  it('moves a key PKCS#11 → KMIP and back, every secret unchanged', async () => {
    const pkcs11 = await createPkcs11Profile(ts.client, token.details(), `softhsm-${randomUUID().slice(0, 6)}`);
    const key = (await ok(user.keys, { command: 'createKMSKey', name: `moving-${randomUUID().slice(0, 6)}`, zoneid: zone, hsmprofileid: pkcs11 })).kmskey.id;
    const secrets = new Map<string, string>();
    for (let i = 0; i < 5; i++) {
      const v = await createVolume({ kmskeyid: key });
      secrets.set(v, await secretOf(v));
    }
    await rotateAndDrain(key, kmipProfile);
    expect((await ok(user.keys, { command: 'listKMSKeys', id: key })).kmskey[0]).toMatchObject({ hsmprofileid: kmipProfile, version: 2 });
    for (const [v, s] of secrets) expect(await secretOf(v)).toBe(s);
    await rotateAndDrain(key, pkcs11);
    expect((await ok(user.keys, { command: 'listKMSKeys', id: key })).kmskey[0]).toMatchObject({ hsmprofileid: pkcs11, version: 3 });
    for (const [v, s] of secrets) expect(await secretOf(v)).toBe(s);
  });
});

describe('PyKMIP killed and restarted in the middle of a rewrap', () => {
  it('loses and changes no DEK, parks none, and the rewrap finishes', async () => {
    const DEKS = 400;
    const key = (await ok(user.keys, { command: 'createKMSKey', name: `restart-${randomUUID().slice(0, 6)}`, zoneid: zone, hsmprofileid: kmipProfile })).kmskey.id;
    const app = ts.app;
    const keyRow = await app.db('kms_keys').where({ uuid: key }).first();
    const zoneRow = await app.db('data_center').where({ uuid: zone }).first('id');
    const wk = app.kms.wrappedKeys;
    const v = await wk.activeVersion(keyRow.id);
    const owners = Array.from({ length: DEKS }, () => randomUUID());
    const hashes = new Map<string, string>();
    const deks = owners.map((o) => {
      const d = SecretBytes.random(32);
      hashes.set(o, sha(d.reveal()));
      return { ownerUuid: o, dek: d };
    });
    const blobs = await wk.wrapMany(v, deks);
    deks.forEach((d) => d.dek.dispose());
    const ids = new Map<string, number>();
    await app.db.transaction(async (trx) => {
      const rows = owners.map((o, i) => {
        const b = blobs[i];
        if (!b.ok) throw b.error;
        return { zoneId: zoneRow.id, ownerUuid: o, blob: b.value };
      });
      for (const [o, id] of await wk.insertMany(createRepositories(trx), v, rows)) ids.set(o, id);
    });

    const rotated = await ok(user.keys, { command: 'rotateKMSKey', id: key });
    await until('the rewrap started', async () => {
      const [{ n }] = await app.db('kms_wrapped_key').where({ kek_version_id: v.versionId }).whereNull('removed').count({ n: '*' });
      return Number(n) < DEKS;
    });
    await kmip.kill();
    const [{ n: left }] = await app.db('kms_wrapped_key').where({ kek_version_id: v.versionId }).whereNull('removed').count({ n: '*' });
    console.log(`[kmip e2e] PyKMIP killed with ${left} of ${DEKS} DEKs still under v1`);
    expect(Number(left)).toBeGreaterThan(0);
    // Readiness names the KMIP profile while its server is down, and is ready again once it is back.
    const readyz = async () => {
      const res = await fetch(`${ts.url}/readyz`);
      const raw = await res.text();
      answers.push(raw);
      return { status: res.status, body: JSON.parse(raw) };
    };
    await until('readiness names the KMIP profile down', async () => {
      const r = await readyz();
      return r.status === 503 && r.body.down.includes(`hsm:${kmipProfileName}`);
    }, 15_000);
    await kmip.start();
    await until('readiness is back', async () => (await readyz()).status === 200, 30_000);
    expect((await waitForJob(ts.client, user.keys, rotated.jobid, 60_000)).jobstatus).toBe(1);
    await until('v1 was drained, archived and destroyed', async () => {
      const row = await app.db('kms_kek_versions').where({ id: v.versionId }).first('status', 'removed');
      return row.status === 'Archived' && row.removed !== null;
    });
    const changed: string[] = [];
    await mapLimit([...ids], 16, async ([owner, id]) => {
      const dek = await wk.unwrap(id, owner);
      try {
        if (sha(dek.reveal()) !== hashes.get(owner)) changed.push(owner);
      } finally {
        dek.dispose();
      }
    });
    expect(changed).toEqual([]);
    await until('listHSMProfiles shows the KMIP profile Healthy', async () =>
      (await ok(ADMIN_KEYS, { command: 'listHSMProfiles', id: kmipProfile })).hsmprofile[0].health === 'Healthy', 30_000);
    expect(await app.db('kms_wrapped_key').where({ claim_owner: 'rewrap-failed' }).count({ n: '*' }).then((r) => Number(r[0].n))).toBe(0);
  });
});

describe('the private key, the password and the DEKs', () => {
  const secretTexts = (): string[] => {
    const keyBody = kmip.client.key.split('\n').filter((l) => l && !l.startsWith('-----'));
    return [password, ...keyBody.filter((l) => l.length >= 40), ...dekSecrets];
  };

  it('appear in no response and no log line', async () => {
    await call(ADMIN_KEYS, { command: 'listHSMProfiles', listall: true });
    await call(ADMIN_KEYS, { command: 'listEvents', listall: true, pagesize: 500, page: 1 });
    expect(lines.length).toBeGreaterThan(20);
    expect(dekSecrets.size).toBeGreaterThan(20);
    const text = [...answers.filter((a) => !a.includes('volumeencryptionkey')), ...lines].join('\n');
    expect(secretTexts().filter((s) => text.includes(s))).toEqual([]);
  });

  it('appear in no column of any table in plaintext', async () => {
    const db = ts.app.db;
    const tables: string[] = db.client.config.client === 'mysql2'
      ? (await db.raw('SHOW TABLES'))[0].map((r: Record<string, string>) => Object.values(r)[0])
      : (await db('sqlite_master').where({ type: 'table' }).select('name')).map((r: { name: string }) => r.name);
    const needles = secretTexts().map((s) => Buffer.from(s, 'utf8'));
    for (const s of dekSecrets) if (/^[0-9a-f]+$/.test(s)) needles.push(Buffer.from(s, 'hex'));
    const found: string[] = [];
    for (const table of tables) {
      for (const row of await db(table).select('*')) {
        for (const value of Object.values(row)) {
          const bytes = Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'utf8');
          for (const n of needles) if (bytes.includes(n)) found.push(table);
        }
      }
    }
    expect(found).toEqual([]);
    const stored = await db('kms_hsm_profile_details as d').join('kms_hsm_profiles as p', 'p.id', 'd.profile_id').where({ 'p.uuid': kmipProfile }).select('d.name', 'd.value');
    const byName = Object.fromEntries(stored.map((r: { name: string; value: string }) => [r.name, r.value]));
    expect(byName.private_key).not.toContain('PRIVATE KEY');
    expect(byName.password).not.toBe(password);
  });

  it('appear in no Redis value of the job queue', async () => {
    const r = new Redis(SHARED_REDIS_URL);
    try {
      const keys = await r.keys(`${prefix}:*`);
      expect(keys.length).toBeGreaterThan(0);
      const values: string[] = [];
      for (const k of keys) {
        const type = await r.type(k);
        if (type === 'string') values.push(String(await r.get(k)));
        else if (type === 'hash') values.push(JSON.stringify(await r.hgetall(k)));
        else if (type === 'list') values.push(JSON.stringify(await r.lrange(k, 0, -1)));
        else if (type === 'set') values.push(JSON.stringify(await r.smembers(k)));
        else if (type === 'zset') values.push(JSON.stringify(await r.zrange(k, '0', '-1')));
        else if (type === 'stream') values.push(JSON.stringify(await r.xrange(k, '-', '+')));
      }
      const text = values.join('\n');
      expect(secretTexts().filter((s) => text.includes(s))).toEqual([]);
    } finally {
      r.disconnect();
    }
  });
});
