import type { ConfigurationRepository } from '../db/repositories/configuration';
import { paramError } from '../core/errors';
import { KEY_BITS } from '../core/key-bits';

/** One global setting, declared once: its default, validation and help come from here only. */
export interface SettingSpec {
  name: string;
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

export const SETTINGS: readonly SettingSpec[] = [
  { name: 'kms.dek.size.bits', category: 'Advanced', type: 'Number', defaultValue: '256', options: DEK_SIZES,
    description: 'Size of generated DEKs in bits. Valid values are 128, 192 and 256.', validate: oneOf(DEK_SIZES) },
  { name: 'kms.retry.count', category: 'Advanced', type: 'Number', defaultValue: '3',
    description: 'Number of retry attempts on transient KMS operation failures.', validate: intIn(0, 10) },
  { name: 'kms.retry.delay.ms', category: 'Advanced', type: 'Number', defaultValue: '1000',
    description: 'Base delay in milliseconds for exponential back-off between retry attempts.', validate: intIn(0, 60000) },
  { name: 'kms.operation.timeout.sec', category: 'Advanced', type: 'Number', defaultValue: '30',
    description: 'Timeout in seconds for a single KMS cryptographic operation.', validate: intIn(1, 3600) },
  { name: 'kms.rewrap.batch.size', category: 'Advanced', type: 'Number', defaultValue: '50',
    description: 'Number of DEKs to rewrap per background job iteration during KEK rotation.', validate: intIn(1, 100000) },
  { name: 'kms.rewrap.interval.ms', category: 'Advanced', type: 'Number', defaultValue: '300000',
    description: 'Interval in milliseconds between background DEK rewrapping runs; 0 disables the background rewrap.',
    validate: intIn(0, 86_400_000) },
  { name: 'incorrect.login.attempts.allowed', category: 'Advanced', type: 'Number', defaultValue: '5',
    description: 'Incorrect login attempts allowed before the user is disabled (when value > 0). If value <=0 users are not disabled after failed login attempts',
    validate: intIn(-2147483648, 2147483647) },
  { name: 'kms.login.throttle.attempts', category: 'Advanced', type: 'Number', defaultValue: '3',
    description: 'Failed logins per user (root admins included) answered at full speed within kms.login.throttle.window.sec; after that each further attempt must wait (kms.login.throttle.delay.ms, doubling). 0 disables the per-user throttle. An extension of this server.',
    validate: intIn(0, 1000) },
  { name: 'kms.login.throttle.address.attempts', category: 'Advanced', type: 'Number', defaultValue: '20',
    description: 'Failed logins per client address answered at full speed within kms.login.throttle.window.sec before each further attempt from it must wait. 0 disables the per-address throttle. An extension of this server.',
    validate: intIn(0, 100000) },
  { name: 'kms.login.throttle.delay.ms', category: 'Advanced', type: 'Number', defaultValue: '5000',
    description: 'Wait in milliseconds before the first throttled login attempt; it doubles with each further failure. An extension of this server.',
    validate: intIn(1, 3_600_000) },
  { name: 'kms.login.throttle.max.delay.ms', category: 'Advanced', type: 'Number', defaultValue: '60000',
    description: 'The longest wait in milliseconds between two checked login attempts of one user or address. An extension of this server.',
    validate: intIn(1, 86_400_000) },
  { name: 'kms.login.throttle.window.sec', category: 'Advanced', type: 'Number', defaultValue: '900',
    description: 'Failed logins are forgotten after this many seconds without a failure. An extension of this server.',
    validate: intIn(1, 604_800) },
  { name: 'api.sessionkey.check.locations', category: 'Advanced', type: 'String', defaultValue: 'CookieAndParameter',
    options: SESSION_KEY_LOCATIONS,
    description: 'Where the session key of a session request must be present: CookieAndParameter (both, equal), CookieOrParameter (at least one; older UIs send only the cookie) or ParameterOnly.',
    validate: oneOf(SESSION_KEY_LOCATIONS) },
];

export type SettingName =
  | 'kms.dek.size.bits' | 'kms.retry.count' | 'kms.retry.delay.ms' | 'kms.operation.timeout.sec'
  | 'kms.rewrap.batch.size' | 'kms.rewrap.interval.ms' | 'api.sessionkey.check.locations' | 'incorrect.login.attempts.allowed'
  | 'kms.login.throttle.attempts' | 'kms.login.throttle.address.attempts' | 'kms.login.throttle.delay.ms' | 'kms.login.throttle.max.delay.ms'
  | 'kms.login.throttle.window.sec';

export const findSetting = (name: string): SettingSpec | undefined => SETTINGS.find((s) => s.name === name);

/**
 * Global settings stored in the `configuration` table. Reads go to the database (with a short
 * cache), so a change made through any API node reaches every worker without a restart.
 */
export class Settings {
  #cache = new Map<string, { value: string; at: number }>();

  constructor(private readonly config: ConfigurationRepository, private readonly cacheMs = 1000) {}

  async get(name: SettingName): Promise<string> {
    const hit = this.#cache.get(name);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.value;
    const value = (await this.config.get(name)) ?? findSetting(name)!.defaultValue;
    this.#cache.set(name, { value, at: Date.now() });
    return value;
  }

  async getNumber(name: SettingName): Promise<number> {
    return Number(await this.get(name));
  }

  /** Validates and stores; throws a param error naming the setting and the allowed values. */
  async set(name: string, value: string): Promise<SettingSpec> {
    const spec = findSetting(name);
    if (!spec) throw paramError(`Configuration ${name} not found; see listConfigurations for the settings this server has`);
    const problem = spec.validate(value);
    if (problem) throw paramError(`Invalid value ${JSON.stringify(value)} for configuration ${name}: ${problem}`);
    await this.config.put(name, value, new Date());
    this.#cache.delete(name);
    return spec;
  }

  /** Current values of every declared setting. */
  async all(): Promise<Array<{ spec: SettingSpec; value: string }>> {
    const stored = await this.config.all();
    return SETTINGS.map((spec) => ({ spec, value: stored.get(spec.name) ?? spec.defaultValue }));
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
