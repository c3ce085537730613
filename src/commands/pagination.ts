import { paramError } from '../core/errors';

export const MAX_PAGE_SIZE = 500; // default.page.size

/** CloudStack BaseListCmd paging rules (reference/cloudstack-api-protocol.md §6.1): offset and limit. */
export function pageWindow(p: { page?: number; pagesize?: number }): { offset: number; limit: number | undefined } {
  const { page, pagesize } = p;
  if (pagesize !== undefined && pagesize !== -1 && page === undefined) throw paramError('"page" parameter is required when "pagesize" is specified');
  if (page !== undefined && pagesize === undefined) throw paramError('"pagesize" parameter is required when "page" is specified');
  if (pagesize === -1 && page !== undefined) throw paramError('"page" parameter cannot be used when "pagesize" is -1 (all items)');
  if (pagesize === -1) return { offset: 0, limit: undefined };
  if (pagesize !== undefined && pagesize > MAX_PAGE_SIZE) throw paramError(`Page size can't exceed max allowed page size value: ${MAX_PAGE_SIZE}`);
  if (pagesize !== undefined && pagesize < 1) throw paramError('"pagesize" must be a positive number, or -1 for all items');
  if (page !== undefined && page < 1) throw paramError('"page" must be 1 or greater');
  const size = pagesize ?? MAX_PAGE_SIZE;
  return { offset: ((page ?? 1) - 1) * size, limit: size };
}
