import type { ConfigurationRepository, ScopeKind } from '../db/repositories/configuration';
import { paramError } from '../core/errors';
import { KEY_BITS } from '../core/key-bits';

export type { ScopeKind } from '../db/repositories/configuration';

/** One setting, declared once: its default, validation, scopes and help come from here only. */
export interface SettingSpec {
  name: string;
  /**
   * Where a value other than the global one may be set (CloudStack's ConfigKey.Scope): empty for a
   * global-only setting. A scoped value applies only to reads made in that zone, domain or account.
   */
  scopes: readonly ScopeKind[];
  category: string;
  description: string;
  type: 'Number' | 'String';
  defaultValue: string;
  options?: readonly string[];
  /** A sentence naming what is wrong, or undefined when the value is valid. */
  validate(value: string): string | undefined;
}

const intIn = (min: number, max: number) => (v: string) =>
  /^-?\d+$/.test(v) && Number(v) >= min && Number(v) <= max ? undefined : `must be an integer from ${min} to ${max}`;
const oneOf = (options: readonly string[]) => (v: string) =>
  options.includes(v) ? undefined : `must be one of ${options.join(', ')}`;

const DEK_SIZES = KEY_BITS.map(String);
const SESSION_KEY_LOCATIONS = ['CookieOrParameter', 'ParameterOnly', 'CookieAndParameter'] as const;

/**
 * Every setting this server has. Scopes: CloudStack 4.23 declares each kms.* key Global
 * (`KMSManager` ConfigKeys, ConfigKey.Scope.Global), and `incorrect.login.attempts.allowed` is a
 * Global entry of its `Config` enum; `api.sessionkey.check.locations` is this server's own and
 * global. So none has a zone, domain or account value: updateConfiguration with zoneid, domainid or
 * accountid for them is CloudStack's 431, never a change of the global value.
 */
export const SETTINGS: readonly SettingSpec[] = [
  { name: 'kms.dek.size.bits', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '256', options: DEK_SIZES,
    description: 'Size of generated DEKs in bits. Valid values are 128, 192 and 256.', validate: oneOf(DEK_SIZES) },
  { name: 'kms.retry.count', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '3',
    description: 'Number of retry attempts on transient KMS operation failures.', validate: intIn(0, 10) },
  { name: 'kms.retry.delay.ms', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '1000',
    description: 'Base delay in milliseconds for exponential back-off between retry attempts.', validate: intIn(0, 60000) },
  { name: 'kms.operation.timeout.sec', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '30',
    description: 'Timeout in seconds for a single KMS cryptographic operation.', validate: intIn(1, 3600) },
  { name: 'kms.rewrap.batch.size', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '50',
    description: 'Number of DEKs to rewrap per background job iteration during KEK rotation.', validate: intIn(1, 100000) },
  { name: 'kms.rewrap.interval.ms', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '300000',
    description: 'Interval in milliseconds between background DEK rewrapping runs; 0 disables the background rewrap.',
    validate: intIn(0, 86_400_000) },
  { name: 'kms.kek.destroy.delay.days', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '30',
    description: 'Days an Archived KEK version (drained by the rewrap after a rotation) is kept in its backend before it is destroyed, so DEKs in a database backup taken before the rotation can still be unwrapped; 0 destroys it as soon as it drains, as CloudStack does. deleteKMSKey and a purge (npm run admin -- purge-archived-keks) destroy at once. (Not a CloudStack setting.)',
    validate: intIn(0, 36500) },
  { name: 'incorrect.login.attempts.allowed', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '5',
    description: 'Incorrect login attempts allowed before the user is disabled (when value > 0). If value <=0 users are not disabled after failed login attempts',
    validate: intIn(-2147483648, 2147483647) },
  { name: 'kms.login.throttle.attempts', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '3',
    description: 'Failed logins per user (root admins included) answered at full speed within kms.login.throttle.window.sec; after that each further attempt must wait (kms.login.throttle.delay.ms, doubling). 0 disables the per-user throttle. An extension of this server.',
    validate: intIn(0, 1000) },
  { name: 'kms.login.throttle.address.attempts', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '20',
    description: 'Failed logins per client address answered at full speed within kms.login.throttle.window.sec before each further attempt from it must wait. 0 disables the per-address throttle. An extension of this server.',
    validate: intIn(0, 100000) },
  { name: 'kms.login.throttle.delay.ms', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '5000',
    description: 'Wait in milliseconds before the first throttled login attempt; it doubles with each further failure. An extension of this server.',
    validate: intIn(1, 3_600_000) },
  { name: 'kms.login.throttle.max.delay.ms', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '60000',
    description: 'The longest wait in milliseconds between two checked login attempts of one user or address. An extension of this server.',
    validate: intIn(1, 86_400_000) },
  { name: 'kms.login.throttle.window.sec', scopes: [], category: 'Advanced', type: 'Number', defaultValue: '900',
    description: 'Failed logins are forgotten after this many seconds without a failure. An extension of this server.',
    validate: intIn(1, 604_800) },
  { name: 'api.sessionkey.check.locations', scopes: [], category: 'Advanced', type: 'String', defaultValue: 'CookieAndParameter',
    options: SESSION_KEY_LOCATIONS,
    description: 'Where the session key of a session request must be present: CookieAndParameter (both, equal), CookieOrParameter (at least one; older UIs send only the cookie) or ParameterOnly.',
    validate: oneOf(SESSION_KEY_LOCATIONS) },
];

export type SettingName =
  | 'kms.dek.size.bits' | 'kms.retry.count' | 'kms.retry.delay.ms' | 'kms.operation.timeout.sec'
  | 'kms.rewrap.batch.size' | 'kms.rewrap.interval.ms' | 'kms.kek.destroy.delay.days' | 'api.sessionkey.check.locations' | 'incorrect.login.attempts.allowed'
  | 'kms.login.throttle.attempts' | 'kms.login.throttle.address.attempts' | 'kms.login.throttle.delay.ms' | 'kms.login.throttle.max.delay.ms'
  | 'kms.login.throttle.window.sec';

export const findSetting = (name: string): SettingSpec | undefined => SETTINGS.find((s) => s.name === name);

/** Where a read happens: the zone, domain and account it concerns (each optional). */
export interface SettingContext {
  readonly zoneId?: number;
  readonly domainId?: number;
  readonly accountId?: number;
}

/** One zone, domain or account whose own value is read or written. */
export interface ScopeTarget {
  readonly scope: ScopeKind;
  readonly id: number;
}

/** Most specific first: an account's value wins over its domain's, a domain's over its zone's. */
const RESOLUTION: ReadonlyArray<[ScopeKind, keyof SettingContext]> = [['account', 'accountId'], ['domain', 'domainId'], ['zone', 'zoneId']];

/**
 * Settings stored in the `configuration` table (global values) and `configuration_scoped` (zone,
 * domain and account values). Reads go to the database (with a short cache), so a change made
 * through any API node reaches every worker without a restart.
 */
export class Settings {
  #cache = new Map<string, { value: string | undefined; at: number }>();

  constructor(
    private readonly config: ConfigurationRepository,
    private readonly cacheMs = 1000,
    /** The declared settings (SETTINGS); a spec may declare others to exercise scopes. */
    private readonly specs: readonly SettingSpec[] = SETTINGS,
  ) {}

  /** The declaration of `name`, or undefined. */
  find(name: string): SettingSpec | undefined {
    return this.specs.find((s) => s.name === name);
  }

  /**
   * The value that applies where the read happens: the most specific value stored for a scope the
   * setting has and the context names, else the global value, else the default.
   */
  async get(name: SettingName, context: SettingContext = {}): Promise<string> {
    const spec = this.find(name)!;
    for (const [scope, field] of RESOLUTION) {
      const id = context[field];
      if (id === undefined || !spec.scopes.includes(scope)) continue;
      const scoped = await this.cached(`${name}|${scope}|${id}`, () => this.config.getScoped(name, scope, id));
      if (scoped !== undefined) return scoped;
    }
    return (await this.cached(name, () => this.config.get(name))) ?? spec.defaultValue;
  }

  async getNumber(name: SettingName, context: SettingContext = {}): Promise<number> {
    return Number(await this.get(name, context));
  }

  private async cached(key: string, read: () => Promise<string | undefined>): Promise<string | undefined> {
    const hit = this.#cache.get(key);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.value;
    const value = await read();
    this.#cache.set(key, { value, at: Date.now() });
    return value;
  }

  /** The declaration, or a param error naming the setting and, for a scope it lacks, CloudStack's text. */
  require(name: string, target?: ScopeTarget): SettingSpec {
    const spec = this.find(name);
    if (!spec) throw paramError(`Configuration ${name} not found; see listConfigurations for the settings this server has`);
    if (target && !spec.scopes.includes(target.scope)) {
      const has = spec.scopes.length ? `global and ${spec.scopes.join(', ')}` : 'global only';
      throw paramError(`Invalid scope id provided for the parameter ${name}: it has no ${target.scope} scope (its scopes: ${has}); nothing was changed`);
    }
    return spec;
  }

  /** Validates and stores, globally or for one scope; throws a param error naming the setting and the allowed values or scopes. */
  async set(name: string, value: string, target?: ScopeTarget): Promise<SettingSpec> {
    const spec = this.require(name, target);
    const problem = spec.validate(value);
    if (problem) throw paramError(`Invalid value ${JSON.stringify(value)} for configuration ${name}: ${problem}`);
    if (target) await this.config.putScoped(name, target.scope, target.id, value, new Date());
    else await this.config.put(name, value, new Date());
    this.forget(name, target);
    return spec;
  }

  /** Removes the global value (the default applies) or one scope's value (what the scope inherits applies). */
  async reset(name: string, target?: ScopeTarget): Promise<SettingSpec> {
    const spec = this.require(name, target);
    await this.config.remove(name, target && { scope: target.scope, scopeId: target.id });
    this.forget(name, target);
    return spec;
  }

  private forget(name: string, target?: ScopeTarget): void {
    this.#cache.delete(target ? `${name}|${target.scope}|${target.id}` : name);
  }

  /** Current global values of every declared setting. */
  async all(): Promise<Array<{ spec: SettingSpec; value: string }>> {
    const stored = await this.config.all();
    return this.specs.map((spec) => ({ spec, value: stored.get(spec.name) ?? spec.defaultValue }));
  }

  /**
   * The settings that have `scope`, each with the value that applies in `context` (CloudStack's
   * listConfigurations with zoneid/domainid/accountid lists only the settings of that scope).
   */
  async inScope(scope: ScopeKind, context: SettingContext): Promise<Array<{ spec: SettingSpec; value: string }>> {
    const specs = this.specs.filter((s) => s.scopes.includes(scope));
    return Promise.all(specs.map(async (spec) => ({ spec, value: await this.get(spec.name as SettingName, context) })));
  }

  /** The login throttle's policy (kms.login.throttle.*), as src/identity/login-throttle.ts reads it. */
  async loginThrottlePolicy(): Promise<{ userAttempts: number; addressAttempts: number; delayMs: number; maxDelayMs: number; windowMs: number }> {
    return {
      userAttempts: await this.getNumber('kms.login.throttle.attempts'),
      addressAttempts: await this.getNumber('kms.login.throttle.address.attempts'),
      delayMs: await this.getNumber('kms.login.throttle.delay.ms'),
      maxDelayMs: await this.getNumber('kms.login.throttle.max.delay.ms'),
      windowMs: (await this.getNumber('kms.login.throttle.window.sec')) * 1000,
    };
  }

  /** The backend retry/timeout policy as the providers need it. */
  async backendPolicy(): Promise<{ timeoutMs: number; retries: number; baseDelayMs: number }> {
    return {
      timeoutMs: (await this.getNumber('kms.operation.timeout.sec')) * 1000,
      retries: await this.getNumber('kms.retry.count'),
      baseDelayMs: await this.getNumber('kms.retry.delay.ms'),
    };
  }
}
