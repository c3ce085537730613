/**
 * High availability, for real: a 3-node MariaDB Galera cluster, Redis with a replica and 3
 * sentinels, 2 API nodes (each preferring another Galera node through a 3-host DATABASE_URL) and a
 * worker, all on private ports under /tmp. Under load (clients create volumes, read their secrets
 * and rotate keys, each retrying once on the other API node as a load balancer would), the test
 * kills in turn a Galera node (and brings it back), the Redis primary, an API node and the worker.
 *
 * It runs its own cluster whatever KMS_TEST_DATABASE_URL says, so it runs in the SQLite pass of
 * the suite only and says loudly that it is skipped in the MariaDB pass.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createRepositories } from '../../src/db/repositories';
import { ensureBuilt } from '../support/dist';
import { GaleraCluster, galeraMissing } from '../support/galera';
import { SentinelRedis } from '../support/sentinel';
import { deploymentEnv, HaDeployment, Load, seedKeys, settleJobs } from '../support/ha-load';
import { migrationSource } from '../../src/db/migrations';
import { ADMIN_KEYS } from '../support/server';
import { waitFor } from '../support/wait';

const SKIP_REASON = process.env.KMS_TEST_DATABASE_URL
  ? 'it starts its own 3-node Galera cluster whatever the test database is, so it runs once, in the SQLite pass (KMS_TEST_DATABASE_URL unset)'
  : undefined;
if (SKIP_REASON) {
  process.stderr.write(`\n${'!'.repeat(100)}\n!!! spec/ha/galera-chaos.spec.ts SKIPPED in this pass: ${SKIP_REASON}\n${'!'.repeat(100)}\n\n`);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stderr.write(`[ha] ${s}\n`);

(SKIP_REASON ? describe.skip : describe)('HA: Galera, Redis Sentinel, 2 API nodes and a worker under faults', () => {
  jest.setTimeout(600_000);
  let galera: GaleraCluster;
  let redis: SentinelRedis;
  const deployments: HaDeployment[] = [];

  beforeAll(async () => {
    const missing = galeraMissing();
    if (missing) throw new Error(`the HA test needs ${missing}: apt-get install galera-4 mariadb-server mariadb-backup redis-sentinel (.ci/run installs them)`);
    ensureBuilt();
    const t0 = Date.now();
    // allSettled: if one fails, the daemons of the other are destroyed before the error is rethrown.
    const [g, r] = await Promise.allSettled([GaleraCluster.start(3), SentinelRedis.start()]);
    if (g.status === 'rejected' || r.status === 'rejected') {
      await Promise.allSettled([g.status === 'fulfilled' ? g.value.destroy() : undefined, r.status === 'fulfilled' ? r.value.destroy() : undefined]);
      throw g.status === 'rejected' ? g.reason : (r as PromiseRejectedResult).reason;
    }
    galera = g.value;
    redis = r.value;
    say(`galera (3 nodes, ports ${galera.nodes.map((n) => n.port).join(',')}) and redis + 3 sentinels up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  afterAll(async () => {
    for (const d of deployments) await d.destroy();
    await Promise.all([galera?.destroy(), redis?.destroy()]);
  });

  let raceDb: string;
  const envFor = (_database: string) => deploymentEnv({ REDIS_SENTINELS: redis.sentinelList, REDIS_SENTINEL_NAME: redis.name });

  it('two nodes started at the same instant against two Galera nodes of an empty database both come up, and the schema is migrated once', async () => {
    const db = `kms_race_${randomBytes(3).toString('hex')}`;
    raceDb = db;
    const d = await HaDeployment.create(envFor(db), [galera.url([0], db), galera.url([1], db)], []);
    deployments.push(d);
    await d.start();
    const k = galera.connect(2, db);
    try {
      const count = async (sql: string) => Number(((await k.raw(sql)) as any)[0][0].n);
      expect(await count('SELECT COUNT(*) AS n FROM knex_migrations')).toBe((await migrationSource.getMigrations([])).length);
      expect(await count("SELECT COUNT(*) AS n FROM domain WHERE path = '/'")).toBe(1);
      expect(await count("SELECT COUNT(*) AS n FROM user WHERE username = 'admin'")).toBe(1);
      expect(await count("SELECT COUNT(*) AS n FROM kms_hsm_profiles WHERE name = 'default'")).toBe(1);
    } finally {
      await k.destroy();
    }
    const waited = d.lines().filter(({ line }) => /^waiting for the (migration|bootstrap) lock/.test(line.msg));
    say(`race start: ${new Set(waited.map((w) => w.proc)).size} of 2 nodes waited for the other's lease`);
    for (const a of d.apis) expect((await a.client.signed(ADMIN_KEYS, { command: 'listZones' })).status).toBe(200);
    await d.destroy();
  });

  it('a key deleted on one Galera node while a DEK is stored under it on another: exactly one of the two commits', async () => {
    // FOR UPDATE locks only on the node it runs on: the deletion must write rows the DEK's
    // transaction also writes (the version's count shards), so certification fails one of them.
    const a = galera.connect(0, raceDb);
    const b = galera.connect(1, raceDb);
    try {
      const ids = async (table: string) => Number((await a(table).first('id'))!.id);
      const [accountId, domainId, hsmProfileId] = [await ids('account'), await ids('domain'), await ids('kms_hsm_profiles')];
      const [zoneId] = await a('data_center').insert({ uuid: randomUUID(), name: 'fence', created: Date.now() });
      const ra = createRepositories(a);
      const keyId = await ra.kmsKeys.insert({
        uuid: randomUUID(), name: 'fence', description: null, kekLabel: `fence-${randomUUID()}`, purpose: 'volume', accountId, domainId, zoneId: Number(zoneId),
        algorithm: 'AES/GCM/NoPadding', keyBits: 256, enabled: true, hsmProfileId, created: new Date(),
      } as Parameters<typeof ra.kmsKeys.insert>[0]);
      const versionId = await ra.kekVersions.insert({ uuid: randomUUID(), kmsKeyId: keyId, versionNumber: 1, kekLabel: `fence-${randomUUID()}`, status: 'Active', keyBits: 256, hsmProfileId, created: new Date() });
      await waitFor(async () => !!(await b('kms_kek_versions').where({ id: versionId }).first('id')), 10_000);

      const ta = await a.transaction();
      const tb = await b.transaction();
      try {
        const del = createRepositories(ta);
        await del.kekVersions.lockAllOf(keyId);
        expect(await del.wrappedKeys.anyLiveUnder(versionId)).toBe(false);
        await del.kmsKeys.markRemoved(keyId, new Date());
        await del.kekVersions.removeAllOf(keyId, new Date());
        const put = createRepositories(tb);
        expect(await put.kekVersions.lockIfUsable(versionId, ['Active'])).toBe(true);
        await put.wrappedKeys.insertMany(keyId, versionId, [{ zoneId: Number(zoneId), ownerUuid: randomUUID(), blob: randomBytes(60) }], new Date());
      } catch (e) {
        await Promise.allSettled([ta.rollback(), tb.rollback()]);
        throw e;
      }
      // A failed COMMIT rejects the transaction's executionPromise (commit() itself resolves).
      await Promise.allSettled([ta.commit(), tb.commit()]);
      const commits = await Promise.allSettled([ta.executionPromise, tb.executionPromise]);
      say(`fence: deletion ${commits[0].status}, DEK insert ${commits[1].status}`);
      expect(commits.filter((c) => c.status === 'fulfilled')).toHaveLength(1);
      // Either way, no live wrapped key is left under a removed key.
      const orphans = await a('kms_wrapped_key as w').join('kms_keys as k', 'k.id', 'w.kms_key_id').where('k.id', keyId).whereNull('w.removed').whereNotNull('k.removed').count({ n: '*' });
      expect(Number(orphans[0]!.n)).toBe(0);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });

  let d: HaDeployment;
  let zone: string;
  let keys: string[];

  it('the same load with no fault: 0 errors of any kind', async () => {
    d = await HaDeployment.create(envFor('kms'), [galera.url([0, 1, 2]), galera.url([1, 2, 0])], [galera.url([2, 0, 1])]);
    deployments.push(d);
    await d.start();
    ({ zone, keys } = await seedKeys(d.apis[0]!, 2));
    const load = new Load(d.apis, zone, keys);
    const t0 = Date.now();
    load.start();
    await sleep(15_000);
    await load.stop();
    const r = load.report;
    say(`no fault: ${r.ok} requests, ${r.volumes.size} volumes acknowledged, ${load.rate(t0, Date.now()).toFixed(1)} creations/s, first-attempt failures ${r.firstFailures.length}`);
    expect([r.firstFailures, r.failures, r.internal, r.changedSecrets]).toEqual([[], [], [], []]);
    const jobs = await settleJobs(d.apis[1]!, r.jobs, 60_000);
    expect(jobs.pending).toEqual([]);
    expect(jobs.failed.filter((f) => /Internal error/.test(JSON.stringify(f.result)))).toEqual([]);
    expect(r.volumes.size).toBeGreaterThan(0);
  });

  it('kills a Galera node, the Redis primary, an API node and the worker in turn: nothing acknowledged is lost, no internal error, a client retrying once never fails', async () => {
    const load = new Load(d.apis, zone, keys);
    const windows: Array<{ fault: string; from: number; to: number; recoveredMs?: number }> = [];
    const t0 = Date.now();
    load.start();
    await sleep(5_000);
    windows.push({ fault: 'none', from: t0, to: Date.now() });

    // 1. Galera node 1 (api1's preferred host), SIGKILL; back after 8 s (IST/SST), synced.
    let k = Date.now();
    await galera.nodes[0]!.kill();
    say('killed galera node 1');
    const galeraKill = k;
    await sleep(8_000);
    galera.nodes[0]!.start();
    await galera.nodes[0]!.waitSynced(3);
    say(`galera node 1 back and synced after ${((Date.now() - k) / 1000).toFixed(1)} s`);
    await sleep(3_000);
    windows.push({ fault: 'galera node killed and rejoined', from: k, to: Date.now(), recoveredMs: (load.firstWriteAfter(k) ?? NaN) - k });
    say(`api1 (whose preferred galera node was killed) acknowledged a write again ${(load.firstWriteAfter(galeraKill, 'api1') ?? NaN) - galeraKill} ms after the kill`);
    // api1 moved to its next host when its preferred node died, and back once it rejoined.
    const api1 = d.apis[0]!.proc!;
    expect(api1.lines().some((l) => l.msg === 'database host is down; moving to the next')).toBe(true);
    await waitFor(async () => api1.lines().filter((l) => l.msg === 'database host in use').at(-1)?.preferred === true, 30_000, 'api1 back on its preferred host');
    say(`api1 database host changes: ${JSON.stringify(api1.lines().filter((l) => /^database host/.test(l.msg)).map((l) => `${l.msg} ${l.host ?? l.down}`))}`);

    // 2. The Redis primary; the sentinels promote the replica; the old primary comes back as a replica.
    k = Date.now();
    const oldPrimary = await redis.killPrimary();
    // A job submitted while no Redis primary answers is kept in the database and run by a worker's
    // sweeper (after KMS_JOB_PICKUP_DELAY_MS, 10 s, at the next KMS_JOB_SWEEP_MS tick, 5 s).
    const during = await d.apis[1]!.client.signed(ADMIN_KEYS, { command: 'createVolume', name: 'during-failover', zoneid: zone, kmskeyid: keys[1]! });
    expect(during.status).toBe(200);
    load.report.volumes.set(during.body.id, Date.now());
    const duringJob = settleJobs(d.apis[1]!, [during.body.jobid], 90_000).then((r) => ({ ...r, ms: Date.now() - k }));
    const newPrimary = await redis.waitForFailover(oldPrimary);
    const failedOverAt = Date.now();
    say(`redis primary ${oldPrimary} killed; sentinels promoted ${newPrimary} after ${((Date.now() - k) / 1000).toFixed(1)} s`);
    await redis.restart(oldPrimary);
    await sleep(6_000);
    windows.push({ fault: 'redis primary killed', from: k, to: Date.now(), recoveredMs: (load.firstWriteAfter(k) ?? NaN) - k });
    // After the failover the queue runs jobs through the new primary: a job submitted now ends
    // long before a database sweeper (KMS_JOB_PICKUP_DELAY_MS, 10 s) would take it.
    const probe = await d.apis[0]!.client.signed(ADMIN_KEYS, { command: 'createVolume', name: 'after-failover', zoneid: zone, kmskeyid: keys[0]! });
    expect(probe.status).toBe(200);
    load.report.volumes.set(probe.body.id, Date.now());
    const probeStart = Date.now();
    const probeJob = await settleJobs(d.apis[0]!, [probe.body.jobid], 60_000);
    const queueMs = Date.now() - probeStart;
    expect(probeJob.pending).toEqual([]);
    // BullMQ's events stream on the new primary, from the failover on: the probe job went through it.
    const events = await queueEventsSince(redis, `${d.env.KMS_QUEUE_PREFIX!}:jobs:events`, failedOverAt);
    const probeEvents = events.filter((e) => e.jobId === probe.body.jobid).map((e) => e.event);
    say(`a job submitted after the failover ended in ${queueMs} ms; its events on the new primary: ${probeEvents.join(',')}`);
    const ended = await duringJob;
    expect(ended.pending).toEqual([]);
    say(`a job submitted right after the Redis primary was killed ended ${ended.ms} ms after its submission`);
    expect(probeEvents).toEqual(expect.arrayContaining(['added', 'completed']));

    // 3. API node 1, SIGKILL; its clients retry on api2; back after 3 s.
    k = Date.now();
    await d.apis[0]!.kill();
    await sleep(3_000);
    d.apis[0]!.start();
    await d.apis[0]!.ready();
    await sleep(2_000);
    windows.push({ fault: 'api node killed', from: k, to: Date.now(), recoveredMs: (load.firstWriteAfter(k) ?? NaN) - k });

    // 4. The worker, SIGKILL, holding whatever jobs it ran; back after 2 s, its leases expire and jobs are taken over.
    k = Date.now();
    await d.workers[0]!.kill();
    await sleep(2_000);
    d.workers[0]!.start();
    await d.workers[0]!.ready();
    await sleep(3_000);
    windows.push({ fault: 'worker killed', from: k, to: Date.now(), recoveredMs: (load.firstWriteAfter(k) ?? NaN) - k });
    await load.stop();

    const r = load.report;
    for (const w of windows) {
      say(`${w.fault.padEnd(32)} ${((w.to - w.from) / 1000).toFixed(1).padStart(5)} s  ${load.rate(w.from, w.to).toFixed(1).padStart(6)} acknowledged creations/s` +
        (w.recoveredMs !== undefined ? `  writes served again ${w.recoveredMs} ms after the kill` : ''));
    }
    const byNode = (xs: typeof r.firstFailures) => xs.map((f) => `${f.node} ${f.op} ${f.status} ${f.text ?? ''}`.slice(0, 140));
    say(`${r.ok} requests ok, ${r.volumes.size} volumes acknowledged, ${r.firstFailures.length} first attempts failed (retried on the other node): ${JSON.stringify(summarise(byNode(r.firstFailures)))}`);
    expect(r.internal).toEqual([]);
    expect(r.failures).toEqual([]);
    expect(r.changedSecrets).toEqual([]);
    // First attempts fail only for reasons a client (or load balancer) can act on: connection refused
    // (a dead API node), 503 "starting" (a node restarting), or 530 "database unavailable".
    expect(r.firstFailures.filter((f) => f.status !== 0 && f.status !== 503 && !/database unavailable|database busy/.test(f.text ?? ''))).toEqual([]);

    // Every job ends.
    const jobs = await settleJobs(d.apis[1]!, r.jobs, 120_000);
    if (jobs.pending.length) await dumpJobs(galera, d, redis, jobs.pending);
    expect(jobs.pending).toEqual([]);
    expect(jobs.failed.filter((f) => /Internal error/.test(JSON.stringify(f.result)))).toEqual([]);

    // Every acknowledged volume exists with an unchanged secret, read through every API node.
    const missing: string[] = [];
    for (const [id] of r.volumes) {
      const seen = new Set<string>();
      for (const api of d.apis) {
        const a = await api.client.signed(ADMIN_KEYS, { command: 'getVolumeEncryptionKey', id });
        if (a.status !== 200) missing.push(`${api.name} ${id} ${a.status} ${a.body.errortext}`);
        else seen.add(a.body.volumeencryptionkey.secret);
      }
      const first = r.secrets.get(id);
      if (first) seen.add(first);
      if (seen.size > 1) missing.push(`${id}: secrets differ`);
    }
    expect(missing).toEqual([]);
    const errorsLogged = d.lines().filter(({ line }) => line.level === 'error' && /unhandled error/.test(line.msg));
    expect(errorsLogged).toEqual([]);
  });
});

/** What the test saw of jobs that did not end: their rows, the queue, the worker's warnings. */
async function dumpJobs(galera: GaleraCluster, d: HaDeployment, redis: SentinelRedis, pending: string[]): Promise<void> {
  const k = galera.connect(1, 'kms');
  try {
    const rows = await k('async_job').whereIn('uuid', pending.slice(0, 10)).select('id', 'uuid', 'cmd', 'status', 'attempts', 'lease_owner', 'lease_expires', 'created', 'last_updated');
    say(`now ${Date.now()}; pending jobs (first 10 of ${pending.length}): ${JSON.stringify(rows)}`);
    const open = await k('async_job').where({ status: 0 }).orderBy('id').limit(20).select('id', 'job_kind', 'attempts', 'lease_owner', 'lease_expires', 'last_updated');
    say(`unfinished jobs by id: ${JSON.stringify(open)}`);
  } finally {
    await k.destroy();
  }
  const { Redis } = await import('ioredis');
  const r = new Redis({ sentinels: redis.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name: redis.name, maxRetriesPerRequest: 2 });
  try {
    const p = `${d.env.KMS_QUEUE_PREFIX}:jobs`;
    say(`queue: wait ${await r.llen(`${p}:wait`)} active ${await r.llen(`${p}:active`)} prioritized ${await r.zcard(`${p}:prioritized`)} delayed ${await r.zcard(`${p}:delayed`)}`);
  } finally {
    r.disconnect();
  }
  for (const p of d.all) {
    const lines = p.proc?.lines().filter((l) => l.level !== 'info' && !(l.level === 'debug' && l.msg !== 'no handler for job kind in this process')) ?? [];
    const started = p.proc?.lines().filter((l) => l.msg === 'job started').length;
    say(`${p.name}: ${started} 'job started' lines since its last start`);
    say(`${p.name} warnings (last 8 of ${lines.length}): ${JSON.stringify(lines.slice(-8))}`);
  }
}

function summarise(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) {
    const k = x.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>');
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** The entries of a stream on the current Redis primary with ids from `sinceMs` on, each as its fields. */
async function queueEventsSince(redis: SentinelRedis, key: string, sinceMs: number): Promise<Array<Record<string, string>>> {
  const { Redis } = await import('ioredis');
  const r = new Redis({ sentinels: redis.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name: redis.name, maxRetriesPerRequest: 2 });
  try {
    const entries = await r.xrange(key, String(sinceMs), '+');
    return entries.map(([, fields]) => {
      const o: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
      return o;
    });
  } finally {
    r.disconnect();
  }
}
