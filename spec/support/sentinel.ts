import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, killGroup } from './galera';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One redis-server or redis-sentinel process. */
class RedisProc {
  proc?: ChildProcess;
  constructor(readonly port: number, readonly conf: string, readonly sentinel: boolean) {}
  get running(): boolean { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }
  start(): void {
    this.proc = spawn(this.sentinel ? 'redis-sentinel' : 'redis-server', [this.conf], { stdio: 'ignore', detached: true });
  }
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    const exited = this.running ? new Promise<void>((resolve) => p.once('exit', () => resolve())) : Promise.resolve();
    killGroup(p);
    await exited;
  }
}

async function answers(port: number): Promise<boolean> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    await r.ping();
    return true;
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/**
 * A Redis primary, one replica and 3 sentinels (`sentinel monitor kms-redis … 2`,
 * down-after-milliseconds 1500) on private ports, configs and files under /tmp. Killing the primary
 * makes the sentinels promote the replica; `restartAsReplica` brings a killed server back, which the
 * sentinels turn into a replica of the new primary.
 */
export class SentinelRedis {
  readonly name = 'kms-redis';
  private constructor(readonly dir: string, readonly servers: RedisProc[], readonly sentinels: RedisProc[]) {}

  static async start(): Promise<SentinelRedis> {
    const dir = mkdtempSync(join(tmpdir(), 'kms-sentinel-'));
    const servers: RedisProc[] = [];
    const sentinels: RedisProc[] = [];
    const primaryPort = await freePort();
    for (let i = 0; i < 2; i++) {
      const port = i === 0 ? primaryPort : await freePort();
      const d = join(dir, `r${i}`);
      mkdirSync(d, { recursive: true });
      const conf = join(d, 'redis.conf');
      writeFileSync(conf, [
        `port ${port}`, 'bind 127.0.0.1', `dir ${d}`, 'save ""', 'appendonly no', 'protected-mode no',
        ...(i === 1 ? [`replicaof 127.0.0.1 ${primaryPort}`] : []), '',
      ].join('\n'));
      servers.push(new RedisProc(port, conf, false));
    }
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const d = join(dir, `s${i}`);
      mkdirSync(d, { recursive: true });
      const conf = join(d, 'sentinel.conf');
      writeFileSync(conf, [
        `port ${port}`, 'bind 127.0.0.1', `dir ${d}`, 'protected-mode no',
        `sentinel monitor kms-redis 127.0.0.1 ${primaryPort} 2`,
        'sentinel down-after-milliseconds kms-redis 1500',
        'sentinel failover-timeout kms-redis 10000',
        'sentinel parallel-syncs kms-redis 1', '',
      ].join('\n'));
      sentinels.push(new RedisProc(port, conf, true));
    }
    const s = new SentinelRedis(dir, servers, sentinels);
    try {
      for (const p of [...servers, ...sentinels]) {
        p.start();
        for (let i = 0; !(await answers(p.port)); i++) {
          if (i > 100) throw new Error(`redis on ${p.port} did not start`);
          await sleep(50);
        }
      }
      await s.waitForReplicas(1);
    } catch (e) {
      await s.destroy();
      throw e;
    }
    return s;
  }

  /** REDIS_SENTINELS for the server processes. */
  get sentinelList(): string {
    return this.sentinels.map((p) => `127.0.0.1:${p.port}`).join(',');
  }

  /** The primary's port as the sentinels name it now. */
  async primaryPort(): Promise<number> {
    const r = new Redis({ port: this.sentinels.find((p) => p.running)!.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    try {
      const [, port] = (await r.call('SENTINEL', 'get-master-addr-by-name', this.name)) as [string, string];
      return Number(port);
    } finally {
      r.disconnect();
    }
  }

  /** The server process at a port. */
  server(port: number): RedisProc {
    return this.servers.find((p) => p.port === port)!;
  }

  /** Kills the primary (SIGKILL); returns its port. */
  async killPrimary(): Promise<number> {
    const port = await this.primaryPort();
    await this.server(port).kill();
    return port;
  }

  /** Waits until the sentinels name a primary other than `oldPort`, which answers as master. */
  async waitForFailover(oldPort: number, timeoutMs = 60_000): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const port = await this.primaryPort().catch(() => oldPort);
      if (port !== oldPort && (await answers(port))) return port;
      if (Date.now() > end) throw new Error(`no failover within ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  /** Starts a killed server again; the sentinels reconfigure it as a replica of the current primary. */
  async restart(port: number): Promise<void> {
    const p = this.server(port);
    p.start();
    for (let i = 0; !(await answers(port)); i++) {
      if (i > 200) throw new Error(`redis on ${port} did not restart`);
      await sleep(50);
    }
  }

  /** Waits until the current primary has `n` connected replicas. */
  async waitForReplicas(n: number, timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const port = await this.primaryPort();
      const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, lazyConnect: true });
      r.on('error', () => undefined);
      try {
        await r.connect();
        const info = await r.info('replication');
        if (Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0) >= n) return;
      } catch { /* retry */ } finally {
        r.disconnect();
      }
      if (Date.now() > end) throw new Error(`primary has fewer than ${n} replicas after ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.sentinels, ...this.servers].map((p) => p.kill()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
