import type { App } from '../app';
import { verifyPassword } from '../identity/password';
import { ApiError } from './errors';
import type { ApiParams } from './request';
import { cookieValueFor } from './session-store';

export interface LoginOutcome {
  body: Record<string, unknown>;
  setCookies: string[];
}

/**
 * The user's UTC offset in hours as Java's Float.toString prints it ("0.0", "5.5", "-3.0"), as
 * CloudStack's ApiServer.loginUser computes it. 0.0 without a (valid) timezone: the UI parses this
 * field as JSON, so it must always be a number string.
 */
export function timezoneOffsetHours(timezone: string | null | undefined, at = new Date()): string {
  let hours = 0;
  if (timezone) {
    try {
      const name = new Intl.DateTimeFormat('en-US', { timeZone: timezone, timeZoneName: 'longOffset' })
        .formatToParts(at).find((part) => part.type === 'timeZoneName')?.value ?? 'GMT';
      const m = /^GMT([+-])(\d{2}):(\d{2})$/.exec(name);
      if (m) hours = (m[1] === '-' ? -1 : 1) * (Number(m[2]) + Number(m[3]) / 60);
    } catch {
      hours = 0; // an unknown zone id: CloudStack's TimeZone.getTimeZone falls back to GMT
    }
  }
  return Number.isInteger(hours) ? hours.toFixed(1) : String(hours);
}

const normaliseDomainPath = (d: string): string => {
  let p = d.trim();
  if (!p.startsWith('/')) p = `/${p}`;
  if (!p.endsWith('/')) p = `${p}/`;
  return p;
};

/**
 * CloudStack's login (DefaultLoginAPIAuthenticatorCmd, reference §2.1): a new session, both the
 * JSESSIONID and the sessionkey cookies, and the flat loginresponse with `sessionkey`.
 */
export async function login(app: App, params: ApiParams, oldSessionCookie: string | undefined): Promise<LoginOutcome> {
  const username = params.lower.get('username');
  const password = params.lower.get('password');
  if (!username) throw new ApiError(431, 'Unable to execute API command login due to missing parameter username', 4350);
  if (password === undefined) throw new ApiError(431, 'Unable to execute API command login due to missing parameter password', 4350);
  const domainId = params.lower.get('domainid');
  const domain = domainId
    ? /^\d+$/.test(domainId) ? await app.directory.domainById(Number(domainId)) : await app.directory.domainByUuid(domainId)
    : await app.directory.domainByPath(normaliseDomainPath(params.lower.get('domain') || '/'));
  const failure = () => new ApiError(531, `Failed to authenticate user ${username} in domain ${domain?.id ?? domainId ?? params.lower.get('domain') ?? 1}; please provide valid credentials`);
  if (!domain) throw failure();
  const user = await app.directory.findUserForLogin(username, domain.id);
  // Hash even for an unknown user, so timing does not reveal which usernames exist.
  const valid = await verifyPassword(password, user?.password ?? 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA');
  const caller = user && valid ? await app.directory.loadCaller(user.id) : undefined;
  if (!user || !caller) throw failure();

  if (oldSessionCookie) {
    const old = await app.sessions.find(oldSessionCookie);
    if (old) await app.sessions.delete(old.id);
  }
  const session = await app.sessions.create(user.id);
  await app.events.record({ type: 'USER.LOGIN', description: `user has logged in from the API (${username})`, actor: { userId: user.id, accountId: caller.accountId, domainId: caller.domainId } });
  const body: Record<string, unknown> = {
    username: user.username,
    userid: user.uuid,
    domainid: caller.domainUuid,
    timeout: app.sessions.timeout,
    account: caller.accountName,
    firstname: user.firstname,
    lastname: user.lastname,
    type: String(caller.accountType),
    timezone: user.timezone ?? undefined,
    timezoneoffset: timezoneOffsetHours(user.timezone),
    registered: 'false',
    sessionkey: session.sessionKey,
    is2faenabled: 'false',
    is2faverified: 'true',
    issuerfor2fa: 'CloudStack',
    managementserverid: caller.role === 'Admin' ? app.managementServerId : undefined,
  };
  return {
    body,
    setCookies: [
      `JSESSIONID=${cookieValueFor(session.id)}; Path=/client; HttpOnly`,
      `sessionkey=${session.sessionKey}; HttpOnly; SameSite=Lax`,
    ],
  };
}

/** Ends the session and expires every cookie the client sent (reference §2.3). */
export async function logout(app: App, cookies: ReadonlyMap<string, string>): Promise<LoginOutcome> {
  const jsession = cookies.get('JSESSIONID');
  const session = jsession ? await app.sessions.find(jsession) : undefined;
  if (!session) throw new ApiError(431, 'Session not found for the logout process.', 9999);
  await app.sessions.delete(session.id);
  const caller = await app.directory.loadCaller(session.userId);
  if (caller) {
    await app.events.record({ type: 'USER.LOGOUT', description: `user has logged out (${caller.username})`, actor: { userId: caller.userId, accountId: caller.accountId, domainId: caller.domainId } });
  }
  return {
    body: { description: 'success' },
    // Same name and path as set at login (sessionkey has none), so the browser really drops them.
    setCookies: [...cookies.keys()].map((name) => (name === 'JSESSIONID' ? `${name}=; Max-Age=0; Path=/client` : `${name}=; Max-Age=0`)),
  };
}
