import { createHash, randomBytes } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock';
import type { Repositories } from '../db/repositories';

/** How stale a session's recorded last access may be (a 30-minute idle timeout does not notice). */
const LAST_ACCESS_GRANULARITY_MS = 5000;

const hashKey = (key: string) => createHash('sha256').update(key, 'utf8').digest('hex');

export interface HttpSession { id: string; userId: number; sessionKeyHash: string }

/**
 * HTTP sessions in the database, so several API servers behind one balancer share them.
 * Only a hash of the session key is stored.
 */
export class SessionStore {
  constructor(private readonly repos: Repositories, private readonly timeoutSec: number, private readonly clock: Clock = systemClock) {}

  get timeout(): number {
    return this.timeoutSec;
  }

  /** A new session: `id` is the JSESSIONID stem, `sessionKey` the 27-char URL-safe key. */
  async create(userId: number): Promise<{ id: string; sessionKey: string }> {
    const id = `node0${randomBytes(16).toString('hex')}`;
    const sessionKey = randomBytes(20).toString('base64url');
    await this.repos.sessions.insert({ id, keyHash: hashKey(sessionKey), userId, createdMs: this.clock.now(), timeoutSec: this.timeoutSec });
    return { id, sessionKey };
  }

  /** The live session for a JSESSIONID cookie value (`<id>.node0`), touching its last access. */
  async find(cookieValue: string): Promise<HttpSession | undefined> {
    const id = cookieValue.split('.')[0];
    if (!id || !cookieValue.startsWith(`${id}.`)) return undefined;
    const row = await this.repos.sessions.byId(id);
    if (!row) return undefined;
    const now = this.clock.now();
    if (row.lastAccessMs + row.timeoutSec * 1000 < now) {
      await this.delete(id);
      return undefined;
    }
    // The idle clock needs no millisecond precision: write it at most every few seconds.
    if (now - row.lastAccessMs > LAST_ACCESS_GRANULARITY_MS) await this.repos.sessions.touch(id, now);
    return { id, userId: row.userId, sessionKeyHash: row.keyHash };
  }

  matchesKey(session: HttpSession, key: string): boolean {
    return hashKey(key) === session.sessionKeyHash;
  }

  async delete(id: string): Promise<void> {
    await this.repos.sessions.delete(id);
  }
}

export const cookieValueFor = (id: string): string => `${id}.node0`;
