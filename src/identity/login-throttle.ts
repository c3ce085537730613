import { createHash } from 'node:crypto';
import type { Clock } from '../core/clock';
import type { Repositories } from '../db/repositories';

/** The kms.login.throttle.* settings, read at each login. */
export interface ThrottlePolicy {
  /** Attempts per user answered at full speed; then each one waits (0: users are not throttled). */
  userAttempts: number;
  /** The same per client address (0: addresses are not throttled). */
  addressAttempts: number;
  /** The wait after the first slowed attempt, doubled with each further failure, in ms. */
  delayMs: number;
  /** The longest wait, in ms. */
  maxDelayMs: number;
  /** Failures are forgotten after this long without one, in ms. */
  windowMs: number;
}

/** One key of an attempt: what it throttles and how many attempts it lets through at full speed. */
export interface ThrottleKey {
  key: string;
  free: number;
}

/** An attempt is checked (`admitted`), or refused unchecked until `until` (epoch ms). */
export type ThrottleVerdict =
  | { admitted: true; keys: ThrottleKey[] }
  | { admitted: false; until: number; by: 'user' | 'address' };

const hashed = (s: string) => createHash('sha256').update(s).digest('hex');

/** The throttle key of an existing user (so enableUser can clear it). */
export const userThrottleKey = (userId: number): string => hashed(`user-id:${userId}`);
/** The throttle key of a username that names no user: throttled exactly as an existing one. */
export const nameThrottleKey = (domain: string, username: string): string => hashed(`user-name:${domain}:${username.toLowerCase()}`);
export const addressThrottleKey = (address: string): string => hashed(`address:${address}`);

/** How many rounds an attempt tries (a row inserted or restarted by another attempt meanwhile) before it is refused as contended. */
const ROUNDS = 8;
/** Rows idle past the window are pruned at most this often per process. */
const PRUNE_EVERY_MS = 60_000;

/**
 * Login throttling, shared by every API node through the database. Each attempt is counted as a
 * failure *before* its password is checked (one conditional statement per key, so concurrent
 * attempts from any number of clients and nodes never get more checks than the rule allows); a
 * correct password then takes its count back. Per key, the first `free` attempts within the
 * window are checked at once; after that the key waits `delayMs`, doubled with each further
 * failure up to `maxDelayMs`, and an attempt during the wait is refused without a check and
 * without being counted, so the wait never grows while someone hammers, and the right password
 * after the wait works. Memory is bounded: one fixed-size row per key that failed within the window.
 */
export class LoginThrottle {
  #lastPrune = 0;

  constructor(private readonly repos: Pick<Repositories, 'loginThrottle'>, private readonly clock: Clock) {}

  now(): number {
    return this.clock.now();
  }

  /** Admits one attempt under every key in order (the client address first), or says until when it must wait. */
  async admit(keys: Array<ThrottleKey & { kind: 'user' | 'address' }>, policy: ThrottlePolicy): Promise<ThrottleVerdict> {
    const taken: ThrottleKey[] = [];
    for (const k of keys) {
      if (k.free <= 0) continue;
      const r = await this.#take(k, policy);
      if (r !== true) {
        for (const t of taken) await this.#giveBack(t);
        return { admitted: false, until: r, by: k.kind };
      }
      taken.push(k);
    }
    void this.#pruneIfDue(policy);
    return { admitted: true, keys: taken };
  }

  /** The attempt's password was right: the user's failures are forgotten, the address gets its count back. */
  async succeeded(verdict: ThrottleVerdict, userKey: string): Promise<void> {
    if (!verdict.admitted) return;
    for (const k of verdict.keys) {
      if (k.key === userKey) await this.repos.loginThrottle.remove(k.key);
      else await this.#giveBack(k);
    }
  }

  /** Wait after `failures` counted failures of a key letting `free` through (the `free`th failure starts the waits). */
  static waitAfter(failures: number, free: number, policy: ThrottlePolicy): number {
    if (failures < free) return 0;
    return Math.min(policy.maxDelayMs, policy.delayMs * 2 ** Math.min(failures - free, 30));
  }

  /** Counts one failure in advance: true, or the time before which the key must wait. */
  async #take(k: ThrottleKey, policy: ThrottlePolicy): Promise<true | number> {
    const repo = this.repos.loginThrottle;
    for (let round = 0; round < ROUNDS; round++) {
      const now = this.clock.now();
      await repo.restartIfIdle(k.key, now - policy.windowMs);
      if (await repo.countFailure(k.key, now, k.free, now + policy.maxDelayMs)) {
        const row = await repo.get(k.key);
        if (row && row.failures >= k.free && row.nextAllowed > now) await repo.setWait(k.key, row.failures, now + LoginThrottle.waitAfter(row.failures, k.free, policy));
        return true;
      }
      const seen = await repo.get(k.key);
      if (seen && seen.nextAllowed > now) return seen.nextAllowed;
      if (!seen) {
        const wait = LoginThrottle.waitAfter(1, k.free, policy);
        if (await repo.insert(k.key, { failures: 1, nextAllowed: wait ? now + wait : 0, lastFailure: now })) return true;
      }
    }
    return this.clock.now() + 1000; // contended by many attempts at once: this one waits a second
  }

  /** Takes back the failure counted in advance (the password was right, or another key refused the attempt). */
  async #giveBack(k: ThrottleKey): Promise<void> {
    await this.repos.loginThrottle.uncount(k.key, k.free);
  }

  async #pruneIfDue(policy: ThrottlePolicy): Promise<void> {
    const now = this.clock.now();
    if (now - this.#lastPrune < PRUNE_EVERY_MS) return;
    this.#lastPrune = now;
    await this.repos.loginThrottle.prune(now - policy.windowMs).catch(() => undefined);
  }
}
