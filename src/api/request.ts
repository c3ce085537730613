import { ApiError } from '../core/errors';

/** Parameters of one request: original names (for the signature) and lower-cased names (for dispatch). */
export interface ApiParams {
  /** Original-case names, as the signature covers them. */
  readonly original: ReadonlyMap<string, string>;
  /** Lower-cased names → value; map parameters stay flat here (`details[0].pin`). */
  readonly lower: ReadonlyMap<string, string>;
}

function decodeComponent(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    throw new ApiError(431, `Malformed percent-encoding in request parameter: ${s.slice(0, 40)}`, 4350);
  }
}

/** Splits an x-www-form-urlencoded string into pairs, in order. */
export function parsePairs(raw: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const part of raw.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const name = decodeComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? '' : decodeComponent(part.slice(eq + 1));
    if (name) pairs.push([name, value]);
  }
  return pairs;
}

/**
 * CloudStack's merge (reference/cloudstack-api-protocol.md §1.1, §8): the form body keeps its first
 * value of a name, the query string its last, and the query string wins over the body.
 */
export function mergeParams(query: string, body: string): ApiParams {
  const original = new Map<string, string>();
  for (const [k, v] of parsePairs(body)) if (!original.has(k)) original.set(k, v);
  for (const [k, v] of parsePairs(query)) original.set(k, v);
  const lower = new Map<string, string>();
  for (const [k, v] of original) lower.set(k.toLowerCase(), v);
  return { original, lower };
}

// ASCII control characters except LF and CR (CloudStack ApiServer.checkCharacterInkParams).
const CONTROL = /[\x00-\x09\x0B\x0C\x0E-\x1F\x7F]/;

export function assertNoControlCharacters(params: ApiParams): void {
  for (const [name, value] of params.lower) {
    if (CONTROL.test(value)) {
      throw new ApiError(431, `Received value for parameter ${name} is invalid, contains illegal ASCII non-printable characters`, 4350);
    }
  }
}

/** Cookie header → map (first occurrence wins). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    if (k && !out.has(k)) out.set(k, v);
  }
  return out;
}
