import type { Knex } from 'knex';
import { createConnection, type Connection } from 'mysql2';
import { KmsError } from '../core/errors';
import type { Logger } from '../core/logger';

/** One MySQL/MariaDB server of DATABASE_URL. */
export interface DbHost {
  host: string;
  port: number;
}

/** DATABASE_URL split: its hosts (first preferred) and the rest of the connection. */
export interface MysqlUrl {
  hosts: DbHost[];
  user: string;
  password: string;
  database: string;
}

/**
 * Parses `mysql://user:password@h1:3306,h2:3306,h3/kms`: one host or several separated by commas
 * (the form of MariaDB Connector/J's failover URLs). `new URL` refuses the comma list, so the
 * authority is split here and each host checked alone.
 */
export function parseMysqlUrl(raw: string): MysqlUrl {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?/i.exec(raw);
  if (!m) throw new Error('DATABASE_URL must look like mysql://user:password@host:3306/kms');
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'mysql' && scheme !== 'mariadb') throw new Error(`DATABASE_URL must start with mysql:// (got ${scheme}://)`);
  const [userPart = '', ...passParts] = (m[2] ?? '').split(':');
  const hosts = (m[3] ?? '').split(',').map((h) => h.trim()).filter(Boolean).map((h) => {
    const u = new URL(`mysql://${h}`);
    if (!u.hostname) throw new Error(`DATABASE_URL has an empty host in ${m[3]}`);
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 3306) };
  });
  if (!hosts.length) throw new Error('DATABASE_URL names no host');
  return {
    hosts,
    user: decodeURIComponent(userPart || 'root'),
    password: decodeURIComponent(passParts.join(':')),
    database: decodeURIComponent((m[4] ?? '').replace(/^\//, '')) || 'kms',
  };
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_SERVER_SHUTDOWN', 'ER_CON_COUNT_ERROR',
]);
/** MySQL errors of a server that is up but may not serve: 1047 WSREP not prepared, 1053 shutdown, 2013 lost. */
const NODE_NOT_READY_ERRNOS = new Set([1047, 1053, 2006, 2013]);
/** Errors after which the whole transaction may simply run again: deadlock / Galera certification, lock wait. */
const CONFLICT_ERRNOS = new Set([1213, 1205]);

const errnoOf = (e: unknown): number | undefined => {
  const n = (e as { errno?: unknown })?.errno;
  return typeof n === 'number' ? n : undefined;
};
const codeOf = (e: unknown): string | undefined => {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : undefined;
};

/** A connection-level failure (the host died, refused, is not a synced cluster member). */
export function isConnectionError(e: unknown): boolean {
  if (e instanceof DatabaseUnavailableError) return true;
  const code = codeOf(e);
  if (code && CONNECTION_CODES.has(code)) return true;
  const errno = errnoOf(e);
  if (errno !== undefined && NODE_NOT_READY_ERRNOS.has(errno)) return true;
  if ((e as { fatal?: unknown })?.fatal === true) return true;
  // A pool acquire timeout (KnexTimeoutError) is not here: every connection busy is not a host outage.
  return e instanceof Error && /Connection lost|Can't add new command when connection is in closed state/.test(e.message);
}

/** A transaction conflict: deadlock, Galera certification failure (both 1213), lock-wait timeout (1205). */
export function isConflictError(e: unknown): boolean {
  const errno = errnoOf(e) ?? errnoOf((e as { cause?: unknown })?.cause);
  return errno !== undefined && CONFLICT_ERRNOS.has(errno);
}

/**
 * No database host answers (or the one in use died mid-call). A 530 to clients ("database
 * unavailable"), never an "Internal error", and logged once per outage by the host selector.
 */
export class DatabaseUnavailableError extends KmsError {
  constructor(readonly code: string | undefined, cause?: unknown, readonly duringCommit = false) {
    super('unavailable', 'database unavailable; try again shortly', { cause });
  }
}

/** A transaction that still conflicted after every retry: a 530 asking to try again. */
export class DatabaseBusyError extends KmsError {
  constructor(attempts: number, cause?: unknown) {
    super('unavailable', `database busy: the transaction conflicted with concurrent writes ${attempts} times; try again`, { cause });
  }
}

/** No pooled connection came free in time (knex's acquire timeout): the host is busy, not down. A 530, not retried. */
export class DatabasePoolTimeoutError extends KmsError {
  constructor(cause?: unknown) {
    super('unavailable', 'database busy: no database connection came free in time; try again', { cause });
  }
}

const PROBE_TIMEOUT_MS = 1500;
const RECHECK_MS = 2000;

type HostState = 'up' | 'down';

/**
 * The host a process's pool uses. The first host of DATABASE_URL is preferred; when the pool sees
 * a connection failure on the host in use, the hosts are probed in order (a fresh connection,
 * `SELECT 1`, and on Galera `wsrep_ready`) and new connections go to the first that answers;
 * connections to any other host are dropped at their next use. While a less preferred host (or
 * none) is in use, the preferred ones are probed every 2 s and the pool moves back. Changes are
 * logged once each: `database host … is down`, `no database host answers`, `database host … in use`.
 */
export class HostSelector {
  #current = 0;
  #state: HostState = 'up';
  #switching: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly url: MysqlUrl,
    private readonly apply: (h: DbHost) => void,
    private readonly logger?: Logger,
    /** The host the pool starts on (openDb's first live one); the preferred one when absent. */
    startOn?: DbHost,
  ) {
    const i = startOn ? url.hosts.findIndex((h) => h.host === startOn.host && h.port === startOn.port) : 0;
    this.#current = Math.max(0, i);
    this.#schedule();
  }

  get hosts(): readonly DbHost[] { return this.url.hosts; }
  get current(): DbHost { return this.url.hosts[this.#current]!; }
  /** False while no host answers. */
  get available(): boolean { return this.#state === 'up'; }

  /** Whether a pooled connection to `host:port` may still be used. */
  isCurrent(host: string | undefined, port: number | undefined): boolean {
    const c = this.current;
    return this.#state === 'up' && host === c.host && Number(port) === c.port;
  }

  /** Reports a failure seen on a connection; starts a switch when it is a connection-level one. */
  reportFailure(e: unknown): Promise<void> {
    if (!isConnectionError(e) || this.#closed) return Promise.resolve();
    return this.#switch(`${codeOf(e) ?? errnoOf(e) ?? (e instanceof Error ? e.message.split('\n')[0] : 'error')}`);
  }

  /** Resolves when a switch in progress ended (retries wait for it). */
  settled(): Promise<void> {
    return this.#switching ?? Promise.resolve();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #switch(reason: string): Promise<void> {
    this.#switching ??= (async () => {
      const before = this.current;
      const wasUp = this.#state === 'up';
      const found = await this.#firstLive();
      if (found === undefined) {
        if (wasUp) this.logger?.error('no database host answers; requests answer 530 "database unavailable" until one does', { hosts: this.#names(), reason });
        this.#state = 'down';
      } else {
        if (found !== this.#current || !wasUp) {
          if (wasUp) this.logger?.warn('database host is down; moving to the next', { down: `${before.host}:${before.port}`, reason });
          this.#use(found);
        }
      }
      this.#schedule();
    })().finally(() => { this.#switching = undefined; });
    return this.#switching;
  }

  #use(i: number): void {
    const wasUp = this.#state === 'up';
    const moved = i !== this.#current;
    this.#current = i;
    this.#state = 'up';
    this.apply(this.current);
    if (moved || !wasUp) this.logger?.warn('database host in use', { host: `${this.current.host}:${this.current.port}`, preferred: i === 0 });
  }

  /** While not on the preferred host (or on none), look for a better one every RECHECK_MS. */
  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed || (this.#current === 0 && this.#state === 'up')) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#switching) return this.#schedule();
      this.#switching = (async () => {
        const limit = this.#state === 'up' ? this.#current : this.url.hosts.length;
        const found = await this.#firstLive(limit);
        if (found !== undefined) this.#use(found);
        this.#schedule();
      })().finally(() => { this.#switching = undefined; });
    }, RECHECK_MS);
    this.#timer.unref();
  }

  async #firstLive(limit = this.url.hosts.length): Promise<number | undefined> {
    for (let i = 0; i < limit; i++) {
      if (await probeHost(this.url, this.url.hosts[i]!)) return i;
    }
    return undefined;
  }

  #names(): string { return this.url.hosts.map((h) => `${h.host}:${h.port}`).join(','); }
}

/** The first host of the URL that answers, in order; undefined when none does. */
export async function firstLiveHost(url: MysqlUrl): Promise<DbHost | undefined> {
  for (const h of url.hosts) if (await probeHost(url, h)) return h;
  return undefined;
}

/** Whether a host accepts a connection and, on Galera, is a ready member in state Synced (4). */
export async function probeHost(url: MysqlUrl, h: DbHost): Promise<boolean> {
  let conn: Connection | undefined;
  try {
    conn = createConnection({ host: h.host, port: h.port, user: url.user, password: url.password, connectTimeout: PROBE_TIMEOUT_MS });
    conn.on('error', () => undefined);
    const c = conn;
    // wsrep_ready is OFF on a server built with wsrep but running without it: ask wsrep_on first.
    const rows = await new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('probe timed out')), PROBE_TIMEOUT_MS);
      c.query("SELECT @@GLOBAL.wsrep_on AS w, (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_READY') AS r, (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE') AS s", (err, r) => {
        clearTimeout(t);
        if (!err) return resolve(r as Array<Record<string, unknown>>);
        // MySQL has no wsrep_on (nor this view): a server that answers is ready.
        if ((err as { errno?: number }).errno === 1193 || (err as { errno?: number }).errno === 1109) return resolve([{ w: 0 }]);
        reject(err);
      });
    });
    const row = rows[0] ?? {};
    // A Galera node must be ready and Synced (wsrep_local_state 4): a joiner or a donor lags behind.
    return Number(row.w) !== 1 || (row.r === 'ON' && String(row.s) === '4');
  } catch {
    return false;
  } finally {
    conn?.destroy();
  }
}

const selectors = new WeakMap<object, HostSelector>();

/** The selector of a knex instance (or a transaction of it: both share the client's config); undefined on SQLite. */
export function selectorOf(db: Knex | Knex.Transaction): HostSelector | undefined {
  return selectors.get(db.client.config);
}

type QueryFn = (this: Knex.Client, conn: unknown, obj: string | { sql?: string }) => Promise<unknown>;
const PATCHED = Symbol('kms.cluster.query');

/**
 * Makes a mysql2 knex instance follow `selector`: new connections go to its current host, pooled
 * ones to another host are dropped (poolHooks), and a connection failure of any acquire or query,
 * transactions' included, is reported to the selector and thrown as DatabaseUnavailableError (a
 * 530 "database unavailable", not an internal error, and no stack in the log).
 */
export function attachSelector(db: Knex, selector: HostSelector): void {
  const client = db.client as Knex.Client & { acquireConnection(): Promise<unknown> };
  selectors.set(client.config, selector);
  const acquire = client.acquireConnection.bind(client);
  client.acquireConnection = async () => {
    if (!selector.available) {
      await selector.reportFailure(new DatabaseUnavailableError('NO_HOST'));
      if (!selector.available) throw new DatabaseUnavailableError('NO_HOST');
    }
    try {
      return await acquire();
    } catch (e) {
      if (e instanceof Error && e.name === 'KnexTimeoutError') throw new DatabasePoolTimeoutError(e);
      if (!isConnectionError(e)) throw e;
      await selector.reportFailure(e);
      throw e instanceof DatabaseUnavailableError ? e : new DatabaseUnavailableError(codeOf(e), e);
    }
  };
  // Transactions run their queries on a client made from the same prototype, so the prototype's
  // query is wrapped once; it only acts for clients whose config has a selector.
  const proto = Object.getPrototypeOf(client) as { query: QueryFn; [PATCHED]?: true };
  if (!proto[PATCHED]) {
    const query = proto.query;
    proto.query = async function (this: Knex.Client, conn, obj) {
      try {
        return await query.call(this, conn, obj);
      } catch (e) {
        const s = selectors.get(this.config);
        if (!s || !isConnectionError(e) || e instanceof DatabaseUnavailableError) throw e;
        (conn as { __knex__disposed?: unknown }).__knex__disposed = e;
        await s.reportFailure(e);
        throw new DatabaseUnavailableError(codeOf(e) ?? String(errnoOf(e) ?? ''), e, /^\s*commit/i.test((typeof obj === 'string' ? obj : obj?.sql) ?? ''));
      }
    };
    proto[PATCHED] = true;
  }
  // knex's destroy() is the client's: stop the selector's timer with it.
  const c = client as unknown as { destroy(cb?: unknown): Promise<void> };
  const destroy = c.destroy.bind(client);
  c.destroy = (cb?: unknown) => {
    selector.close();
    return destroy(cb);
  };
}

/** Pool hooks for a selector: drop connections to another host; on Galera, causal reads. */
export function poolHooks(selector: () => HostSelector | undefined): { afterCreate: (conn: Connection, done: (err: Error | null, conn: unknown) => void) => void; validate: (conn: Connection) => boolean } {
  return {
    afterCreate: (conn, done) => {
      conn.query('SELECT @@wsrep_on AS w', (err, rows) => {
        const on = !err && Array.isArray(rows) && Number((rows as Array<{ w: unknown }>)[0]?.w) === 1;
        if (!on) return done(null, conn);
        conn.query('SET SESSION wsrep_sync_wait = 1', (e2) => done(e2 ?? null, conn));
      });
    },
    validate: (conn) => {
      const s = selector();
      return !s || s.isCurrent(conn.config.host, conn.config.port);
    },
  };
}
