import { Redis } from 'ioredis';
import { isKmsError, KmsError } from '../core/errors';
import type { Logger } from '../core/logger';
import type { Repositories } from '../db/repositories';
import type { HsmProfile, HsmProfiles } from '../kms/hsm-profiles';
import type { ProviderKind } from '../providers/provider';
import type { ProviderRegistry } from '../providers/registry';
import { redisConnectionOptions, type RedisTarget } from '../config/redis';

/** What readiness asks: the database (through its repository), the KEK backends and profiles, Redis when configured. */
export interface HealthDeps {
  readonly repos: Pick<Repositories, 'opsState'>;
  readonly providers: Pick<ProviderRegistry, 'get' | 'isDegraded'>;
  readonly profiles: Pick<HsmProfiles, 'enabled' | 'configFor'>;
  /** REDIS_URL, when the job queue uses Redis. */
  readonly redisUrl?: string;
  /** The job queue's Redis (URL or Sentinel); wins over redisUrl. */
  readonly redis?: RedisTarget;
  readonly logger: Logger;
}

/** One readiness check: a component and whether it answered in time. Never carries a secret. */
export interface Check {
  name: string;
  status: 'up' | 'down';
  /** Why it is down, in a few words (an error kind or code such as ECONNREFUSED, or a timeout); details go to the server log. */
  reason?: string;
}

/** The /readyz body. */
export interface Readiness {
  status: 'ready' | 'not ready' | 'shutting down';
  checks: Check[];
  /** Names of the checks that are down. */
  down: string[];
}

class CheckTimeout extends Error {}

function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new CheckTimeout()), ms); });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Liveness and readiness of this process. Readiness asks the database (a query), the migrations
 * (none pending), Redis when REDIS_URL is set (PING), and every enabled HSM profile (a session can
 * be opened: the provider's probe), each within `timeoutMs`. A probe still running from an earlier
 * call is awaited again rather than started twice. Status changes are logged with their cause.
 */
/** How long one measured readiness answers /readyz. */
const READINESS_REUSE_MS = 1000;

export class Health {
  #redis?: Redis;
  #draining = false;
  #lastReadiness: { value: Readiness; at: number } | undefined;
  #pendingReadiness: Promise<Readiness> | undefined;
  readonly #probes = new Map<string, Promise<void>>();
  readonly #last = new Map<string, string>();

  constructor(private readonly deps: HealthDeps, private readonly timeoutMs: number) {}

  /** From now on readiness answers 503 "shutting down", so load balancers stop sending requests. */
  startDraining(): void {
    this.#draining = true;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /**
   * The readiness of this process. Answers are reused for a second (and one check runs at a time),
   * so a flood of unauthenticated /readyz requests costs the database and the HSMs one probe a second.
   */
  async readiness(): Promise<Readiness> {
    const fresh = this.#lastReadiness && Date.now() - this.#lastReadiness.at < READINESS_REUSE_MS;
    if (fresh && !this.#draining) return this.#lastReadiness!.value;
    this.#pendingReadiness ??= this.#measure().then((value) => {
      this.#lastReadiness = { value, at: Date.now() };
      return value;
    }).finally(() => { this.#pendingReadiness = undefined; });
    const value = await this.#pendingReadiness;
    return this.#draining ? { ...value, status: 'shutting down' } : value;
  }

  async #measure(): Promise<Readiness> {
    const checks = await Promise.all([
      this.#check('database', () => this.deps.repos.opsState.ping()),
      this.#check('migrations', async () => {
        const pending = await this.deps.repos.opsState.pendingMigrations();
        if (pending) throw new Error(`${pending} pending`);
      }),
      ...(this.#redisTarget() ? [this.#check('redis', () => this.#pingRedis())] : []),
      ...(await this.#hsmChecks()),
    ]);
    const down = checks.filter((c) => c.status === 'down').map((c) => c.name);
    const status = this.#draining ? 'shutting down' : down.length ? 'not ready' : 'ready';
    return { status, checks, down };
  }

  async close(): Promise<void> {
    this.#redis?.disconnect();
    this.#redis = undefined;
  }

  /** PING, after waiting for the connection when it is (re)connecting; the caller bounds the wait. */
  async #pingRedis(): Promise<void> {
    const r = this.#redisClient();
    if (r.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error) => {
          r.off('ready', done);
          r.off('error', done);
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        };
        const timer = setTimeout(() => done(new Error('not connected')), this.timeoutMs);
        r.on('ready', done);
        r.on('error', done);
      });
    }
    await r.ping();
  }

  #redisTarget(): RedisTarget | undefined {
    return this.deps.redis ?? (this.deps.redisUrl ? { kind: 'url', url: this.deps.redisUrl } : undefined);
  }

  #redisClient(): Redis {
    if (!this.#redis) {
      const target = this.#redisTarget()!;
      const opts = {
        lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: this.timeoutMs,
        retryStrategy: (n: number) => Math.min(n * 200, 2000),
      };
      // Through Sentinel: the primary the sentinels name now (a replica answers PING too, so it
      // would not tell that writes fail).
      this.#redis = target.kind === 'url' ? new Redis(target.url, opts) : new Redis(redisConnectionOptions(target, opts) as never);
      this.#redis.on('error', () => undefined); // the check reports it; ioredis reconnects by itself
    }
    return this.#redis;
  }

  async #hsmChecks(): Promise<Array<Promise<Check>>> {
    let rows: HsmProfile[];
    try {
      rows = await this.deps.profiles.enabled();
    } catch {
      return []; // not swallowed: the database check, run in the same measurement, reports the outage
    }
    return rows.map((row) => this.#check(`hsm:${row.name}`, () => this.#probe(row)));
  }

  #probe(row: HsmProfile): Promise<void> {
    let p = this.#probes.get(row.uuid);
    if (!p) {
      p = (async () => {
        // A profile whose circuit is open is down until the circuit's own probe closes it.
        if (this.deps.providers.isDegraded(row.uuid)) throw new KmsError('unavailable', `HSM profile ${row.name} is Degraded (its circuit is open)`);
        const config = await this.deps.profiles.configFor(row.id);
        await this.deps.providers.get(row.protocol as ProviderKind).probe(config);
      })().finally(() => this.#probes.delete(row.uuid));
      this.#probes.set(row.uuid, p);
    }
    return p;
  }

  async #check(name: string, run: () => Promise<void>): Promise<Check> {
    let check: Check;
    let detail: string | undefined;
    try {
      await within(this.timeoutMs, run());
      check = { name, status: 'up' };
    } catch (e) {
      const code = (e as { code?: unknown })?.code;
      const reason = e instanceof CheckTimeout ? `no answer within ${this.timeoutMs} ms`
        : isKmsError(e) ? e.kind
        : typeof code === 'string' && /^[A-Z_]+$/.test(code) ? code : 'error';
      detail = e instanceof Error ? e.message : String(e);
      check = { name, status: 'down', reason };
    }
    if (this.#last.get(name) !== check.status) {
      if (this.#last.has(name) || check.status === 'down') {
        const log = check.status === 'up' ? this.deps.logger.info : this.deps.logger.warn;
        log(`readiness: ${name} is ${check.status}`, { check: name, reason: check.reason, error: detail });
      }
      this.#last.set(name, check.status);
    }
    return check;
  }
}
