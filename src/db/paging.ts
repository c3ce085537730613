import type { Knex } from 'knex';
import { knexReader, type Reader } from './reader';

/**
 * Runs a list query for one page and the total count (CloudStack `count` is the total, not the page).
 * A first page that is not full holds every row, so its count needs no second query.
 */
export async function pagedRows<T>(
  q: Knex.QueryBuilder, window: { offset: number; limit: number | undefined }, read: Reader = knexReader,
): Promise<{ rows: T[]; count: number }> {
  const page = q.clone().offset(window.offset);
  if (window.limit !== undefined) page.limit(window.limit);
  const rows = await read.rows<T>(page);
  if (window.offset === 0 && (window.limit === undefined || rows.length < window.limit)) return { rows, count: rows.length };
  const [countRow] = await read.rows<{ n: number | string }>(q.clone().clearSelect().clearOrder().count({ n: '*' }));
  return { rows, count: Number(countRow?.n ?? 0) };
}

export const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';

/** Which rows of a list one page holds (CloudStack page/pagesize, resolved). */
export interface PageWindow {
  readonly offset: number;
  /** undefined: every row (pagesize=-1). */
  readonly limit: number | undefined;
}

/** One page of a list and the total count of the list (CloudStack `count`). */
export interface Page<T> {
  readonly rows: T[];
  readonly count: number;
}
