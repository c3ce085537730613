/**
 * verify-keys throughput: N volumes (100,000) with DEKs wrapped by one KEK, then the key check
 * (`npm run admin -- verify-keys --rate 0`: KeyVerifier with no rate bound, batches of 250 through
 * unwrapMany) beside the raw unwrap rate of the same provider in the same run (unwrapMany of the
 * same batch size back to back on one blob, no database), with CPU µs per key. The default bound
 * (2,000 keys/s) is printed too, as a live deployment would see it, on the first 10,000 keys.
 *
 *   npx tsx bench/verify-keys.ts          (or npm run bench:verify-keys)
 *   BENCH_N=100000 BENCH_BACKENDS=pkcs11,database BENCH_BATCH=250   (defaults)
 */
import { randomUUID } from 'node:crypto';
import { createRepositories } from '../src/db/repositories';
import { mapLimit } from '../src/kms/concurrency';
import { KeyVerifier } from '../src/kms/verify-keys';
import { rate, startBenchWorld, type BenchWorld } from './world';

const N = Number(process.env.BENCH_N ?? 100_000);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'pkcs11,database').split(',') as Array<'database' | 'pkcs11'>;
const BATCH = Number(process.env.BENCH_BATCH ?? 250);

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

/** unwrapMany of BATCH copies of one blob, back to back, for `ms`: keys/s and CPU µs per key. */
async function rawUnwrap(w: BenchWorld, ms: number): Promise<{ kps: number; cpuUs: number }> {
  const wk = w.app.kms.wrappedKeys;
  const v = await wk.activeVersion(w.keyId);
  const kek = await wk.kekRef(v);
  const owner = randomUUID();
  const blob = await wk.generate(v, owner, 32);
  const reqs = Array.from({ length: BATCH }, () => ({ kek, blob, aad: wk.aad(v, owner) }));
  const provider = w.app.providers.get(kek.profile.protocol);
  let done = 0;
  const cpu = process.cpuUsage();
  const start = Date.now();
  while (Date.now() - start < ms) {
    for (const r of await provider.unwrapMany(reqs)) {
      if (!r.ok) throw r.error;
      r.value.dispose();
    }
    done += BATCH;
  }
  const used = process.cpuUsage(cpu);
  return { kps: rate(done, Date.now() - start), cpuUs: (used.user + used.system) / done };
}

async function run(backend: 'database' | 'pkcs11'): Promise<string[]> {
  const w = await startBenchWorld(backend);
  try {
    const seedStart = Date.now();
    await seed(w, N);
    const seedMs = Date.now() - seedStart;
    const before = await rawUnwrap(w, 3000);
    const verifier = new KeyVerifier(w.app);
    const cpu = process.cpuUsage();
    const start = Date.now();
    const report = await verifier.run({ ratePerSec: 0, batchSize: BATCH });
    const ms = Date.now() - start;
    const used = process.cpuUsage(cpu);
    if (report.failures.length) throw new Error(`verify-keys failures: ${JSON.stringify(report.failures.slice(0, 3))}`);
    const after = await rawUnwrap(w, 3000);
    const raw = Math.round((before.kps + after.kps) / 2);
    const kps = rate(report.deks, ms);
    const boundStart = Date.now();
    let bounded = 0;
    const limit = Math.min(10_000, N);
    await new KeyVerifier(w.app).run({ ratePerSec: 2000, batchSize: BATCH, progress: (p) => { bounded = p.checked; if (p.checked >= limit) throw new StopBench(); } }).catch((e) => { if (!(e instanceof StopBench)) throw e; });
    const boundedKps = rate(bounded, Date.now() - boundStart);
    return [
      `${backend.padEnd(9)} ${String(report.deks).padStart(7)}  ${String(kps).padStart(9)}  ${String(raw).padStart(9)}  ${(kps / raw).toFixed(2).padStart(6)}  ${((used.user + used.system) / report.deks).toFixed(0).padStart(6)}  ${((before.cpuUs + after.cpuUs) / 2).toFixed(0).padStart(6)}  ${(ms / 1000).toFixed(1).padStart(6)} s  ${String(boundedKps).padStart(7)}  (seeded at ${rate(N, seedMs)}/s; raw before/after ${before.kps}/${after.kps})`,
    ];
  } finally {
    await w.close();
  }
}

class StopBench extends Error {}

async function main(): Promise<void> {
  console.log(`verify-keys of ${N} DEKs, batches of ${BATCH}, against the raw unwrapMany rate of the same provider (this run)`);
  console.log('backend      DEKs     keys/s  raw unw/s   ratio  µs CPU/key  raw µs   time  bounded/s');
  for (const b of BACKENDS) for (const line of await run(b)) console.log(line);
}

main().catch((err) => { console.error(err); process.exit(1); });
