import { KmsError } from '../core/errors';
import type { HsmProfileConfig } from './provider';

/** A profile's health as listHSMProfiles shows it. */
export type ProfileHealthState = 'Healthy' | 'Degraded';

/** The health of one profile this process has used. */
export interface ProfileHealth {
  profileId: string;
  name: string;
  health: ProfileHealthState;
  /** When the profile entered this state (ms since the epoch). */
  since: number;
  /** Why it is Degraded: the last failure's message (never a PIN or key). */
  reason?: string;
}

/** Options of the per-profile circuits. */
export interface CircuitOptions {
  /** Consecutive failed operations (after retries) that mark a profile Degraded. @defaultValue 3 */
  threshold?: number;
  /** First wait before probing a Degraded profile, doubled per failed probe. @defaultValue 500 */
  probeDelayMs?: number;
  /** @defaultValue 10000 */
  maxProbeDelayMs?: number;
  /** Asks the backend one cheap question; resolves when it answers. */
  probe(profile: HsmProfileConfig): Promise<void>;
  /** Called on every change of a profile's state. */
  onChange?(health: ProfileHealth): void;
}

interface Circuit {
  profile: HsmProfileConfig;
  health: ProfileHealthState;
  since: number;
  reason?: string;
  failures: number;
  probeDelayMs: number;
  timer?: NodeJS.Timeout;
}

/**
 * A circuit per HSM profile. Operations that fail as 'unavailable' (device faults, timeouts) count;
 * `threshold` of them in a row mark the profile Degraded, and calls then fail at once with a 530
 * naming the profile instead of queueing behind timeouts. A probe runs in the background with
 * back-off and closes the circuit when the backend answers. Any other outcome (success, a wrong
 * PIN, a tampered blob) resets the count: those say the backend is reachable.
 */
export class ProfileCircuits {
  readonly #circuits = new Map<string, Circuit>();
  readonly #threshold: number;
  readonly #probeDelayMs: number;
  readonly #maxProbeDelayMs: number;
  #closed = false;

  constructor(private readonly opts: CircuitOptions) {
    this.#threshold = opts.threshold ?? 3;
    this.#probeDelayMs = opts.probeDelayMs ?? 500;
    this.#maxProbeDelayMs = opts.maxProbeDelayMs ?? 10_000;
  }

  /**
   * Runs `fn` unless the profile is Degraded (then throws 'unavailable' at once), and counts its
   * outcome. `failureOf` names a value that still counts as a failure: a batch whose every item
   * failed as 'unavailable' says the backend is down as clearly as a thrown error.
   */
  async guard<T>(profile: HsmProfileConfig, fn: () => Promise<T>, failureOf?: (value: T) => KmsError | undefined): Promise<T> {
    const c = this.#circuit(profile);
    if (c.health === 'Degraded') {
      throw new KmsError('unavailable', `HSM profile ${profile.name} is degraded (${c.reason ?? 'not answering'}); failing fast until it answers again`);
    }
    try {
      const value = await fn();
      const failed = failureOf?.(value);
      if (failed?.kind === 'unavailable') this.#failed(c, failed);
      else c.failures = 0;
      return value;
    } catch (e) {
      if (e instanceof KmsError && e.kind === 'unavailable') this.#failed(c, e);
      else c.failures = 0;
      throw e;
    }
  }

  /** True while calls to the profile fail fast. */
  isDegraded(profileId: string): boolean {
    return this.#circuits.get(profileId)?.health === 'Degraded';
  }

  /** Every profile this process has used, with its state. */
  list(): ProfileHealth[] {
    return [...this.#circuits.values()].map(view);
  }

  /**
   * Forgets a profile (disabled, deleted or changed): its probe stops and its decrypted
   * configuration is dropped; its next use starts Healthy with the current configuration.
   */
  forget(profileId: string): void {
    const c = this.#circuits.get(profileId);
    if (!c) return;
    clearTimeout(c.timer);
    this.#circuits.delete(profileId);
  }

  /** Stops the probes. */
  close(): void {
    this.#closed = true;
    for (const c of this.#circuits.values()) clearTimeout(c.timer);
  }

  #circuit(profile: HsmProfileConfig): Circuit {
    let c = this.#circuits.get(profile.id);
    if (!c) {
      c = { profile, health: 'Healthy', since: Date.now(), failures: 0, probeDelayMs: this.#probeDelayMs };
      this.#circuits.set(profile.id, c);
    }
    c.profile = profile;
    return c;
  }

  #failed(c: Circuit, e: KmsError): void {
    c.failures++;
    c.reason = e.message;
    if (c.health === 'Degraded' || c.failures < this.#threshold) return;
    c.health = 'Degraded';
    c.since = Date.now();
    c.probeDelayMs = this.#probeDelayMs;
    this.opts.onChange?.(view(c));
    this.#scheduleProbe(c);
  }

  #scheduleProbe(c: Circuit): void {
    if (this.#closed) return;
    c.timer = setTimeout(() => void this.#probe(c), c.probeDelayMs);
    c.timer.unref?.();
  }

  async #probe(c: Circuit): Promise<void> {
    try {
      await this.opts.probe(c.profile);
    } catch (e) {
      c.reason = e instanceof KmsError ? e.message : 'probe failed';
      // A refused PIN or another failure that a retry cannot mend stops the probes: repeated
      // wrong-PIN logins would lock the PIN on a real HSM. The profile stays Degraded until an
      // admin changes it (which forgets this circuit).
      if (e instanceof KmsError && !e.retryable) return;
      c.probeDelayMs = Math.min(this.#maxProbeDelayMs, c.probeDelayMs * 2);
      this.#scheduleProbe(c);
      return;
    }
    if (this.#closed || this.#circuits.get(c.profile.id) !== c) return;
    c.health = 'Healthy';
    c.since = Date.now();
    c.failures = 0;
    c.reason = undefined;
    this.opts.onChange?.(view(c));
  }
}

const view = (c: Circuit): ProfileHealth => ({
  profileId: c.profile.id, name: c.profile.name, health: c.health, since: c.since, ...(c.reason ? { reason: c.reason } : {}),
});
