import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient, type ApiAnswer, type Params } from './client';
import { DIST_MAIN, DIST_WORKER } from './dist';
import { freePort } from './galera';
import { NodeProcess } from './node-process';
import { ADMIN_KEYS } from './server';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One API node (dist/main.js, KMS_ROLE=api) or worker (dist/worker-main.js) with a fixed port, restartable. */
export class HaProcess {
  proc?: NodeProcess;
  constructor(readonly name: string, readonly script: string, readonly env: Record<string, string>, readonly port: number, readonly opsPort: number) {}

  get client(): ApiClient { return new ApiClient(`http://127.0.0.1:${this.port}`); }
  get running(): boolean { return !!this.proc?.running; }

  start(): NodeProcess {
    this.proc = NodeProcess.node(this.script, { ...this.env, PORT: String(this.port), KMS_OPS_PORT: String(this.opsPort) });
    return this.proc;
  }

  /** Waits until /readyz answers 200. */
  async ready(timeoutMs = 120_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.proc && !this.proc.running) throw new Error(`${this.name} exited: ${this.proc.stderr.join('').slice(-3000)}`);
      const ok = await fetch(`http://127.0.0.1:${this.opsPort}/readyz`).then((r) => r.status === 200, () => false);
      if (ok) return;
      if (Date.now() > end) throw new Error(`${this.name} not ready within ${timeoutMs} ms: ${this.proc?.stderr.join('').slice(-3000)}`);
      await sleep(200);
    }
  }

  async readyz(): Promise<{ status: number; body: any }> {
    const r = await fetch(`http://127.0.0.1:${this.opsPort}/readyz`);
    return { status: r.status, body: await r.json() };
  }

  async kill(): Promise<void> { await this.proc?.kill(); }
  async stop(): Promise<void> { if (this.proc?.running) await this.proc.signal('SIGTERM'); }
}

/** The environment every process of one deployment shares. */
export function deploymentEnv(extra: Record<string, string>): Record<string, string> {
  return {
    KMS_MASTER_KEY: randomBytes(32).toString('base64'),
    KMS_QUEUE_PREFIX: `kmsha-${randomBytes(4).toString('hex')}`,
    KMS_ADMIN_API_KEY: ADMIN_KEYS.apiKey,
    KMS_ADMIN_SECRET_KEY: ADMIN_KEYS.secretKey,
    KMS_LOG_LEVEL: 'info',
    KMS_JOB_LEASE_MS: '10000',
    ...extra,
  };
}

/**
 * API nodes and workers of one deployment, each with its own DATABASE_URL (a Galera cluster's
 * hosts in its own order, so each prefers another node) and data dir.
 */
export class HaDeployment {
  readonly dir = mkdtempSync(join(tmpdir(), 'kms-ha-'));
  readonly apis: HaProcess[] = [];
  readonly workers: HaProcess[] = [];
  private constructor(readonly env: Record<string, string>) {}

  static async create(env: Record<string, string>, apiUrls: string[], workerUrls: string[]): Promise<HaDeployment> {
    const d = new HaDeployment(env);
    for (const [i, url] of apiUrls.entries()) {
      d.apis.push(new HaProcess(`api${i + 1}`, DIST_MAIN, { ...env, KMS_ROLE: 'api', DATABASE_URL: url, KMS_DATA_DIR: join(d.dir, `api${i + 1}`) }, await freePort(), await freePort()));
    }
    for (const [i, url] of workerUrls.entries()) {
      d.workers.push(new HaProcess(`worker${i + 1}`, DIST_WORKER, { ...env, DATABASE_URL: url, KMS_DATA_DIR: join(d.dir, `worker${i + 1}`) }, await freePort(), await freePort()));
    }
    return d;
  }

  get all(): HaProcess[] { return [...this.apis, ...this.workers]; }

  async start(): Promise<void> {
    for (const p of this.all) p.start();
    await Promise.all(this.all.map((p) => p.ready()));
  }

  /** Every log line of every process, by process name. */
  lines(): Array<{ proc: string; line: Record<string, any> }> {
    return this.all.flatMap((p) => (p.proc ? p.proc.lines().map((line) => ({ proc: p.name, line })) : []));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.all.map((p) => p.kill()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One request as a load client saw it. */
export interface Attempt {
  op: string;
  node: string;
  at: number;
  ms: number;
  status: number;
  text?: string;
}

/** What a load run saw. */
export interface LoadReport {
  /** Failed first attempts (on the client's own node). */
  firstFailures: Attempt[];
  /** Requests that failed on the other node too: must be none. */
  failures: Attempt[];
  /** Every answer whose text says "Internal error": must be none. */
  internal: Attempt[];
  /** Acknowledged creations: volume id → when acknowledged. */
  volumes: Map<string, number>;
  /** Secrets read: volume id → base64 (the first read). */
  secrets: Map<string, string>;
  /** Secrets read again that differed from the first read. */
  changedSecrets: string[];
  /** Every job id submitted (createVolume, rotateKMSKey). */
  jobs: string[];
  /** Acknowledgement times of writes (createVolume), for the rates per window. */
  writeAcks: number[];
  /** The same by the API node that acknowledged them (first attempt or retry). */
  writeAcksByNode: Map<string, number[]>;
  /** Completed requests of any kind. */
  ok: number;
}

const isInternal = (a: ApiAnswer): boolean => /Internal error/i.test(a.raw);

/**
 * Clients that create volumes (KMS key, database provider), read their secrets and rotate keys,
 * each on its own API node, retrying once on the other node when a request fails (connection
 * refused or 5xx), as a client behind a load balancer would. Runs until stop().
 */
export class Load {
  readonly report: LoadReport = {
    firstFailures: [], failures: [], internal: [], volumes: new Map(), secrets: new Map(), changedSecrets: [], jobs: [], writeAcks: [], writeAcksByNode: new Map(), ok: 0,
  };
  #running = false;
  #loops: Promise<void>[] = [];

  constructor(private readonly apis: HaProcess[], private readonly zone: string, private readonly keys: string[], private readonly clients = 4) {}

  start(): void {
    this.#running = true;
    for (let c = 0; c < this.clients; c++) this.#loops.push(this.#loop(c));
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#loops = [];
  }

  /** One request on node `first`, once more on the next node when it fails. */
  async call(first: number, op: string, params: Params): Promise<ApiAnswer | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const api = this.apis[(first + attempt) % this.apis.length]!;
      const at = Date.now();
      let a: ApiAnswer | undefined;
      let status = 0;
      let text: string | undefined;
      try {
        a = await api.client.signed(ADMIN_KEYS, params);
        status = a.status;
        text = a.body.errortext;
      } catch (e) {
        text = e instanceof Error ? (e.cause as Error | undefined)?.message ?? e.message : String(e);
      }
      const rec: Attempt = { op, node: api.name, at, ms: Date.now() - at, status, text };
      if (a && isInternal(a)) this.report.internal.push(rec);
      if (a && a.status === 200) {
        this.report.ok++;
        if (op === 'create') {
          const acks = this.report.writeAcksByNode.get(api.name) ?? [];
          acks.push(Date.now());
          this.report.writeAcksByNode.set(api.name, acks);
        }
        return a;
      }
      if (attempt === 0) this.report.firstFailures.push(rec);
      else this.report.failures.push(rec);
    }
    return undefined;
  }

  async #loop(c: number): Promise<void> {
    let n = 0;
    const home = c % this.apis.length;
    while (this.#running) {
      n++;
      const ids = [...this.report.volumes.keys()];
      if (c === 0 && n % 40 === 0) {
        const key = this.keys[(n / 40) % this.keys.length]!;
        const a = await this.call(home, 'rotate', { command: 'rotateKMSKey', id: key });
        if (a) this.report.jobs.push(a.body.jobid);
      } else if (n % 3 === 0 && ids.length) {
        const id = ids[Math.floor(Math.random() * ids.length)]!;
        const a = await this.call(home, 'read', { command: 'getVolumeEncryptionKey', id });
        const secret = a?.body.volumeencryptionkey?.secret as string | undefined;
        if (secret) {
          const seen = this.report.secrets.get(id);
          if (seen === undefined) this.report.secrets.set(id, secret);
          else if (seen !== secret) this.report.changedSecrets.push(id);
        }
      } else {
        const key = this.keys[n % this.keys.length]!;
        const a = await this.call(home, 'create', { command: 'createVolume', name: `v${c}-${n}`, zoneid: this.zone, kmskeyid: key });
        if (a) {
          this.report.volumes.set(a.body.id, Date.now());
          this.report.writeAcks.push(Date.now());
          this.report.jobs.push(a.body.jobid);
        }
      }
    }
  }

  /** The first write acknowledged whose request started at or after `t` (a kill), or undefined. */
  firstWriteAfter(t: number, node?: string): number | undefined {
    const acks = node ? this.report.writeAcksByNode.get(node) ?? [] : this.report.writeAcks;
    return acks.filter((x) => x >= t).sort((a, b) => a - b)[0];
  }

  /** Acknowledged creations per second between two instants. */
  rate(from: number, to: number): number {
    return this.report.writeAcks.filter((x) => x >= from && x < to).length / Math.max(0.001, (to - from) / 1000);
  }
}

/** Creates the zone, enables the database profile and makes `n` KMS keys, through one API node. */
export async function seedKeys(api: HaProcess, n: number): Promise<{ zone: string; keys: string[] }> {
  const call = async (p: Params) => {
    const a = await api.client.signed(ADMIN_KEYS, p);
    if (a.status !== 200) throw new Error(`${p.command}: ${a.status} ${a.raw}`);
    return a.body;
  };
  const zone = (await call({ command: 'createZone', name: `z-${randomBytes(3).toString('hex')}` })).zone.id;
  const profile = (await call({ command: 'listHSMProfiles', name: 'default', listall: true })).hsmprofile[0];
  await call({ command: 'updateHSMProfile', id: profile.id, enabled: true });
  const keys: string[] = [];
  for (let i = 0; i < n; i++) keys.push((await call({ command: 'createKMSKey', name: `k${i}`, zoneid: zone, hsmprofileid: profile.id })).kmskey.id);
  return { zone, keys };
}

/** Waits until every job is final (jobstatus 1 or 2); returns those still pending after `timeoutMs`, and the failed ones. */
export async function settleJobs(api: HaProcess, jobs: string[], timeoutMs: number): Promise<{ pending: string[]; failed: Array<{ id: string; result: unknown }> }> {
  const end = Date.now() + timeoutMs;
  let pending = [...new Set(jobs)];
  const failed: Array<{ id: string; result: unknown }> = [];
  while (pending.length && Date.now() < end) {
    const still: string[] = [];
    for (const id of pending) {
      const a = await api.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult', jobid: id }).catch(() => undefined);
      const st = a?.status === 200 ? Number(a.body.jobstatus) : 0;
      if (st === 0) still.push(id);
      else if (st === 2) failed.push({ id, result: a!.body.jobresult });
    }
    pending = still;
    if (pending.length) await sleep(500);
  }
  return { pending, failed };
}
