import { KmsError } from '../../core/errors';

/** How a pool opens and closes its resources (PKCS#11 sessions in production, fakes in tests). */
export interface PoolResources<S> {
  open(): S;
  close(session: S, last: boolean): void;
}

/**
 * A bounded pool of sessions. At most `max` are open; a caller that finds none idle waits in FIFO
 * order up to `acquireTimeoutMs`, then fails as 'unavailable' (retryable). withSession is the only
 * way to use a session; it always returns it, or closes it when `isBroken(error)` says the failure
 * may have left it unusable. drain() closes everything and fails all waiters.
 */
export class SessionPool<S> {
  readonly #idle: S[] = [];
  readonly #waiters: Array<{ resolve: (s: S) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  readonly #drained: Array<() => void> = [];
  #open = 0;
  #draining = false;

  constructor(
    private readonly name: string,
    private readonly resources: PoolResources<S>,
    private readonly max: number,
    private readonly acquireTimeoutMs: number,
    private readonly isBroken: (e: unknown) => boolean = () => true,
  ) {}

  /**
   * Runs fn with an exclusive session; the session is never shared by two calls at once. When
   * `signal` aborts (the operation timed out), waiting for a session stops, and a session whose call
   * was still running is closed when the call returns, never reused: its state is unknown.
   */
  async withSession<T>(fn: (session: S) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const session = await this.#acquire(signal);
    let broken = false;
    try {
      return await fn(session);
    } catch (e) {
      broken = this.isBroken(e);
      throw e;
    } finally {
      this.#release(session, broken || signal?.aborted === true);
    }
  }

  /** Sessions open and not lent out. */
  get idle(): number {
    return this.#idle.length;
  }

  /** Sessions currently open (idle plus lent out). */
  get size(): number {
    return this.#open;
  }

  /**
   * Closes idle sessions now and the lent-out ones as they come back; waiting and later callers fail.
   * Resolves when every session is closed.
   */
  drain(): Promise<void> {
    this.#draining = true;
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new KmsError('unavailable', `HSM session pool of ${this.name} was closed`));
    }
    while (this.#idle.length) this.#closeOne(this.#idle.pop() as S);
    if (this.#open === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  #acquire(signal?: AbortSignal): Promise<S> {
    if (signal?.aborted) return Promise.reject(new KmsError('unavailable', `Timed out waiting for an HSM session of ${this.name}`));
    if (this.#draining) return Promise.reject(new KmsError('unavailable', `HSM session pool of ${this.name} is closed`));
    const idle = this.#idle.pop();
    if (idle !== undefined) return Promise.resolve(idle);
    if (this.#open < this.max) {
      this.#open++;
      try {
        return Promise.resolve(this.resources.open());
      } catch (e) {
        this.#open--;
        return Promise.reject(e);
      }
    }
    return new Promise<S>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i < 0) return;
        this.#waiters.splice(i, 1);
        clearTimeout(waiter.timer);
        reject(new KmsError('unavailable', `Timed out waiting for an HSM session of ${this.name} (max_sessions ${this.max})`));
      };
      const waiter = {
        resolve: (s: S) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject: (e: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          signal?.removeEventListener('abort', onAbort);
          reject(new KmsError('unavailable', `No HSM session of ${this.name} became free within ${this.acquireTimeoutMs} ms (max_sessions ${this.max})`));
        }, this.acquireTimeoutMs),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #release(session: S, broken: boolean): void {
    if (broken || this.#draining) {
      this.#closeOne(session);
      this.#refill();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(session);
    } else {
      this.#idle.push(session);
    }
  }

  /** After a broken session was closed, a waiter gets a freshly opened one instead of waiting on. */
  #refill(): void {
    if (this.#draining || this.#open >= this.max) return;
    const waiter = this.#waiters.shift();
    if (!waiter) return;
    clearTimeout(waiter.timer);
    this.#open++;
    try {
      waiter.resolve(this.resources.open());
    } catch (e) {
      this.#open--;
      waiter.reject(e as Error);
    }
  }

  #closeOne(session: S): void {
    this.#open--;
    try {
      this.resources.close(session, this.#open === 0);
    } finally {
      if (this.#open === 0 && this.#draining) for (const done of this.#drained.splice(0)) done();
    }
  }
}
