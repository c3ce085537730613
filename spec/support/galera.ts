import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import knexFactory, { type Knex } from 'knex';

/** Whether this machine can run a local Galera cluster (Debian: mariadb-server, galera-4, mariadb-backup). */
export const GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so';
export function galeraMissing(): string | undefined {
  for (const [what, path] of [['galera-4', GALERA_PROVIDER], ['mariadb-server', '/usr/sbin/mariadbd'], ['mariadb-backup', '/usr/bin/mariabackup']] as const) {
    if (!existsSync(path)) return `${what} is not installed (${path} missing)`;
  }
  return undefined;
}

export const freePort = (): Promise<number> => new Promise((resolve, reject) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const port = (s.address() as { port: number }).port;
    s.close(() => resolve(port));
  }).on('error', reject);
});

const QUIET = { warn: () => undefined, error: () => undefined, debug: () => undefined, deprecate: () => undefined };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One MariaDB Galera node on private ports, its datadir under the cluster's temp dir. */
/** SIGKILL to a detached child's process group (helpers included); nothing if it is already gone. */
export function killGroup(p: ChildProcess): void {
  if (p.pid === undefined) return;
  try { process.kill(-p.pid, 'SIGKILL'); } catch { /* the group is gone */ }
}

export class GaleraNode {
  proc?: ChildProcess;
  constructor(
    readonly index: number,
    readonly dir: string,
    readonly port: number,
    readonly gcommPort: number,
    readonly istPort: number,
    readonly sstPort: number,
  ) {}

  get host(): string { return `127.0.0.1:${this.port}`; }
  get cnf(): string { return join(this.dir, 'my.cnf'); }
  get running(): boolean { return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null; }

  /** Starts mariadbd (the first node of a new cluster with --wsrep-new-cluster). */
  start(opts: { newCluster?: boolean } = {}): void {
    const args = [`--defaults-file=${this.cnf}`, '--user=root', ...(opts.newCluster ? ['--wsrep-new-cluster'] : [])];
    // Its own process group, so kill() also ends the SST helpers it starts (wsrep_sst_mariabackup,
    // socat, mariabackup), which would otherwise outlive it.
    this.proc = spawn('/usr/sbin/mariadbd', args, { stdio: 'ignore', detached: true });
  }

  /** SIGKILL to the node's whole process group: the node dies at once, as in a crash, with its helpers. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    const exited = this.running ? new Promise<void>((resolve) => p.once('exit', () => resolve())) : Promise.resolve();
    killGroup(p);
    await exited;
  }

  /** SIGTERM and wait. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
      p.once('exit', () => { clearTimeout(t); resolve(); });
      p.kill('SIGTERM');
    });
    killGroup(p);
  }

  /** The node's wsrep status values (undefined when it does not answer). */
  async status(): Promise<Record<string, string> | undefined> {
    const k = knexFactory({ client: 'mysql2', connection: { host: '127.0.0.1', port: this.port, user: 'root', password: '', connectTimeout: 1000 }, pool: { min: 0, max: 1 }, log: QUIET });
    try {
      const [rows] = (await k.raw("SHOW STATUS LIKE 'wsrep_%'")) as unknown as [Array<{ Variable_name: string; Value: string }>];
      return Object.fromEntries(rows.map((r) => [r.Variable_name, r.Value]));
    } catch {
      return undefined;
    } finally {
      await k.destroy();
    }
  }

  /** Waits until the node is a synced member of a primary component of `size` nodes. */
  async waitSynced(size: number, timeoutMs = 120_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.status();
      if (s?.wsrep_ready === 'ON' && s.wsrep_local_state_comment === 'Synced' && Number(s.wsrep_cluster_size) >= size) return;
      if (this.proc && !this.running) throw new Error(`galera node ${this.index} exited: ${this.errorLog()}`);
      if (Date.now() > end) throw new Error(`galera node ${this.index} not synced within ${timeoutMs} ms (${JSON.stringify(s && { ready: s.wsrep_ready, state: s.wsrep_local_state_comment, size: s.wsrep_cluster_size })}): ${this.errorLog()}`);
      await sleep(250);
    }
  }

  errorLog(): string {
    const f = join(this.dir, 'error.log');
    return existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(-15).join('\n') : '(no error log)';
  }
}

/**
 * A 3-node MariaDB Galera cluster on one machine, on private ports, with datadirs under /tmp:
 * each datadir made by mariadb-install-db (root without password, as the shared test server), the
 * first node started with --wsrep-new-cluster, the others joining by state transfer with
 * mariabackup (rsync's daemon drops to `nobody` and cannot write a root-owned datadir). Timeouts are
 * short so that a killed node leaves the cluster's view within a few seconds.
 */
export class GaleraCluster {
  private constructor(readonly dir: string, readonly nodes: GaleraNode[]) {}

  static async start(size = 3): Promise<GaleraCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'kms-galera-'));
    const nodes: GaleraNode[] = [];
    for (let i = 0; i < size; i++) {
      nodes.push(new GaleraNode(i + 1, join(dir, `n${i + 1}`), await freePort(), await freePort(), await freePort(), await freePort()));
    }
    const cluster = new GaleraCluster(dir, nodes);
    const gcomm = nodes.map((n) => `127.0.0.1:${n.gcommPort}`).join(',');
    for (const n of nodes) {
      mkdirSync(join(n.dir, 'data'), { recursive: true });
      writeFileSync(n.cnf, [
        '[mysqld]',
        `datadir=${join(n.dir, 'data')}`,
        `socket=${join(n.dir, 'mysqld.sock')}`,
        `pid-file=${join(n.dir, 'mysqld.pid')}`,
        `log-error=${join(n.dir, 'error.log')}`,
        `port=${n.port}`,
        'bind-address=127.0.0.1',
        'skip-name-resolve',
        'binlog_format=ROW',
        'default_storage_engine=InnoDB',
        'innodb_autoinc_lock_mode=2',
        'innodb_buffer_pool_size=64M',
        'innodb_flush_log_at_trx_commit=2',
        'innodb_lock_wait_timeout=10',
        'max_connections=200',
        'wsrep_on=ON',
        `wsrep_provider=${GALERA_PROVIDER}`,
        'wsrep_cluster_name=kms-chaos',
        `wsrep_cluster_address=gcomm://${gcomm}`,
        `wsrep_node_name=n${n.index}`,
        `wsrep_node_address=127.0.0.1:${n.gcommPort}`,
        `wsrep_node_incoming_address=127.0.0.1:${n.port}`,
        `wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:${n.gcommPort};ist.recv_addr=127.0.0.1:${n.istPort};gcache.size=64M;evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT3S;evs.install_timeout=PT3S"`,
        'wsrep_sst_method=mariabackup',
        'wsrep_sst_auth=root:',
        `wsrep_sst_receive_address=127.0.0.1:${n.sstPort}`,
        'wsrep_slave_threads=2',
        '',
      ].join('\n'));
      execFileSync('/usr/bin/mariadb-install-db', [`--defaults-file=${n.cnf}`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db'], { stdio: 'ignore' });
    }
    try {
      nodes[0]!.start({ newCluster: true });
      await nodes[0]!.waitSynced(1);
      // Joiners one at a time: each takes a full state transfer from a donor.
      for (const n of nodes.slice(1)) {
        n.start();
        await n.waitSynced(1);
      }
      await nodes[0]!.waitSynced(size);
    } catch (e) {
      await cluster.destroy();
      throw e;
    }
    return cluster;
  }

  /** `mysql://root@h1,h2,h3` in the given node order (first preferred). */
  url(order: number[] = this.nodes.map((_, i) => i), database = 'kms'): string {
    return `mysql://root@${order.map((i) => this.nodes[i]!.host).join(',')}/${database}`;
  }

  /** A knex connection to one node. */
  connect(i: number, database?: string): Knex {
    const n = this.nodes[i]!;
    return knexFactory({ client: 'mysql2', connection: { host: '127.0.0.1', port: n.port, user: 'root', password: '', database }, pool: { min: 0, max: 2 }, log: QUIET });
  }

  /** Restarts a killed node (it rejoins by IST or SST) and waits until it is synced. */
  async restart(i: number): Promise<void> {
    const n = this.nodes[i]!;
    n.start();
    await n.waitSynced(this.nodes.length);
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.kill()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A plain MariaDB server (no wsrep) on a private port with its datadir under /tmp, for tests that
 * stop and restart the database itself without touching the shared one.
 */
export class PrivateMariaDb {
  private constructor(readonly node: GaleraNode) {}

  static async start(): Promise<PrivateMariaDb> {
    const dir = mkdtempSync(join(tmpdir(), 'kms-mariadb-'));
    const n = new GaleraNode(1, dir, await freePort(), 0, 0, 0);
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(n.cnf, [
      '[mysqld]', `datadir=${join(dir, 'data')}`, `socket=${join(dir, 'mysqld.sock')}`, `pid-file=${join(dir, 'mysqld.pid')}`,
      `log-error=${join(dir, 'error.log')}`, `port=${n.port}`, 'bind-address=127.0.0.1', 'skip-name-resolve', 'innodb_buffer_pool_size=32M',
      'innodb_flush_log_at_trx_commit=2', 'wsrep_on=OFF', '',
    ].join('\n'));
    execFileSync('/usr/bin/mariadb-install-db', [`--defaults-file=${n.cnf}`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db'], { stdio: 'ignore' });
    const db = new PrivateMariaDb(n);
    await db.start();
    return db;
  }

  get url(): string { return `mysql://root@${this.node.host}/kms`; }

  /** Starts the server and waits until it answers. */
  async start(): Promise<void> {
    this.node.start();
    const end = Date.now() + 60_000;
    while (!(await this.node.status())) {
      if (!this.node.running) throw new Error(`mariadbd exited: ${this.node.errorLog()}`);
      if (Date.now() > end) throw new Error(`mariadbd did not answer: ${this.node.errorLog()}`);
      await sleep(200);
    }
  }

  async kill(): Promise<void> { await this.node.kill(); }

  async destroy(): Promise<void> {
    await this.node.kill();
    rmSync(this.node.dir, { recursive: true, force: true });
  }
}
