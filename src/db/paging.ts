import type { Knex } from 'knex';
import { knexReader, type Reader } from './reader';

/**
 * Runs a list query for one page and the total count (CloudStack `count` is the total, not the page).
 * A first page that is not full holds every row, so its count needs no second query.
 */
export function pagedRows<T>(q: Knex.QueryBuilder, window: PageWindow, read: Reader = knexReader): Promise<Page<T>> {
  return read.page<T>(q, window);
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
