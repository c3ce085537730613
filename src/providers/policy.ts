import { AsyncLocalStorage } from 'node:async_hooks';
import { KmsError } from '../core/errors';
import type { BackendPolicy, ItemResult } from './provider';

/** Test seams for callWithPolicy; production code passes none. */
export interface PolicyHooks {
  /** Waits `ms` between attempts (default: setTimeout). */
  sleep?: (ms: number) => Promise<void>;
  /** A number in [0, 1) for the jitter (default: Math.random). */
  random?: () => number;
  /** Called before every retry with the attempt number (1 = first retry), the delay and the cause. */
  onRetry?: (info: { op: string; attempt: number; delayMs: number; error: KmsError }) => void;
}

/** Receives the outcome of every backend operation (metrics); must not throw or block. */
export interface BackendObserver {
  /** One operation finished: `outcome` is 'ok' or the KmsError kind; `seconds` includes retries. */
  operation(info: { profile: string; operation: string; outcome: string; seconds: number }): void;
  /** A transient failure is about to be retried. */
  retry(info: { profile: string; operation: string }): void;
}

/** The jitter adds up to this fraction of each back-off, so callers that failed together spread out. */
const JITTER = 0.1;

/** The backend operation the current async context belongs to. */
interface OperationContext {
  readonly signal: AbortSignal;
  /** How long the backend may make no progress at all before the operation counts as hung. */
  readonly stallMs: number;
  /** Tells the caller's stall bound that the backend finished a step (a batch item). */
  readonly progress?: () => void;
}
const operation = new AsyncLocalStorage<OperationContext>();

/**
 * The signal of the operation running under callWithPolicy, aborted when it times out: a backend
 * stops waiting for sessions or threads, and a session whose call is abandoned is never reused.
 */
export function operationSignal(): AbortSignal | undefined {
  return operation.getStore()?.signal;
}

/**
 * How long the backend may go without finishing any call before the running operation counts as
 * hung: the policy's operation timeout (also for a batch, whose overall timeout is scaled by its
 * size, so a hung HSM fails a batch as fast as a single call). Undefined outside callWithPolicy.
 */
export function operationStallMs(): number | undefined {
  return operation.getStore()?.stallMs;
}

/**
 * The running operation's progress callback, for a backend to call after each step of a batch (an
 * item done): a batch fails as stalled only when no step finished for operationStallMs(). A no-op
 * outside a batch.
 */
export function operationProgress(): () => void {
  return operation.getStore()?.progress ?? noProgress;
}
const noProgress = (): void => undefined;

/**
 * A backend that made no progress for the operation timeout (a call hung in the HSM). Retryable by
 * a later job, but a batch does not retry it within the same call: that would wait as long again.
 */
export class StalledError extends KmsError {
  constructor(message: string) {
    super('unavailable', message, { retryable: true });
  }
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Anything that is not a KmsError is a bug in a backend binding: internal, never retried. */
function asKmsError(e: unknown, op: string): KmsError {
  if (e instanceof KmsError) return e;
  return new KmsError('internal', `KMS operation ${op} failed unexpectedly`, { retryable: false, cause: e });
}

/** Objects with a dispose() (SecretBytes), alone or as batch results, that arrive after a timeout are zeroed, not leaked. */
function disposeLate(value: unknown): void {
  if (Array.isArray(value)) {
    for (const item of value) if (item && (item as ItemResult<unknown>).ok) disposeLate((item as { value: unknown }).value);
    return;
  }
  if (value && typeof (value as { dispose?: unknown }).dispose === 'function') {
    (value as { dispose(): void }).dispose();
  }
}

/**
 * Runs one backend operation under the policy. `policy.timeoutMs` bounds the whole call, retries and
 * back-off included; on expiry it throws KmsError('unavailable', "KMS operation <op> timed out after Ns")
 * (retryable by a later job, not here). A KmsError with `retryable` true is retried up to
 * `policy.retries` times after baseDelayMs * 2^attempt (+ up to 10% jitter); any other failure
 * (wrong PIN, missing library, tampered blob, unknown key) is thrown at once. Non-KmsErrors become
 * 'internal'. The backend call is not cancelled on timeout (an HSM call cannot be), but its
 * operationSignal() aborts, so it stops waiting for resources; a late result that has dispose() is disposed.
 */
export async function callWithPolicy<T>(
  policy: BackendPolicy,
  op: string,
  fn: () => Promise<T>,
  hooks: PolicyHooks = {},
  stall: { stallMs?: number; progress?: () => void } = {},
): Promise<T> {
  const stallMs = stall.stallMs ?? policy.timeoutMs;
  const sleep = hooks.sleep ?? defaultSleep;
  const random = hooks.random ?? Math.random;
  const deadline = Date.now() + policy.timeoutMs;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const abort = new AbortController();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
      const secs = Math.round(policy.timeoutMs / 100) / 10;
      reject(new KmsError('unavailable', `KMS operation ${op} timed out after ${secs}s`));
    }, policy.timeoutMs);
    timer.unref?.();
  });

  const attempts = async (): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      const pending = operation.run({ signal: abort.signal, stallMs, progress: stall.progress }, fn);
      try {
        const value = await pending;
        if (timedOut) disposeLate(value);
        return value;
      } catch (e) {
        const err = asKmsError(e, op);
        if (timedOut || !err.retryable || attempt >= policy.retries) throw err;
        const delayMs = Math.round(policy.baseDelayMs * 2 ** attempt * (1 + JITTER * random()));
        if (Date.now() + delayMs >= deadline) throw err;
        hooks.onRetry?.({ op, attempt: attempt + 1, delayMs, error: err });
        await sleep(delayMs);
        if (timedOut) throw err;
      }
    }
  };

  const run = attempts();
  run.catch(() => undefined); // a failure after the timeout has nobody left to hear it
  try {
    return await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** setTimeout's largest delay; a larger one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The overall timeout of a batch of `n` items: one operation timeout per item, as if they ran one
 * after another. A batch on a slow HSM must not fail for its size; a hung one fails sooner, by the
 * stall bound (no item finished within one operation timeout).
 */
export const batchTimeoutMs = (timeoutMs: number, n: number): number => Math.min(MAX_TIMER_MS, timeoutMs * Math.max(1, n));

/**
 * Runs a batch under the policy. The whole batch is bounded by batchTimeoutMs, while the backend may
 * go no longer than the policy timeout without finishing an item (operationStallMs; backends report
 * items through operationProgress, the PKCS#11 library thread through its heartbeat), so a hung HSM
 * fails a batch as fast as a single call, and a slow one is not failed for the batch's size. The first attempt runs every item; when it rejects as a whole with a
 * retryable error (not a stall) it is retried like a single call, else that error is thrown. Once
 * results are in, items that failed retryably are retried alone after the same back-off, up to
 * `policy.retries` attempts in all, within the batch's timeout; a retry that fails as a whole leaves
 * those items with their last error. Resolves with one result per item, in order.
 */
export async function callBatchWithPolicy<R, T>(
  policy: BackendPolicy,
  op: string,
  items: readonly R[],
  fn: (items: readonly R[]) => Promise<ItemResult<T>[]>,
  hooks: PolicyHooks = {},
): Promise<ItemResult<T>[]> {
  if (items.length === 0) return [];
  const sleep = hooks.sleep ?? defaultSleep;
  const random = hooks.random ?? Math.random;
  const deadline = Date.now() + batchTimeoutMs(policy.timeoutMs, items.length);
  const once = async (part: readonly R[]): Promise<ItemResult<T>[]> => {
    let last = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        if (Date.now() - last < policy.timeoutMs) return;
        reject(new StalledError(`KMS operation ${op} timed out: no item finished for ${Math.round(policy.timeoutMs / 100) / 10}s`));
      }, Math.max(10, Math.min(250, policy.timeoutMs / 4)));
      timer.unref?.();
    });
    const run = callWithPolicy({ ...policy, timeoutMs: Math.max(1, deadline - Date.now()), retries: 0 }, op, () => fn(part), hooks, {
      stallMs: policy.timeoutMs, progress: () => { last = Date.now(); },
    });
    try {
      return await Promise.race([run, stalled]);
    } catch (e) {
      run.then(disposeLate, () => undefined); // a stalled batch that answers late: zero its secrets
      throw e;
    } finally {
      clearInterval(timer);
    }
  };
  let results: ItemResult<T>[] | undefined;
  let pending = items.map((_, i) => i);
  for (let attempt = 0; ; attempt++) {
    let cause: KmsError;
    try {
      const got = await once(pending.map((i) => items[i]));
      if (!results) results = got;
      else pending.forEach((i, j) => { results![i] = got[j]; });
      pending = results.flatMap((r, i) => (!r.ok && r.error.retryable ? [i] : []));
      if (pending.length === 0) return results;
      cause = (results[pending[0]] as { error: KmsError }).error;
    } catch (e) {
      cause = e as KmsError;
      if (results) return results;
      if (!cause.retryable || cause instanceof StalledError) throw cause;
    }
    const delayMs = Math.round(policy.baseDelayMs * 2 ** attempt * (1 + JITTER * random()));
    if (attempt >= policy.retries || Date.now() + delayMs >= deadline) {
      if (results) return results;
      throw cause;
    }
    hooks.onRetry?.({ op, attempt: attempt + 1, delayMs, error: cause });
    await sleep(delayMs);
  }
}
