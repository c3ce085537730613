import { KmsError } from '../core/errors';
import { operationProgress } from './policy';
import type { HsmProfileConfig } from './provider';

/**
 * The one profile every item of a batch names (see KekProvider.wrapMany), or undefined for an empty
 * batch. Throws 'param' when items name different profiles: a batch is one backend's round trip.
 */
export function batchProfile<R>(reqs: readonly R[], profileOf: (r: R) => HsmProfileConfig, what = 'KEK'): HsmProfileConfig | undefined {
  const first = reqs[0];
  if (first === undefined) return undefined;
  const profile = profileOf(first);
  for (const r of reqs) {
    if (profileOf(r).id !== profile.id) {
      throw new KmsError('param', `Every item of a batch must name the same HSM profile for its ${what} (${profile.name} and ${profileOf(r).name} differ)`);
    }
  }
  return profile;
}

/**
 * Runs `fn` per item, one after another, turning a KmsError into that item's failed result, and
 * reports each item to the batch's stall bound (operationProgress). Anything else is a bug: it is
 * thrown, after disposing results already made (SecretBytes).
 */
export async function eachItem<R, T>(reqs: readonly R[], fn: (r: R) => Promise<T>): Promise<Array<{ ok: true; value: T } | { ok: false; error: KmsError }>> {
  const out: Array<{ ok: true; value: T } | { ok: false; error: KmsError }> = [];
  const progress = operationProgress();
  for (const r of reqs) {
    try {
      out.push({ ok: true, value: await fn(r) });
    } catch (e) {
      if (!(e instanceof KmsError)) {
        for (const done of out) if (done.ok) (done.value as { dispose?: () => void })?.dispose?.();
        throw e;
      }
      out.push({ ok: false, error: e });
    }
    progress();
  }
  return out;
}
