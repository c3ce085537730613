import type { Knex } from 'knex';

/** The tables holding values encrypted under the master key (one column each). */
export type ProtectedTable = 'user' | 'kms_hsm_profile_details' | 'passphrase' | 'kms_database_kek_objects';

/** One protected value and the fields its authenticated place is made of. */
export interface ProtectedValue {
  id: number;
  value: string;
  /** user, passphrase: the row's uuid. */
  uuid?: string;
  /** kms_hsm_profile_details: the detail's name and its profile's uuid. */
  name?: string;
  profileUuid?: string;
  /** kms_database_kek_objects: the KEK label. */
  label?: string;
}

interface ColumnSql {
  readonly column: string;
  /** The rows of this column (id, value, and what the aad needs), aliased `t`. */
  rows(db: Knex): Knex.QueryBuilder;
}

const COLUMNS: Readonly<Record<ProtectedTable, ColumnSql>> = {
  user: {
    column: 'secret_key',
    rows: (db) => db('user as t').whereNotNull('t.secret_key').select('t.id', 't.secret_key as value', 't.uuid'),
  },
  kms_hsm_profile_details: {
    column: 'value',
    // isSensitiveDetail in SQL: pin, password, private_key, anything with "secret".
    rows: (db) => db('kms_hsm_profile_details as t').join('kms_hsm_profiles as p', 'p.id', 't.profile_id')
      .where((q) => q.whereRaw('lower(t.name) in (?, ?, ?)', ['pin', 'password', 'private_key']).orWhereRaw('lower(t.name) like ?', ['%secret%']))
      .select('t.id', 't.value as value', 't.name', 'p.uuid as profileUuid'),
  },
  passphrase: {
    column: 'passphrase',
    rows: (db) => db('passphrase as t').select('t.id', 't.passphrase as value', 't.uuid'),
  },
  kms_database_kek_objects: {
    column: 'key_material',
    rows: (db) => db('kms_database_kek_objects as t').whereNot('t.key_material', '').select('t.id', 't.key_material as value', 't.label'),
  },
};

/** Which values: those not written with `notOn` (legacy values never are), or only the legacy-format ones. */
export type ProtectedSelection = { readonly notOn: number } | { readonly legacy: true };

/**
 * The values under the master key, for its rotation: counted, read in id order, and rewritten with
 * one conditional UPDATE per batch (a value is replaced only if it is still the value read).
 */
export class ProtectedValueRepository {
  constructor(private readonly db: Knex) {}

  private select(table: ProtectedTable, s: ProtectedSelection): Knex.QueryBuilder {
    const c = COLUMNS[table];
    return 'legacy' in s ? c.rows(this.db).where(`t.${c.column}`, 'like', 'v1:%') : c.rows(this.db).whereNot(`t.${c.column}`, 'like', `mk${s.notOn}:%`);
  }

  /** How many values of `table` are selected (every value without a selection). */
  async count(table: ProtectedTable, s?: ProtectedSelection): Promise<number> {
    const q = s ? this.select(table, s) : COLUMNS[table].rows(this.db);
    const row = await q.clearSelect().count({ n: '*' }).first();
    return Number((row as { n?: number | string } | undefined)?.n ?? 0);
  }

  /** The next `limit` selected values of `table` after id `afterId`, by id. */
  async batch(table: ProtectedTable, s: ProtectedSelection, afterId: number, limit: number): Promise<ProtectedValue[]> {
    const rows: Array<Record<string, any>> = await this.select(table, s).where('t.id', '>', afterId).orderBy('t.id').limit(limit);
    return rows.map((r) => ({ ...r, id: Number(r.id), value: String(r.value) }) as ProtectedValue);
  }

  /**
   * Rewrites a batch with one UPDATE whose CASE keeps any value that changed since it was read (a
   * new API key, a concurrent run): only the value read is replaced. A statement commits whole or
   * not at all, so a crash at any instant leaves each value readable. Returns how many it rewrote.
   */
  async rewrite(table: ProtectedTable, changes: ReadonlyArray<{ id: number; from: string; to: string }>): Promise<number> {
    if (!changes.length) return 0;
    const { column } = COLUMNS[table];
    const cases: string[] = [];
    const bindings: Knex.RawBinding[] = [];
    for (const c of changes) {
      cases.push('WHEN ?? = ? AND ?? = ? THEN ?');
      bindings.push('id', c.id, column, c.from, c.to);
    }
    const sql = `UPDATE ?? SET ?? = CASE ${cases.join(' ')} ELSE ?? END WHERE ?? IN (${changes.map(() => '?').join(', ')})`;
    const result = await this.db.raw(sql, [table, column, ...bindings, column, 'id', ...changes.map((c) => c.id)]);
    // mysql2 answers [ResultSetHeader]; better-sqlite3 through knex answers the info object or [] for raw updates.
    const header = Array.isArray(result) ? result[0] : result;
    return Number((header as { affectedRows?: number; changes?: number } | undefined)?.affectedRows ?? (header as { changes?: number } | undefined)?.changes ?? changes.length);
  }
}
