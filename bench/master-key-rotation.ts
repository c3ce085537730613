/**
 * Master-key rotation throughput: N protected values (a quarter each of API secret keys, HSM PINs,
 * legacy passphrases and database KEKs) re-encrypted from version 1 to 2 by the rotation sweep, per
 * batch size, beside the in-memory re-encryption rate (decrypt + encrypt, no database) of the same run.
 *
 *   npx tsx bench/master-key-rotation.ts      (or npm run bench:master-key)
 *   BENCH_N=20000 BENCH_BATCH=100,500  DATABASE_URL=mysql://root@127.0.0.1:3306/kms_bench (an empty database; SQLite in a temp dir without it)
 */
import { createRepositories } from '../src/db/repositories';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MasterKey } from '../src/config/master-key';
import { openDb, type Db } from '../src/db/knex';
import { secretAad } from '../src/identity/directory';
import { detailAad } from '../src/kms/hsm-profile-details';
import { passphraseAad } from '../src/kms/passphrases';
import { countNotOn, reencryptAll } from '../src/kms/master-key-rotation';

const N = Number(process.env.BENCH_N ?? 20000);
const BATCHES = (process.env.BENCH_BATCH ?? '100,500').split(',').map(Number);

async function seed(db: Db, key: MasterKey, n: number): Promise<void> {
  const q = Math.floor(n / 4);
  const now = Date.now();
  await db('domain').insert({ uuid: randomUUID(), name: 'ROOT', path: '/', level: 0, created: now }).onConflict('uuid').ignore();
  const domain = await db('domain').first('id');
  const [accountId] = await db('account').insert({ uuid: randomUUID(), account_name: 'bench', account_name_key: 'bench', type: 0, domain_id: domain.id, created: now });
  await db.batchInsert('user', Array.from({ length: q }, (_, i) => {
    const uuid = randomUUID();
    return { uuid, username: `u${i}`, username_key: `u${i}`, password: 'x', account_id: Number(accountId), api_key: randomUUID(), secret_key: key.encryptString(randomBytes(64).toString('base64url'), secretAad(uuid)), created: now };
  }), 400);
  const profiles = Array.from({ length: q }, (_, i) => ({ uuid: randomUUID(), name: `p${i}`, protocol: 'pkcs11', created: now }));
  await db.batchInsert('kms_hsm_profiles', profiles, 400);
  const ids = new Map((await db('kms_hsm_profiles').select('id', 'uuid')).map((r) => [r.uuid, r.id]));
  await db.batchInsert('kms_hsm_profile_details', profiles.map((p) => ({ profile_id: ids.get(p.uuid), name: 'pin', value: key.encryptString('1234', detailAad(p.uuid, 'pin')) })), 400);
  await db.batchInsert('passphrase', Array.from({ length: q }, () => {
    const uuid = randomUUID();
    return { uuid, passphrase: key.encrypt(randomBytes(64), passphraseAad(uuid)), created: now };
  }), 400);
  await db.batchInsert('kms_database_kek_objects', Array.from({ length: n - 3 * q }, (_, i) => ({
    uuid: randomUUID(), label: `bench-kek-${i}`, key_material: key.encrypt(randomBytes(32), `bench-kek-${i}`), key_bits: 256, created: now,
  })), 400);
}

function memoryRate(key: MasterKey, ms: number): number {
  const value = key.encryptWith(1, randomBytes(64), 'passphrase:x');
  let done = 0;
  const start = Date.now();
  while (Date.now() - start < ms) {
    key.reencrypt(value, 'passphrase:x', 2);
    done++;
  }
  return Math.round((done * 1000) / (Date.now() - start));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-mk-'));
  const db = await openDb({ databaseUrl: process.env.DATABASE_URL, dataDir: dir });
  const key = new MasterKey(randomBytes(32), 1);
  key.add(2, randomBytes(32));
  try {
    console.log(`master-key rotation, ${N} values, ${process.env.DATABASE_URL ? 'MariaDB/MySQL' : 'SQLite'}`);
    console.log(`  in memory (decrypt + encrypt, no database): ${memoryRate(key, 1000)} values/s`);
    await seed(db, key, N);
    let from = 1;
    for (const batch of BATCHES) {
      const to = from === 1 ? 2 : 1;
      const start = Date.now();
      const n = await reencryptAll(createRepositories(db), key, to, { batchSize: batch });
      const ms = Date.now() - start;
      const left = Object.values(await countNotOn(createRepositories(db), to)).reduce((a, b) => a + b, 0);
      console.log(`  batch ${batch}: ${n} values in ${ms} ms = ${Math.round((n * 1000) / ms)} values/s (left on older versions: ${left})`);
      from = to;
    }
  } finally {
    key.destroy();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
