import type { Knex } from 'knex';

/** One stored HTTP session: only a hash of its key is kept. Times are epoch ms (idle-clock arithmetic). */
export interface SessionRecord {
  readonly id: string;
  readonly userId: number;
  readonly keyHash: string;
  readonly lastAccessMs: number;
  readonly timeoutSec: number;
}

/** The `http_session` table, shared by every API server behind one balancer. */
export class SessionRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async insert(s: { id: string; keyHash: string; userId: number; createdMs: number; timeoutSec: number }): Promise<void> {
    await this.db('http_session').insert({ id: s.id, session_key_hash: s.keyHash, user_id: s.userId, created: s.createdMs, last_access: s.createdMs, timeout_sec: s.timeoutSec });
  }

  async byId(id: string): Promise<SessionRecord | undefined> {
    const r = await this.db('http_session').where({ id }).first();
    return r && { id: r.id, userId: Number(r.user_id), keyHash: r.session_key_hash, lastAccessMs: Number(r.last_access), timeoutSec: Number(r.timeout_sec) };
  }

  async touch(id: string, atMs: number): Promise<void> {
    await this.db('http_session').where({ id }).update({ last_access: atMs });
  }

  async delete(id: string): Promise<void> {
    await this.db('http_session').where({ id }).delete();
  }

  /** Ends every session of a user. */
  async deleteOfUser(userId: number): Promise<void> {
    await this.db('http_session').where('user_id', userId).delete();
  }

  /** Ends every session of every user of an account. */
  async deleteOfAccount(accountId: number): Promise<void> {
    await this.db('http_session').whereIn('user_id', this.db('user').where({ account_id: accountId }).select('id')).delete();
  }
}
