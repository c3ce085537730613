import type { Logger } from '../core/logger';
import type { Settings } from '../config/settings';
import type { LockRepository } from '../db/repositories/locks';
import type { ScheduleSpec } from './types';

/** Dependencies and tuning of the scheduler. */
export interface SchedulerDeps {
  locks: LockRepository;
  settings: Settings;
  logger: Logger;
  owner: string;
  /** Lease of a running tick; renewed every third of it. */
  leaseMs: number;
  /** The longest wait between looks at a schedule's interval setting and lock. */
  pollMs: number;
}

/**
 * Runs named periodic work in worker processes. Each schedule is one loop: read the interval
 * setting (0 disables), and when the deployment-wide lock says the schedule is due, take it with a
 * conditional update, run the tick while renewing the lease, and release it. So every worker may
 * run the same schedules and a tick still runs in one worker at a time.
 */
export class Scheduler {
  #specs = new Map<string, ScheduleSpec>();
  #timers = new Map<string, NodeJS.Timeout>();
  #running = new Set<Promise<void>>();
  #closing = new AbortController();
  #started = false;

  constructor(private readonly deps: SchedulerDeps) {}

  /** Adds a schedule; names are deployment-wide lock names and must be unique. */
  add(name: string, spec: ScheduleSpec): void {
    if (this.#specs.has(name)) throw new Error(`schedule ${name} is declared twice`);
    this.#specs.set(name, spec);
    if (this.#started) this.#arm(name, 0);
  }

  async start(): Promise<void> {
    this.#started = true;
    for (const name of this.#specs.keys()) this.#arm(name, 0);
  }

  /** Stops scheduling, aborts running ticks' signals and waits for them. */
  async close(): Promise<void> {
    this.#closing.abort();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    await Promise.allSettled([...this.#running]);
  }

  #arm(name: string, delayMs: number): void {
    if (this.#closing.signal.aborted) return;
    const timer = setTimeout(() => {
      const p = this.#tick(name)
        .catch((err: unknown) => {
          this.deps.logger.error('scheduled work failed', { schedule: name, error: err instanceof Error ? err.stack : String(err) });
          return this.deps.pollMs;
        })
        .then((next) => this.#arm(name, next))
        .finally(() => this.#running.delete(p));
      this.#running.add(p);
    }, delayMs);
    this.#timers.set(name, timer);
  }

  /** One look at a schedule; returns how long to wait before the next look. */
  async #tick(name: string): Promise<number> {
    const { locks, settings, owner, leaseMs, pollMs, logger } = this.deps;
    const spec = this.#specs.get(name)!;
    const interval = await settings.getNumber(spec.intervalSetting);
    if (!(interval > 0)) return pollMs;
    if (!(await locks.acquireIfDue(name, owner, interval, leaseMs))) {
      const wait = (await locks.dueAt(name, interval)) - Date.now();
      return Math.min(pollMs, Math.max(10, wait));
    }
    const lost = new AbortController();
    const renewer = setInterval(() => {
      locks.renew(name, owner, leaseMs).then((held) => { if (!held) lost.abort(); }, () => undefined);
    }, Math.max(100, Math.floor(leaseMs / 3)));
    try {
      await spec.run({ signal: AbortSignal.any([lost.signal, this.#closing.signal]) });
    } catch (err) {
      logger.error('scheduled work failed', { schedule: name, error: err instanceof Error ? err.stack : String(err) });
    } finally {
      clearInterval(renewer);
      await locks.release(name, owner);
    }
    return Math.min(pollMs, interval);
  }
}
