/**
 * Acknowledged volume creations per second (the load of spec/ha/galera-chaos.spec.ts: 4 clients
 * creating volumes, reading secrets and rotating keys on 2 API nodes and a worker, each retrying
 * once on the other node) on a local 3-node Galera cluster with no fault and during each fault
 * window (a Galera node killed and rejoining, the Redis primary killed, an API node killed, the
 * worker killed), against the same deployment on a single MariaDB (127.0.0.1:3306, a fresh
 * database) measured in the same run. Also: the CPU time of the API and worker processes per
 * acknowledged creation, and the client-visible first-attempt failures.
 *
 *   npx tsx bench/ha.ts          (or npm run bench:ha)
 *   BENCH_SECONDS=15 (no-fault windows)   BENCH_MYSQL_URL=mysql://root@127.0.0.1:3306
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import knexFactory from 'knex';
import { ensureBuilt } from '../spec/support/dist';
import { GaleraCluster } from '../spec/support/galera';
import { SentinelRedis } from '../spec/support/sentinel';
import { deploymentEnv, HaDeployment, Load, seedKeys, settleJobs } from '../spec/support/ha-load';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const MYSQL = process.env.BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}
const cpuOf = (d: HaDeployment) => d.all.reduce((n, p) => n + cpuSeconds(p.proc?.proc.pid), 0);

interface Row { setup: string; window: string; seconds: number; rate: number; cpuMsPerCreate?: number; firstFailures: number; failures: number }

async function noFault(name: string, d: HaDeployment, zone: string, keys: string[]): Promise<Row> {
  const load = new Load(d.apis, zone, keys);
  const cpu0 = cpuOf(d);
  const t0 = Date.now();
  load.start();
  await sleep(SECONDS * 1000);
  await load.stop();
  const t1 = Date.now();
  const creates = load.report.writeAcks.length;
  return {
    setup: name, window: 'no fault', seconds: (t1 - t0) / 1000, rate: load.rate(t0, t1), cpuMsPerCreate: ((cpuOf(d) - cpu0) * 1000) / Math.max(1, creates),
    firstFailures: load.report.firstFailures.length, failures: load.report.failures.length,
  };
}

async function main(): Promise<void> {
  ensureBuilt();
  const [galera, redis] = await Promise.all([GaleraCluster.start(3), SentinelRedis.start()]);
  const rows: Row[] = [];
  const single = `kms_bench_ha_${randomBytes(3).toString('hex')}`;
  const deployments: HaDeployment[] = [];
  try {
    const env = () => deploymentEnv({ REDIS_SENTINELS: redis.sentinelList, REDIS_SENTINEL_NAME: redis.name });
    // Baseline: the same processes on one MariaDB.
    const one = await HaDeployment.create(env(), [`${MYSQL.replace(/\/$/, '')}/${single}`, `${MYSQL.replace(/\/$/, '')}/${single}`], [`${MYSQL.replace(/\/$/, '')}/${single}`]);
    deployments.push(one);
    await one.start();
    const s1 = await seedKeys(one.apis[0]!, 2);
    rows.push(await noFault('single MariaDB', one, s1.zone, s1.keys));
    await one.destroy();

    const d = await HaDeployment.create(env(), [galera.url([0, 1, 2]), galera.url([1, 2, 0])], [galera.url([2, 0, 1])]);
    deployments.push(d);
    await d.start();
    const s = await seedKeys(d.apis[0]!, 2);
    rows.push(await noFault('Galera x3', d, s.zone, s.keys));

    const load = new Load(d.apis, s.zone, s.keys);
    load.start();
    await sleep(2000);
    const window = async (name: string, fault: () => Promise<void>) => {
      const f0 = load.report.firstFailures.length;
      const e0 = load.report.failures.length;
      const t0 = Date.now();
      await fault();
      const t1 = Date.now();
      rows.push({ setup: 'Galera x3', window: name, seconds: (t1 - t0) / 1000, rate: load.rate(t0, t1),
        firstFailures: load.report.firstFailures.length - f0, failures: load.report.failures.length - e0 });
    };
    await window('galera node killed, rejoined', async () => {
      await galera.nodes[0]!.kill();
      await sleep(8000);
      galera.nodes[0]!.start();
      await galera.nodes[0]!.waitSynced(3);
    });
    await window('redis primary killed', async () => {
      const old = await redis.killPrimary();
      await redis.waitForFailover(old);
      await redis.restart(old);
      await sleep(3000);
    });
    await window('api node killed', async () => {
      await d.apis[0]!.kill();
      await sleep(3000);
      d.apis[0]!.start();
      await d.apis[0]!.ready();
    });
    await window('worker killed', async () => {
      await d.workers[0]!.kill();
      await sleep(2000);
      d.workers[0]!.start();
      await d.workers[0]!.ready();
    });
    await load.stop();
    await settleJobs(d.apis[1]!, load.report.jobs, 120_000);

    const baseline = rows[0]!.rate;
    console.log('\nacknowledged volume creations per second (4 clients, 2 API nodes, 1 worker, database KEK provider)\n');
    console.log(`${'setup'.padEnd(16)} ${'window'.padEnd(30)} ${'s'.padStart(5)} ${'creates/s'.padStart(10)} ${'vs single'.padStart(10)} ${'CPU ms/create'.padStart(14)} ${'1st-try fail'.padStart(12)} ${'failed'.padStart(7)}`);
    for (const r of rows) {
      console.log(`${r.setup.padEnd(16)} ${r.window.padEnd(30)} ${r.seconds.toFixed(1).padStart(5)} ${r.rate.toFixed(1).padStart(10)} ${(r.rate / baseline).toFixed(2).padStart(10)} ${(r.cpuMsPerCreate === undefined ? '' : r.cpuMsPerCreate.toFixed(1)).padStart(14)} ${String(r.firstFailures).padStart(12)} ${String(r.failures).padStart(7)}`);
    }
  } finally {
    for (const d of deployments) await d.destroy();
    await Promise.all([galera.destroy(), redis.destroy()]);
    const a = knexFactory({ client: 'mysql2', connection: MYSQL });
    await a.raw('DROP DATABASE IF EXISTS ??', [single]).catch(() => undefined);
    await a.destroy();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
