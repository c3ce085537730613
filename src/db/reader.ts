import Database from 'better-sqlite3';
import type { Knex } from 'knex';

/**
 * How a repository runs a read that is not part of a transaction. Through knex, a read costs about
 * 90 µs of CPU besides SQLite's own 10–15 µs (its runner, pool and promise chain: bench/api.ts,
 * `--cpu-prof`). On SQLite the hot reads of the API path (lists, credentials, settings) go instead to
 * a second, read-only connection of the same file, with each statement prepared once: WAL mode lets
 * it read beside the writer, and it sees every committed write at its next statement, never an
 * uncommitted one. Reads inside a transaction keep the transaction's connection (they must see its
 * writes). On MariaDB a read goes through knex (its cost is the network round trip).
 */
export interface Reader {
  /** The rows of a select. */
  rows<T = Record<string, unknown>>(q: Knex.QueryBuilder): Promise<T[]>;
  /** Closes the read connection (SQLite); a no-op through knex. */
  close(): void;
}

/** Reads through knex: inside transactions, on MariaDB, and where no fast reader was opened. */
export const knexReader: Reader = {
  rows: async <T>(q: Knex.QueryBuilder) => (await q) as T[],
  close: () => undefined,
};

/** knex's better-sqlite3 binding rules: booleans as 1/0, dates as epoch ms. */
const bind = (v: unknown): unknown => (typeof v === 'boolean' ? Number(v) : v instanceof Date ? v.valueOf() : v);

/** The reader of `db`: a read-only connection on SQLite, knex itself on MariaDB. */
export function createReader(db: Knex): Reader {
  if (db.client.config.client !== 'better-sqlite3') return knexReader;
  const filename = (db.client.config.connection as { filename: string }).filename;
  const conn = new Database(filename, { readonly: true, fileMustExist: true });
  conn.pragma('busy_timeout = 5000');
  const statements = new Map<string, Database.Statement>();
  const prepared = (sql: string): Database.Statement => {
    let s = statements.get(sql);
    if (!s) {
      if (statements.size >= 500) statements.delete(statements.keys().next().value as string);
      s = conn.prepare(sql);
      statements.set(sql, s);
    }
    return s;
  };
  return {
    rows: async <T>(q: Knex.QueryBuilder) => {
      const { sql, bindings } = q.toSQL().toNative();
      return prepared(sql).all(bindings.map(bind)) as T[];
    },
    close: () => conn.close(),
  };
}
