import type { Knex } from 'knex';

/** Runs a list query for one page and the total count (CloudStack `count` is the total, not the page). */
export async function pagedRows<T>(q: Knex.QueryBuilder, window: { offset: number; limit: number | undefined }): Promise<{ rows: T[]; count: number }> {
  const countRow = await q.clone().clearSelect().clearOrder().count({ n: '*' }).first();
  const count = Number((countRow as { n: number | string } | undefined)?.n ?? 0);
  if (count === 0) return { rows: [], count };
  const page = q.clone().offset(window.offset);
  if (window.limit !== undefined) page.limit(window.limit);
  return { rows: (await page) as T[], count };
}

export const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';
