import type { OwnerScope } from '../core/owner-scope';
import type { Page, PageWindow } from '../db/paging';
import type { ScopeRequest } from '../identity/directory';
import type { CommandContext } from './define';
import { pageWindow } from './pagination';
import type { ApiResult } from './result';

/**
 * The one shape of a list command (docs/architecture.md): the caller's scope narrowed by the
 * owner parameters, then the command's filters and the page (both in the repository's query),
 * then each row as its response item. CloudStack's `count` is the total, not the page.
 */
export async function listOwned<T>(
  ctx: CommandContext,
  p: ScopeRequest & { page?: number; pagesize?: number },
  name: string,
  fetch: (scope: OwnerScope, page: PageWindow) => Promise<Page<T>>,
  item: (row: T) => object,
): Promise<ApiResult> {
  // CloudStack's order: the caller's scope (531) before the paging (431).
  const scope = await ctx.directory.listScope(ctx.caller, p);
  const { rows, count } = await fetch(scope, pageWindow(p));
  return { kind: 'list', name, items: rows.map(item), count };
}

/** A list of objects nobody owns (zones, settings): filters and page, then items. */
export async function listUnowned<T>(
  p: { page?: number; pagesize?: number },
  name: string,
  fetch: (page: PageWindow) => Promise<Page<T>>,
  item: (row: T) => object,
): Promise<ApiResult> {
  const { rows, count } = await fetch(pageWindow(p));
  return { kind: 'list', name, items: rows.map(item), count };
}
