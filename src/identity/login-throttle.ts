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
  /** The next_allowed this attempt's count set (so a give-back can undo a wait it started). */
  setTo?: number;
}

/** The keys of one attempt: its (user, address) pair, its user, its client address. */
export interface AttemptKeys {
  pair: string;
  user: string;
  address: string;
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
/** The throttle key of one (user, client address) pair: it begins with `userPairsPrefix` of the user's key, so a user's pairs can be cleared together. */
export const pairThrottleKey = (userKey: string, address: string): string => userPairsPrefix(userKey) + hashed(`pair:${userKey}:${address}`).slice(0, 32);
/** What the keys of a user's pairs (and the user's own key) begin with. */
export const userPairsPrefix = (userKey: string): string => userKey.slice(0, 32);

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
 * without being counted. Keys: the (user, address) pair and the address (each counted for every
 * attempt), and the user. An attempt is checked when (a) its pair is not waiting, (b) its address
 * is not waiting, and (c) the user is not waiting, or this address has no failure against this user
 * within the window: a clean client always gets its attempt checked, so nobody can keep a user
 * locked out by guessing; the user's wait only slows the addresses that already failed for it.
 * The address is counted last, so an attempt the pair or user refuses never extends its wait.
 * Memory is bounded: one fixed-size row per key that failed within the window.
 */
export class LoginThrottle {
  #lastPrune = 0;

  constructor(private readonly repos: Pick<Repositories, 'loginThrottle'>, private readonly clock: Clock) {}

  now(): number {
    return this.clock.now();
  }

  /** Admits one attempt (pair, then user, then address), or says until when it must wait. */
  async admit(keys: AttemptKeys, policy: ThrottlePolicy): Promise<ThrottleVerdict> {
    const taken: ThrottleKey[] = [];
    const refuse = async (until: number, by: 'user' | 'address'): Promise<ThrottleVerdict> => {
      for (const t of taken) await this.#giveBack(t);
      return { admitted: false, until, by };
    };
    if (policy.userAttempts > 0) {
      const pair: ThrottleKey = { key: keys.pair, free: policy.userAttempts };
      const p = await this.#take(pair, policy);
      if (typeof p === 'number') return refuse(p, 'user');
      taken.push(pair);
      const user: ThrottleKey = { key: keys.user, free: policy.userAttempts };
      const u = await this.#take(user, policy);
      if (typeof u === 'number') {
        // The user waits: only an address with no failure against this user (its count is this attempt's alone) is checked.
        if (p.failures > 1) return refuse(u, 'user');
      } else taken.push(user);
    }
    if (policy.addressAttempts > 0) {
      const address: ThrottleKey = { key: keys.address, free: policy.addressAttempts };
      const a = await this.#take(address, policy);
      if (typeof a === 'number') return refuse(a, 'address');
      taken.push(address);
    }
    void this.#pruneIfDue(policy);
    return { admitted: true, keys: taken };
  }

  /** The attempt's password was right: the user's and the pair's failures are forgotten, the address gets its count back. */
  async succeeded(verdict: ThrottleVerdict, keys: AttemptKeys): Promise<void> {
    if (!verdict.admitted) return;
    await this.repos.loginThrottle.remove(keys.user);
    for (const k of verdict.keys) {
      if (k.key === keys.user) continue;
      if (k.key === keys.pair) await this.repos.loginThrottle.remove(k.key);
      else await this.#giveBack(k);
    }
  }

  /** Wait after `failures` counted failures of a key letting `free` through (the `free`th failure starts the waits). */
  static waitAfter(failures: number, free: number, policy: ThrottlePolicy): number {
    if (failures < free) return 0;
    return Math.min(policy.maxDelayMs, policy.delayMs * 2 ** Math.min(failures - free, 30));
  }

  /** Counts one failure in advance: the key's failures with it, or the time before which the key must wait. */
  async #take(k: ThrottleKey, policy: ThrottlePolicy): Promise<{ failures: number } | number> {
    const repo = this.repos.loginThrottle;
    for (let round = 0; round < ROUNDS; round++) {
      const now = this.clock.now();
      await repo.restartIfIdle(k.key, now - policy.windowMs);
      if (await repo.countFailure(k.key, now, k.free, now + policy.maxDelayMs)) {
        const row = await repo.get(k.key);
        if (row && row.failures >= k.free && row.nextAllowed > now) {
          k.setTo = now + LoginThrottle.waitAfter(row.failures, k.free, policy);
          await repo.setWait(k.key, row.failures, k.setTo);
        }
        return { failures: row?.failures ?? 1 };
      }
      const seen = await repo.get(k.key);
      if (seen && seen.nextAllowed > now) return seen.nextAllowed;
      if (!seen) {
        const wait = LoginThrottle.waitAfter(1, k.free, policy);
        k.setTo = wait ? now + wait : 0;
        if (await repo.insert(k.key, { failures: 1, nextAllowed: k.setTo, lastFailure: now })) return { failures: 1 };
      }
    }
    return this.clock.now() + 1000; // contended by many attempts at once: this one waits a second
  }

  /** Takes back the failure counted in advance (the password was right, or another key refused the attempt), and the wait it started. */
  async #giveBack(k: ThrottleKey): Promise<void> {
    await this.repos.loginThrottle.uncount(k.key, k.free, k.setTo);
  }

  async #pruneIfDue(policy: ThrottlePolicy): Promise<void> {
    const now = this.clock.now();
    if (now - this.#lastPrune < PRUNE_EVERY_MS) return;
    this.#lastPrune = now;
    await this.repos.loginThrottle.prune(now - policy.windowMs).catch(() => undefined);
  }
}
