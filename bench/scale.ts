/**
 * Costs that must not grow with the fleet: signed listKMSKeys (10 keys) and listVolumes (one page of
 * 20) with 1k and with 1M wrapped keys on one key, seeded in bulk (rows written directly, the way a
 * large cloud's database looks; the blobs are random, nothing is unwrapped). For each: median
 * latency over sequential calls and the CPU µs per call of this process (server and client share it).
 *
 *   npx tsx bench/scale.ts        (or npm run bench:scale)
 *   BENCH_SIZES=1000,1000000 BENCH_CALLS=200   (defaults); DATABASE_URL=mysql://… for MariaDB
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createRepositories } from '../src/db/repositories';
import { call, startBenchWorld, type BenchWorld } from './world';

const SIZES = (process.env.BENCH_SIZES ?? '1000,1000000').split(',').map(Number);
const CALLS = Number(process.env.BENCH_CALLS ?? 200);

/** Adds volumes with wrapped keys on the key's Active version until the key has `total`. */
async function seedTo(w: BenchWorld, have: number, total: number): Promise<void> {
  const version = await w.app.db('kms_kek_versions').where({ kms_key_id: w.keyId, status: 'Active' }).first('id');
  const blob = randomBytes(60);
  const CHUNK = 5000;
  for (let done = have; done < total; done += CHUNK) {
    const n = Math.min(CHUNK, total - done);
    const now = Date.now();
    await w.app.db.transaction(async (trx) => {
      const keys = Array.from({ length: n }, () => ({ uuid: randomUUID(), owner: randomUUID() }));
      await trx.batchInsert('kms_wrapped_key', keys.map((k) => ({
        uuid: k.uuid, kms_key_id: w.keyId, kek_version_id: version.id, zone_id: w.zoneId, owner_uuid: k.owner, wrapped_blob: blob, created: now,
      })), 400);
      await createRepositories(trx).kekVersions.adjustWrappedKeyCount(version.id, n);
      const ids: Array<{ id: number; owner_uuid: string }> = await trx('kms_wrapped_key').whereIn('uuid', keys.map((k) => k.uuid)).select('id', 'owner_uuid');
      await trx.batchInsert('volumes', ids.map((r, i) => ({
        uuid: r.owner_uuid, name: `s${done + i}`, account_id: w.accountId, domain_id: w.domainId, zone_id: w.zoneId, size: 0, state: 'Ready',
        encrypt_format: 'LUKS', kms_key_id: w.keyId, kms_wrapped_key_id: r.id, created: now,
      })), 400);
    });
  }
}

async function measure(w: BenchWorld, params: Record<string, string | number | boolean>): Promise<{ ms: number; cpuUs: number }> {
  for (let i = 0; i < 10; i++) await call(w.client, params);
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    const t = process.hrtime.bigint();
    await call(w.client, params);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const cpu = process.cpuUsage(cpu0);
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)]!, cpuUs: (cpu.user + cpu.system) / CALLS };
}

async function main(): Promise<void> {
  const w = await startBenchWorld('database');
  const zoneId = (await call(w.client, { command: 'listZones' })).zone[0].id;
  const profileId = (await call(w.client, { command: 'listHSMProfiles', name: 'default', listall: true })).hsmprofile[0].id;
  for (let i = 0; i < 9; i++) await call(w.client, { command: 'createKMSKey', name: `k${i}`, zoneid: zoneId, hsmprofileid: profileId });
  const rows: Array<{ size: number; keys: { ms: number; cpuUs: number }; volumes: { ms: number; cpuUs: number } }> = [];
  let have = 0;
  for (const size of SIZES) {
    const t = Date.now();
    await seedTo(w, have, size);
    have = size;
    if (!process.env.DATABASE_URL) await w.app.db.raw('PRAGMA wal_checkpoint(TRUNCATE)');
    process.stderr.write(`seeded ${size} wrapped keys in ${((Date.now() - t) / 1000).toFixed(0)} s\n`);
    rows.push({
      size,
      keys: await measure(w, { command: 'listKMSKeys', listall: true }),
      volumes: await measure(w, { command: 'listVolumes', listall: true, page: 1, pagesize: 20 }),
    });
  }
  console.log(`bench:scale  ${process.env.DATABASE_URL ? 'MariaDB' : 'SQLite'}, ${CALLS} sequential calls each, medians`);
  console.log('wrapped keys'.padEnd(14), 'listKMSKeys ms'.padStart(15), 'CPU µs'.padStart(8), 'listVolumes ms'.padStart(15), 'CPU µs'.padStart(8));
  for (const r of rows) {
    console.log(String(r.size).padEnd(14), r.keys.ms.toFixed(2).padStart(15), r.keys.cpuUs.toFixed(0).padStart(8), r.volumes.ms.toFixed(2).padStart(15), r.volumes.cpuUs.toFixed(0).padStart(8));
  }
  const [first, last] = [rows[0]!, rows[rows.length - 1]!];
  console.log(`listKMSKeys at ${last.size} ÷ at ${first.size}: latency ${(last.keys.ms / first.keys.ms).toFixed(2)}, CPU ${(last.keys.cpuUs / first.keys.cpuUs).toFixed(2)}`);
  console.log(`listVolumes at ${last.size} ÷ at ${first.size}: latency ${(last.volumes.ms / first.volumes.ms).toFixed(2)}, CPU ${(last.volumes.cpuUs / first.volumes.cpuUs).toFixed(2)}`);
  await w.close();
}

void main().catch((e) => { console.error(e); process.exit(1); });
