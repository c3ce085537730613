import type { Knex } from 'knex';
import type { Reader } from '../reader';

/**
 * The deployment's credentials version: one number that every change of a user's or account's
 * state or API keys moves. API nodes read it with each request (on SQLite through the prepared
 * read connection: a few µs) and drop their cached credentials when it moved.
 */
export class CredentialVersionRepository {
  readonly #query: Knex.QueryBuilder;

  constructor(private readonly db: Knex | Knex.Transaction, private readonly read: Reader) {
    this.#query = this.db('credential_version').where({ id: 1 }).select('version');
  }

  async current(): Promise<number> {
    const [row] = await this.read.rows<{ version: number | string }>(this.#query.clone());
    return Number(row?.version ?? 0);
  }

  /** Moves the version on; called after the change it announces was written. */
  async bump(): Promise<void> {
    await this.db('credential_version').where({ id: 1 }).increment('version', 1);
  }
}
