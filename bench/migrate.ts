/**
 * migrateVolumesToKMS throughput: N legacy passphrase volumes (10,000 and 100,000) migrated by
 * zone in batches, beside the raw backend wrap rate of a 64-byte passphrase (provider.wrap alone,
 * no database, 16 calls in flight as in the migration) measured in the same run, with peak RSS.
 *
 *   npx tsx bench/migrate.ts                  (or npm run bench:migrate)
 *   BENCH_N=10000,100000 BENCH_BACKENDS=database,pkcs11   (defaults)
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { MIGRATION_BATCH_SIZE } from '../src/commands/kms-migration';
import { SecretBytes } from '../src/core/secret-bytes';
import { mb, memorySampler, rate, startBenchWorld, type BenchWorld } from './world';

const SIZES = (process.env.BENCH_N ?? '10000,100000').split(',').map(Number);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'database,pkcs11').split(',') as Array<'database' | 'pkcs11'>;

/** Inserts n legacy volumes of the key's account, each with a passphrase under the master key. */
async function seed(w: BenchWorld, n: number): Promise<void> {
  for (let done = 0; done < n; done += 2000) {
    const count = Math.min(2000, n - done);
    const now = Date.now();
    await w.app.db.transaction(async (trx) => {
      const phrases = Array.from({ length: count }, () => {
        const uuid = randomUUID();
        const text = Buffer.from(randomBytes(48).toString('base64'), 'ascii');
        return { uuid, passphrase: w.app.masterKey.encrypt(text, `passphrase:${uuid}`), created: now };
      });
      await trx.batchInsert('passphrase', phrases, 500);
      const ids = await trx('passphrase').whereIn('uuid', phrases.map((p) => p.uuid)).select('id');
      await trx.batchInsert('volumes', ids.map((r: { id: number }, i: number) => ({
        uuid: randomUUID(), name: `m${done + i}`, account_id: w.accountId, domain_id: w.domainId, zone_id: w.zoneId, size: 0, state: 'Ready',
        encrypt_format: 'LUKS', passphrase_id: r.id, created: now,
      })), 500);
    });
  }
}

async function rawWrapRate(w: BenchWorld, ms: number): Promise<number> {
  const wk = w.app.kms.wrappedKeys;
  const v = await wk.activeVersion(w.keyId);
  const kek = await wk.kekRef(v);
  const provider = w.app.providers.get(kek.profile.protocol);
  const secret = SecretBytes.random(64);
  const aad = wk.aad(v, randomUUID());
  let done = 0;
  const start = Date.now();
  // The same 16 calls in flight as the migration's batches.
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (Date.now() - start < ms) {
      await provider.wrap({ kek, dek: secret, aad });
      done++;
    }
  }));
  secret.dispose();
  return rate(done, Date.now() - start);
}

async function run(backend: 'database' | 'pkcs11', n: number): Promise<string> {
  const w = await startBenchWorld(backend);
  try {
    await seed(w, n);
    const raw = await rawWrapRate(w, 2000);
    const admin = (await w.app.directory.loadCaller(1))!;
    const zoneUuid = (await w.app.db('data_center').where({ id: w.zoneId }).first('uuid')).uuid;
    global.gc?.();
    const mem = memorySampler();
    const rssBefore = process.memoryUsage().rss;
    const start = Date.now();
    const migration = w.app.kms.migration;
    const plan = await migration.plan(admin, w.keyUuid, { zoneUuid });
    const report = await migration.run(plan, { batchSize: MIGRATION_BATCH_SIZE, userId: 1, progress: async () => undefined });
    const ms = Date.now() - start;
    mem.stop();
    if (report.migrated !== n || report.failed) throw new Error(`migrated ${report.migrated}/${n}, failed ${report.failed}`);
    const vps = rate(n, ms);
    return `${backend.padEnd(9)} ${String(n).padStart(7)}  ${String(vps).padStart(9)}  ${String(raw).padStart(9)}  ${(vps / raw).toFixed(2).padStart(6)}  ${(ms / 1000).toFixed(1).padStart(7)} s  ${mb(mem.peak()).padStart(9)}  ${mb(mem.peak() - rssBefore).padStart(9)}`;
  } finally {
    await w.close();
  }
}

async function main(): Promise<void> {
  const db = process.env.DATABASE_URL ? 'MariaDB/MySQL' : 'SQLite';
  console.log(`migrate benchmark: batches of ${MIGRATION_BATCH_SIZE} (one transaction per batch; one insert and one conditional update per 250 volumes), database ${db}, node ${process.version}`);
  console.log('backend         N  volumes/s  raw wrap/s  ratio    total     peak RSS   RSS growth');
  for (const backend of BACKENDS) for (const n of SIZES) console.log(await run(backend, n));
}

main().catch((err) => { console.error(err); process.exit(1); });
