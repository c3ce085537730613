import { paramError } from '../core/errors';
import { parseExpires } from '../core/dates';

/**
 * A date filter of a list command (`startdate`, `enddate`) as epoch ms: `yyyy-MM-dd` (UTC midnight),
 * `yyyy-MM-dd HH:mm:ss` (UTC) or CloudStack's zoned forms. A bad value is a 431 naming the parameter.
 */
export function parseListDate(value: string, name: string): number {
  const d = /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(`${value}T00:00:00Z`) : parseExpires(value) ?? new Date(value.replace(' ', 'T') + 'Z');
  if (Number.isNaN(d.getTime())) throw paramError(`Unable to parse ${name} ${value}; use yyyy-MM-dd or yyyy-MM-dd'T'HH:mm:ssZ`);
  return d.getTime();
}
