import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** java.net.URLEncoder.encode(s, "UTF-8") with "+" → "%20" (reference/cloudstack-api-protocol.md §1.2). */
export function javaUrlEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

/** cmk's Go encoder: like Java but leaves "~" raw (reference §1.3). */
function cmkUrlEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

const ordinal = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The lower-cased string CloudStack signs: every parameter but `signature`, sorted by original name. */
export function canonicalString(params: ReadonlyMap<string, string>, encode: (s: string) => string = javaUrlEncode): string {
  return [...params.keys()]
    .filter((n) => n.toLowerCase() !== 'signature')
    .sort(ordinal)
    .map((n) => `${n}=${encode(params.get(n)!)}`)
    .join('&')
    .toLowerCase();
}

export function sign(canonical: string, secretKey: string): string {
  return createHmac('sha1', Buffer.from(secretKey, 'utf8')).update(canonical, 'utf8').digest('base64');
}

/** Compares digests of both strings, so neither length nor content leaks through timing. */
function constantTimeEquals(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * True when `signature` is the HMAC-SHA1 of the request under `secretKey`, as CloudStack computes it,
 * or as cmk computes it for values holding "~" (accepted on purpose; CloudStack rejects those).
 */
export function verifySignature(params: ReadonlyMap<string, string>, signature: string, secretKey: string): boolean {
  if (constantTimeEquals(sign(canonicalString(params), secretKey), signature)) return true;
  const hasTilde = [...params.values()].some((v) => v.includes('~'));
  return hasTilde && constantTimeEquals(sign(canonicalString(params, cmkUrlEncode), secretKey), signature);
}

