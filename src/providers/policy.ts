import { AsyncLocalStorage } from 'node:async_hooks';
import { KmsError } from '../core/errors';
import type { BackendPolicy } from './provider';

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

/** The abort signal of the backend operation the current async context belongs to. */
const operation = new AsyncLocalStorage<AbortSignal>();

/**
 * The signal of the operation running under callWithPolicy, aborted when it times out: a backend
 * stops waiting for sessions or threads, and a session whose call is abandoned is never reused.
 */
export function operationSignal(): AbortSignal | undefined {
  return operation.getStore();
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Anything that is not a KmsError is a bug in a backend binding: internal, never retried. */
function asKmsError(e: unknown, op: string): KmsError {
  if (e instanceof KmsError) return e;
  return new KmsError('internal', `KMS operation ${op} failed unexpectedly`, { retryable: false, cause: e });
}

/** Objects with a dispose() (SecretBytes) that arrive after a timeout are zeroed, not leaked. */
function disposeLate(value: unknown): void {
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
): Promise<T> {
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
      const pending = operation.run(abort.signal, fn);
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
