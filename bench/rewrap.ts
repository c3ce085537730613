import { createRepositories } from '../src/db/repositories';
/**
 * Background rewrap throughput: N wrapped DEKs (10,000 and 100,000) on KEK v1, rotate, then the
 * rewrap ticks run back to back with a large batch size until v1 is Archived. Printed beside the raw
 * backend rewrap rate (provider.rewrap alone, no database) measured in the same run, with peak RSS.
 *
 *   npx tsx bench/rewrap.ts                   (or npm run bench:rewrap)
 *   BENCH_N=10000,100000 BENCH_BACKENDS=database,pkcs11 BENCH_BATCH=5000   (defaults)
 */
import { randomUUID } from 'node:crypto';
import { mapLimit } from '../src/kms/concurrency';
import { call, mb, memorySampler, rate, startBenchWorld, waitJob, type BenchWorld } from './world';

const SIZES = (process.env.BENCH_N ?? '10000,100000').split(',').map(Number);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'database,pkcs11').split(',') as Array<'database' | 'pkcs11'>;
const BATCH = Number(process.env.BENCH_BATCH ?? 5000);

/** Inserts n volumes with DEKs generated and wrapped by the key's Active version. */
async function seed(w: BenchWorld, n: number): Promise<void> {
  const wk = w.app.kms.wrappedKeys;
  const v = await wk.activeVersion(w.keyId);
  for (let done = 0; done < n; done += 2000) {
    const owners = Array.from({ length: Math.min(2000, n - done) }, () => randomUUID());
    const blobs = await mapLimit(owners, 32, (o) => wk.generate(v, o, 32));
    const now = Date.now();
    await w.app.db.transaction(async (trx) => {
      const byOwner = new Map<string, number>();
      for (let i = 0; i < owners.length; i += 500) {
        const part = owners.slice(i, i + 500).map((o, j) => ({ zoneId: w.zoneId, ownerUuid: o, blob: blobs[i + j]! }));
        for (const [o, id] of await wk.insertMany(createRepositories(trx), v, part)) byOwner.set(o, id);
      }
      await trx.batchInsert('volumes', owners.map((o, i) => ({
        uuid: o, name: `b${done + i}`, account_id: w.accountId, domain_id: w.domainId, zone_id: w.zoneId, size: 0, state: 'Ready',
        encrypt_format: 'LUKS', kms_key_id: w.keyId, kms_wrapped_key_id: byOwner.get(o), created: now,
      })), 500);
    });
  }
}

/** provider.rewrap alone (no database), same concurrency as the ticks, for `ms` milliseconds. */
async function rawRewrapRate(w: BenchWorld, ms: number): Promise<number> {
  const wk = w.app.kms.wrappedKeys;
  const versions = await w.app.db('kms_kek_versions').where({ kms_key_id: w.keyId }).orderBy('version_number');
  const from = (await wk.versionById(versions[0].id))!;
  const to = (await wk.versionById(versions[versions.length - 1].id))!;
  const [kFrom, kTo] = [await wk.kekRef(from), await wk.kekRef(to)];
  const provider = w.app.providers.get(kFrom.profile.protocol);
  const owner = randomUUID();
  const blob = await wk.generate(from, owner, 32);
  const [aadFrom, aadTo] = [wk.aad(from, owner), wk.aad(to, owner)];
  let done = 0;
  const end = Date.now() + ms;
  const start = Date.now();
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (Date.now() < end) {
      await provider.rewrap({ from: { kek: kFrom, blob, aad: aadFrom }, to: { kek: kTo, aad: aadTo } });
      done++;
    }
  }));
  return rate(done, Date.now() - start);
}

async function run(backend: 'database' | 'pkcs11', n: number): Promise<string> {
  const w = await startBenchWorld(backend);
  try {
    const seedStart = Date.now();
    await seed(w, n);
    const seedMs = Date.now() - seedStart;
    await waitJob(w.client, (await call(w.client, { command: 'rotateKMSKey', id: w.keyUuid })).jobid);
    const raw = await rawRewrapRate(w, 2000);
    global.gc?.();
    const mem = memorySampler();
    const rssBefore = process.memoryUsage().rss;
    const rewrapper = w.app.kms.rewrap;
    const start = Date.now();
    let rewrapped = 0;
    for (;;) {
      const r = await rewrapper.tick({ batchSize: BATCH, workerId: 'bench', claimMs: 60000, concurrency: 16 });
      rewrapped += r.rewrapped;
      if (r.failed.length) throw new Error(`rewrap failures: ${JSON.stringify(r.failed.slice(0, 3))}`);
      if (r.archived.length) break;
    }
    const ms = Date.now() - start;
    mem.stop();
    if (rewrapped !== n) throw new Error(`rewrapped ${rewrapped} of ${n}`);
    const kps = rate(n, ms);
    return `${backend.padEnd(9)} ${String(n).padStart(7)}  ${String(kps).padStart(9)}  ${String(raw).padStart(9)}  ${(kps / raw).toFixed(2).padStart(6)}  ${(ms / 1000).toFixed(1).padStart(7)} s  ${mb(mem.peak()).padStart(9)}  ${mb(mem.peak() - rssBefore).padStart(9)}  (seeded at ${rate(n, seedMs)}/s)`;
  } finally {
    await w.close();
  }
}

async function main(): Promise<void> {
  const db = process.env.DATABASE_URL ? 'MariaDB/MySQL' : 'SQLite';
  console.log(`rewrap benchmark: batch ${BATCH}, 16 backend calls in flight, database ${db}, node ${process.version}`);
  console.log('backend         N  keys/s     raw/s    ratio    total     peak RSS   RSS growth');
  for (const backend of BACKENDS) for (const n of SIZES) console.log(await run(backend, n));
}

main().catch((err) => { console.error(err); process.exit(1); });
