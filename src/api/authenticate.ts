import type { App } from '../app';
import type { Caller } from '../identity/caller';
import { ApiError, BAD_CREDENTIALS_TEXT } from '../core/errors';
import type { ApiParams } from './request';
import { parseExpires } from '../core/dates';
import { verifySignature } from './signature';

/** What identified the request, if anything. */
export type Authentication =
  | { kind: 'session'; caller: Caller; sessionId: string }
  | { kind: 'apikey'; caller: Caller }
  | { kind: 'none' };

const unauthorized = (text = BAD_CREDENTIALS_TEXT) => new ApiError(401, text);

function findOriginal(params: ApiParams, lowerName: string): string | undefined {
  for (const [k, v] of params.original) if (k.toLowerCase() === lowerName) return v;
  return undefined;
}

/**
 * CloudStack's order (reference/cloudstack-api-protocol.md §2.2, §1): a session named by the
 * JSESSIONID cookie, its key checked where `api.sessionkey.check.locations` says; else an API key
 * with a v2 or v3 signature; else nothing. Throws 401 for credentials that are present but wrong.
 */
export async function authenticate(app: App, params: ApiParams, cookies: ReadonlyMap<string, string>): Promise<Authentication> {
  const jsession = cookies.get('JSESSIONID');
  const apiKey = findOriginal(params, 'apikey');
  // A change of credentials made on any node or worker since this node's last request: the
  // cached credentials go (one single-row read; src/identity/directory.ts).
  if (jsession || apiKey !== undefined) await app.directory.syncCredentials();
  const session = jsession ? await app.sessions.find(jsession) : undefined;
  if (session) {
    const mode = await app.settings.get('api.sessionkey.check.locations');
    const fromParam = params.lower.get('sessionkey');
    const fromCookie = cookies.get('sessionkey');
    const matches = (k: string | undefined) => k !== undefined && app.sessions.matchesKey(session, k);
    const ok =
      mode === 'CookieOrParameter'
        ? (fromParam !== undefined || fromCookie !== undefined) && (fromParam === undefined || matches(fromParam)) && (fromCookie === undefined || matches(fromCookie))
        : mode === 'ParameterOnly'
          ? matches(fromParam) && (fromCookie === undefined || matches(fromCookie))
          : matches(fromParam) && matches(fromCookie);
    if (!ok) {
      await app.sessions.delete(session.id);
      throw unauthorized('unable to verify user credentials');
    }
    const caller = await app.directory.callerForRequest(session.userId);
    if (!caller) {
      await app.sessions.delete(session.id);
      throw unauthorized('unable to verify user credentials');
    }
    return { kind: 'session', caller, sessionId: session.id };
  }

  if (apiKey === undefined) return { kind: 'none' };
  const signature = findOriginal(params, 'signature');
  if (!signature) throw unauthorized();
  if (findOriginal(params, 'signatureversion') === '3') {
    const expires = findOriginal(params, 'expires');
    const at = expires === undefined ? undefined : parseExpires(expires);
    if (!at || at.getTime() < Date.now()) throw unauthorized();
  }
  const holder = await app.directory.holderOfApiKey(apiKey);
  if (!holder || !verifySignature(params.original, signature, holder.secretKey)) throw unauthorized();
  const caller = await app.directory.callerForRequest(holder.userId);
  if (!caller) throw unauthorized();
  return { kind: 'apikey', caller };
}
