import type { App } from '../app';
import { prettyPath } from '../commands/responses/identity';
import { ACCOUNT_TYPES } from '../identity/caller';
import type { Account, User } from '../identity/directory';
import { verifyPassword } from '../identity/password';
import { ApiError } from '../core/errors';
import type { ApiParams } from './request';
import { cookieValueFor } from '../identity/sessions';
import { addressThrottleKey, nameThrottleKey, pairThrottleKey, userThrottleKey, type AttemptKeys, type ThrottleVerdict } from '../identity/login-throttle';
import { formatDate } from '../core/dates';

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


const DUMMY_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA';

/**
 * After a wrong password on a reserved attempt: the last allowed one disables the user
 * (CloudStack's lockout; enableUser lifts it). Root-admin accounts are never counted, as
 * CloudStack's internal accounts, so nobody can lock the cloud's administrators out. A database
 * error here is logged and the caller still gets the generic failure.
 */
async function disableWhenExhausted(app: App, user: User, account: Account, allowed: number, domainPath: string): Promise<void> {
  try {
    if (!(await app.directory.disableWhenAttemptsExhausted(user.id, allowed))) return;
    app.logger.warn('user disabled after failed logins', { user: user.uuid, attempts: allowed });
    await app.events.record({
      type: 'USER.DISABLE', level: 'WARN', resourceType: 'User', resourceId: user.uuid,
      description: `User ${user.username} in domain ${prettyPath(domainPath)} has been disabled due to multiple failed login attempts. Please contact admin.`,
      actor: { userId: user.id, accountId: account.id, domainId: account.domainId },
    });
  } catch (e) {
    app.logger.error('could not record a failed login', { user: user.uuid, error: e instanceof Error ? e.message : String(e) });
  }
}

/**
 * Login throttling (src/identity/login-throttle.ts): the attempt is admitted under its (user,
 * address) pair, the user (an existing user by id, any other name by name, so both behave the
 * same; a waiting user still admits an address that has not failed for it) and the client
 * address, or refused unchecked with a text naming the time to wait for. A checked failure that
 * makes the user wait is an event (USER.LOGIN.THROTTLED) the user's admins see in listEvents.
 */
async function admitAttempt(app: App, keys: AttemptKeys, username: string): Promise<ThrottleVerdict> {
  const policy = await app.settings.loginThrottlePolicy();
  const verdict = await app.loginThrottle.admit(keys, policy);
  if (!verdict.admitted) {
    app.metrics.loginThrottled.inc();
    const until = formatDate(new Date(verdict.until));
    throw new ApiError(531, verdict.by === 'user'
      ? `Too many failed login attempts for user ${username}; the next attempt is checked after ${until}`
      : `Too many failed login attempts from this client address; the next attempt is checked after ${until}`);
  }
  return verdict;
}

/** After a checked wrong password: the log line and event when the user must now wait. */
async function noteFailure(app: App, user: User | undefined, account: Account | undefined, domainPath: string, userKey: string, clientAddress: string): Promise<void> {
  try {
    const policy = await app.settings.loginThrottlePolicy();
    const row = await app.repos.loginThrottle.get(userKey);
    if (!row || row.nextAllowed <= app.loginThrottle.now()) return;
    const until = formatDate(new Date(row.nextAllowed));
    app.logger.warn('login throttled after failed attempts', { user: user?.uuid, failures: row.failures, until, client: clientAddress, free: policy.userAttempts });
    if (!user || !account) return;
    await app.events.record({
      type: 'USER.LOGIN.THROTTLED', level: 'WARN', resourceType: 'User', resourceId: user.uuid,
      description: `User ${user.username} in domain ${prettyPath(domainPath)}: ${row.failures} failed login attempts (the last from ${clientAddress}); the next attempt is checked after ${until}`,
      actor: { userId: user.id, accountId: account.id, domainId: account.domainId },
    });
  } catch (e) {
    app.logger.error('could not record a throttled login', { error: e instanceof Error ? e.message : String(e) });
  }
}

/**
 * CloudStack's login (DefaultLoginAPIAuthenticatorCmd, reference §2.1): a new session, both the
 * JSESSIONID and the sessionkey cookies, and the flat loginresponse with `sessionkey`. Throttled
 * per user and per client address first (`admitAttempt`).
 */
export async function login(app: App, params: ApiParams, oldSessionCookie: string | undefined, clientAddress = 'unknown'): Promise<LoginOutcome> {
  const username = params.lower.get('username');
  const password = params.lower.get('password');
  if (!username) throw new ApiError(431, 'Unable to execute API command login due to missing parameter username', 4350);
  if (password === undefined) throw new ApiError(431, 'Unable to execute API command login due to missing parameter password', 4350);
  const domainId = params.lower.get('domainid');
  const domain = domainId
    ? /^\d+$/.test(domainId) ? await app.repos.domains.byId(Number(domainId)) : await app.repos.domains.byUuid(domainId)
    : await app.repos.domains.byPath(normaliseDomainPath(params.lower.get('domain') || '/'));
  const failure = () => new ApiError(531, `Failed to authenticate user ${username} in domain ${domain?.id ?? domainId ?? params.lower.get('domain') ?? 1}; please provide valid credentials`);
  const user = domain && (await app.directory.userForLogin(username, domain.id));
  const userKey = user ? userThrottleKey(user.id) : nameThrottleKey(domain ? String(domain.id) : `?${domainId ?? params.lower.get('domain') ?? ''}`, username);
  const throttleKeys: AttemptKeys = { pair: pairThrottleKey(userKey, clientAddress), user: userKey, address: addressThrottleKey(clientAddress) };
  const verdict = await admitAttempt(app, throttleKeys, username);
  const account = user && (await app.repos.accounts.byId(user.accountId));
  if (!domain || !user || !account) {
    await verifyPassword(password, DUMMY_HASH); // as long as a known user takes: timing does not reveal which domains and users exist
    await noteFailure(app, undefined, undefined, '/', userKey, clientAddress);
    throw failure();
  }
  // incorrect.login.attempts.allowed: an attempt is reserved before the password is checked, so no
  // more than `allowed` guesses are ever checked, however many arrive at once. A user the lockout
  // disabled gets the generic failure whatever the password: a guess confirms nothing.
  const allowed = account && account.type !== ACCOUNT_TYPES.Admin ? await app.settings.getNumber('incorrect.login.attempts.allowed', { accountId: account.id, domainId: account.domainId }) : 0;
  let lockedOut = !!user && allowed > 0 && user.state !== 'enabled' && user.loginAttempts >= allowed;
  const reserved = !!user && allowed > 0 && user.state === 'enabled' && (await app.directory.reserveLoginAttempt(user.id, allowed));
  if (user && account && allowed > 0 && user.state === 'enabled' && !reserved) {
    // No attempt left (a burst used them, or the setting was lowered): the user is disabled now.
    lockedOut = true;
    await disableWhenExhausted(app, user, account, allowed, domain.path);
  }
  // Hash even for a locked-out user, so timing does not reveal which usernames exist.
  const valid = await verifyPassword(password, !lockedOut ? user.passwordHash : DUMMY_HASH);
  if (lockedOut) {
    await noteFailure(app, user, account, domain.path, userKey, clientAddress);
    throw failure();
  }
  if (!valid) {
    if (reserved) await disableWhenExhausted(app, user, account, allowed, domain.path);
    await noteFailure(app, user, account, domain.path, userKey, clientAddress);
    throw failure();
  }
  await app.loginThrottle.succeeded(verdict, throttleKeys);
  const caller = await app.directory.loadCaller(user.id);
  if (!caller) {
    throw new ApiError(531, `User ${user.username} (or their account) in domain ${prettyPath(domain.path)} is disabled/locked. Please contact the administrator.`);
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
