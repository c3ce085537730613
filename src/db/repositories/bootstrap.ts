import { nameKey } from '../columns';
import type { Knex } from 'knex';
import type { Logger } from '../../core/logger';
import { withDbLock } from '../db-lock';

/**
 * What the first start writes before any service runs: the deployment-wide bootstrap lock, and the
 * ROOT domain, the `admin` account and the `admin` user (the identity services need a caller to
 * create anything, and at first start there is none).
 */
export class BootstrapRepository {
  constructor(private readonly db: Knex) {}

  /**
   * Runs fn holding the deployment-wide named lock `name` (MariaDB GET_LOCK on a connection of its
   * own; on SQLite at once), waiting at most `waitSec` for another process to release it.
   */
  withLock<T>(name: string, opts: { waitSec: number; logger?: Logger; what: string }, fn: () => Promise<T>): Promise<T> {
    return withDbLock(this.db, name, opts, fn);
  }

  /** Inserts the ROOT domain (path `/`); returns its id. */
  async insertRootDomain(d: { uuid: string; created: Date }): Promise<number> {
    const [id] = await this.db('domain').insert({ uuid: d.uuid, name: 'ROOT', path: '/', parent_id: null, level: 0, network_domain: null, created: d.created.getTime() });
    return Number(id);
  }

  async insertAccount(a: { uuid: string; name: string; type: number; domainId: number; state: string; created: Date }): Promise<number> {
    const [id] = await this.db('account').insert({ uuid: a.uuid, account_name: a.name, account_name_key: nameKey(a.name), type: a.type, domain_id: a.domainId, state: a.state, created: a.created.getTime() });
    return Number(id);
  }

  async insertUser(u: {
    uuid: string; username: string; passwordHash: string; accountId: number; firstname: string; lastname: string; state: string; created: Date;
  }): Promise<number> {
    const [id] = await this.db('user').insert({
      uuid: u.uuid, username: u.username, username_key: nameKey(u.username), password: u.passwordHash, account_id: u.accountId, firstname: u.firstname, lastname: u.lastname,
      email: null, state: u.state, api_key: null, secret_key: null, timezone: null, created: u.created.getTime(), login_attempts: 0,
    });
    return Number(id);
  }
}
