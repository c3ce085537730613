import type { ApiResult } from '../commands/result';
export type { ApiResult } from '../commands/result';
import type { ApiError } from '../core/errors';


export const responseName = (command: string): string => `${command.toLowerCase()}response`;

/** The body under the wrapper (reference/cloudstack-api-protocol.md §3.2). */
export function resultBody(result: ApiResult): Record<string, unknown> {
  switch (result.kind) {
    case 'object':
      return { [result.name]: result.value };
    case 'list':
      if (result.count === 0) return {};
      return result.items.length ? { count: result.count, [result.name]: result.items } : { count: result.count };
    case 'success':
      return result.displaytext === undefined ? { success: true } : { success: true, displaytext: result.displaytext };
    case 'flat':
      return { ...result.value };
  }
}

export function errorBody(err: ApiError): Record<string, unknown> {
  const body: Record<string, unknown> = { uuidList: [], errorcode: err.errorcode };
  if (err.cserrorcode !== undefined) body.cserrorcode = err.cserrorcode;
  body.errortext = err.message;
  return body;
}

/** Drops undefined fields recursively, as Gson omits nulls. */
export function prune(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(prune);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null) out[k] = prune(v);
    return out;
  }
  return value;
}

export function toJson(wrapper: string, body: Record<string, unknown>): string {
  return JSON.stringify({ [wrapper]: prune(body) });
}

const escapeXml = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

function xmlField(name: string, value: unknown): string {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map((v) => xmlField(name, v)).join('');
  if (typeof value === 'object') {
    return `<${name}>${Object.entries(value).map(([k, v]) => xmlField(k, v)).join('')}</${name}>`;
  }
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

/** CloudStack's XML rendering (§3.5): lists repeat the item element; an empty uuidList is left out. */
/** `authenticated`: CloudStack shows its version on the root element only to authenticated callers. */
export function toXml(wrapper: string, body: Record<string, unknown>, authenticated = false): string {
  const inner = Object.entries(body)
    .filter(([k, v]) => !(k === 'uuidList' && Array.isArray(v) && v.length === 0))
    .map(([k, v]) => xmlField(k, v))
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?><${wrapper}${authenticated ? ' cloud-stack-version="4.23.0.0"' : ''}>${inner}</${wrapper}>`;
}

