import type { Knex } from 'knex';

/** The scopes a setting may have besides global, as CloudStack's ConfigKey.Scope names them (lower-case). */
export type ScopeKind = 'zone' | 'domain' | 'account';

/** CloudStack's `configuration` table: global settings by name (and the legacy master-key check value). */
export class ConfigurationRepository {
  constructor(private readonly db: Knex) {}

  /** The stored value, or undefined when the setting was never stored. */
  async get(name: string): Promise<string | undefined> {
    const row: { value: string | null } | undefined = await this.db('configuration').where({ name }).first('value');
    return row?.value ?? undefined;
  }

  /** Stores `value` (an update when the name exists, else an insert). */
  async put(name: string, value: string, updated: Date): Promise<void> {
    const exists = await this.db('configuration').where({ name }).first('name');
    if (exists) await this.db('configuration').where({ name }).update({ value, updated: updated.getTime() });
    else await this.db('configuration').insert({ name, value, updated: updated.getTime() });
  }

  /** The value stored for one zone, domain or account (`configuration_scoped`, migration 012). */
  async getScoped(name: string, scope: ScopeKind, scopeId: number): Promise<string | undefined> {
    const row: { value: string | null } | undefined = await this.db('configuration_scoped').where({ name, scope, scope_id: scopeId }).first('value');
    return row?.value ?? undefined;
  }

  /** Stores a value for one zone, domain or account. */
  async putScoped(name: string, scope: ScopeKind, scopeId: number, value: string, updated: Date): Promise<void> {
    const key = { name, scope, scope_id: scopeId };
    const exists = await this.db('configuration_scoped').where(key).first('name');
    if (exists) await this.db('configuration_scoped').where(key).update({ value, updated: updated.getTime() });
    else await this.db('configuration_scoped').insert({ ...key, value, updated: updated.getTime() });
  }

  /** Removes the global value (back to the default) or a scoped one (back to what the scope inherits). */
  async remove(name: string, target?: { scope: ScopeKind; scopeId: number }): Promise<void> {
    if (target) await this.db('configuration_scoped').where({ name, scope: target.scope, scope_id: target.scopeId }).del();
    else await this.db('configuration').where({ name }).del();
  }

  /** Every stored value by name (null values left out). */
  async all(): Promise<Map<string, string>> {
    const rows: Array<{ name: string; value: string | null }> = await this.db('configuration').select('name', 'value');
    return new Map(rows.filter((r) => r.value !== null).map((r) => [r.name, r.value!]));
  }
}
