import type { App } from '../app';
import { ACCOUNT_TYPES } from '../identity/caller';
import type { AccountRow, UserRow } from '../identity/directory';
import { verifyPassword } from '../identity/password';
import { ApiError } from './errors';
import type { ApiParams } from './request';
import { cookieValueFor } from './session-store';

export interface LoginOutcome {
  body: Record<string, unknown>;
  setCookies: string[];
}

const normaliseDomainPath = (d: string): string => {
  let p = d.trim();
  if (!p.startsWith('/')) p = `/${p}`;
  if (!p.endsWith('/')) p = `${p}/`;
  return p;
};

const prettyDomain = (path: string): string => (path === '/' ? 'ROOT' : `ROOT${path.replace(/\/$/, '')}`);

/**
 * A wrong password of an enabled user counts towards `incorrect.login.attempts.allowed`; the last
 * allowed one disables the user (CloudStack's lockout; enableUser lifts it). Root-admin accounts
 * are exempt, as CloudStack's internal accounts, so nobody can lock the cloud's administrators out.
 */
async function countFailure(app: App, user: UserRow, account: AccountRow, domainPath: string): Promise<void> {
  if (account.type === ACCOUNT_TYPES.Admin) return;
  const allowed = await app.settings.getNumber('incorrect.login.attempts.allowed');
  if (await app.directory.recordFailedLogin(user.id, allowed)) {
    app.logger.warn('user disabled after failed logins', { user: user.uuid, attempts: allowed });
    await app.events.record({
      type: 'USER.DISABLE', level: 'WARN', resourceType: 'User', resourceId: user.uuid,
      description: `User ${user.username} in domain ${prettyDomain(domainPath)} has been disabled due to multiple failed login attempts. Please contact admin.`,
      actor: { userId: user.id, accountId: account.id, domainId: account.domain_id },
    });
  }
}

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
  if (!user) throw failure();
  const account = await app.directory.accountById(user.account_id);
  if (!account) throw failure();
  if (!valid) {
    await countFailure(app, user, account, domain.path);
    throw failure();
  }
  const caller = await app.directory.loadCaller(user.id);
  if (!caller) {
    throw new ApiError(531, `User ${user.username} (or their account) in domain ${prettyDomain(domain.path)} is disabled/locked. Please contact the administrator.`);
  }
  await app.directory.resetLoginAttempts(user.id);

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
    timezoneoffset: user.timezone ? '0.0' : undefined,
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
