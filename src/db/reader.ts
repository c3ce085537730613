import Database from 'better-sqlite3';
import type { Knex } from 'knex';
import type { Page, PageWindow } from './paging';

/**
 * How a repository runs a read that is not part of a transaction. Through knex, a read costs about
 * 90 µs of CPU besides SQLite's own 10–15 µs (its runner, pool and promise chain: bench/api.ts,
 * `--cpu-prof`). On SQLite the hot reads of the API path (lists and the caller's scope) go instead to
 * a second, read-only connection of the same file, with each statement prepared once: WAL mode lets
 * it read beside the writer, and it sees every committed write at its next statement, never an
 * uncommitted one. Reads inside a transaction keep the transaction's connection (they must see its
 * writes). On MariaDB a read goes through knex (its cost is the network round trip).
 */
export interface Reader {
  /** The rows of a select. */
  rows<T = Record<string, unknown>>(q: Knex.QueryBuilder): Promise<T[]>;
  /**
   * One page of a list query and the list's total (CloudStack `count`). A first page that is not
   * full holds every row, so its count needs no second query.
   */
  page<T = Record<string, unknown>>(q: Knex.QueryBuilder, window: PageWindow): Promise<Page<T>>;
  /** Closes the read connection (SQLite); a no-op through knex. */
  close(): void;
}

/** Reads through knex: inside transactions, on MariaDB, and where no fast reader was opened. */
export const knexReader: Reader = {
  rows: async <T>(q: Knex.QueryBuilder) => (await q) as T[],
  page: async <T>(q: Knex.QueryBuilder, window: PageWindow) => {
    const page = q.clone().offset(window.offset);
    if (window.limit !== undefined) page.limit(window.limit);
    const rows = (await page) as T[];
    if (isWholeList(window, rows.length)) return { rows, count: rows.length };
    const countRow = await q.clone().clearSelect().clearOrder().count({ n: '*' }).first();
    return { rows, count: Number((countRow as { n: number | string } | undefined)?.n ?? 0) };
  },
  close: () => undefined,
};

const isWholeList = (w: PageWindow, n: number): boolean => w.offset === 0 && (w.limit === undefined || n < w.limit);

/** knex's better-sqlite3 binding rules: booleans as 1/0, dates as epoch ms. */
const bind = (v: unknown): unknown => (typeof v === 'boolean' ? Number(v) : v instanceof Date ? v.valueOf() : v);

/**
 * A function making one row object from a statement's values, with the column names written in it
 * (JSON-quoted: they come from our own SQL through SQLite's statement metadata, never from input), so
 * every row of a statement shares one object shape. A repeated name keeps its last value, as
 * better-sqlite3's own objects do.
 */
function rowMaker(columns: readonly string[]): (values: unknown[]) => Record<string, unknown> {
  const last = new Map(columns.map((c, i) => [c, i]));
  const body = [...last].map(([c, i]) => `${JSON.stringify(c)}: v[${i}]`).join(', ');
  return new Function('v', `return { ${body} };`) as (values: unknown[]) => Record<string, unknown>;
}

/** The reader of `db`: a read-only connection on SQLite, knex itself on MariaDB. */
export function createReader(db: Knex): Reader {
  if (db.client.config.client !== 'better-sqlite3') return knexReader;
  const filename = (db.client.config.connection as { filename: string }).filename;
  const conn = new Database(filename, { readonly: true, fileMustExist: true });
  conn.pragma('busy_timeout = 5000');
  // Each statement returns arrays, and rows are made by a function built once per statement from
  // its column names: better-sqlite3 building row objects itself costs more than the query (10 key
  // rows of 25 columns: 170 µs against 75 µs as arrays), and its objects are slow to read from.
  const statements = new Map<string, { statement: Database.Statement; row: (values: unknown[]) => Record<string, unknown> }>();
  const prepared = (sql: string) => {
    let s = statements.get(sql);
    if (!s) {
      if (statements.size >= 500) statements.delete(statements.keys().next().value as string);
      const statement = conn.prepare(sql).raw(true);
      s = { statement, row: rowMaker(statement.columns().map((c) => c.name)) };
      statements.set(sql, s);
    }
    return s;
  };
  const all = (sql: string, args: unknown[]) => {
    const { statement, row } = prepared(sql);
    return (statement.all(args) as unknown[][]).map(row);
  };
  return {
    rows: async <T>(q: Knex.QueryBuilder) => {
      const { sql, bindings } = q.toSQL().toNative();
      return all(sql, bindings.map(bind)) as T[];
    },
    // The query is compiled once (a knex clone of a joined query costs more than SQLite's work):
    // the page appends its limit (so `q` must have none), the count wraps the same statement.
    page: async <T>(q: Knex.QueryBuilder, window: PageWindow) => {
      const { sql, bindings } = q.toSQL().toNative();
      const args = bindings.map(bind);
      const rows = (window.limit === undefined
        ? all(`${sql} limit -1 offset ?`, [...args, window.offset])
        : all(`${sql} limit ? offset ?`, [...args, window.limit, window.offset])) as T[];
      if (isWholeList(window, rows.length)) return { rows, count: rows.length };
      const [counted] = all(`select count(*) as n from (${sql})`, args) as Array<{ n: number }>;
      return { rows, count: Number(counted?.n ?? 0) };
    },
    close: () => conn.close(),
  };
}

/**
 * Runs a list query for one page and the total count (CloudStack `count` is the total, not the page).
 * A first page that is not full holds every row, so its count needs no second query.
 */
export function pagedRows<T>(q: Knex.QueryBuilder, window: PageWindow, read: Reader = knexReader): Promise<Page<T>> {
  return read.page<T>(q, window);
}
