import { paramError } from '../core/errors';
import type { HsmProfile } from '../db/repositories/hsm-profiles';
import type { KmsKey } from '../db/repositories/kms-keys';

/**
 * The checks every KMS command shares, each with its one text (431 unless said otherwise). Run
 * them before the first write.
 */

/** The key, or 431 "KMS key not found: <uuid>" when there is no live key by that uuid. */
export function requireKey<K>(key: K | undefined, uuid: string): K {
  if (!key) throw keyNotFound(uuid);
  return key;
}

/**
 * 431 "KMS key is not enabled: <uuid>" unless the key is enabled. `use` names what it was wanted
 * for ("volume encryption": "... is not enabled and cannot be used for volume encryption: <uuid>").
 */
export function requireUsableKey<K extends Pick<KmsKey, 'uuid' | 'enabled'>>(key: K, use?: string): K {
  if (!key.enabled) throw paramError(`KMS key is not enabled${use ? ` and cannot be used for ${use}` : ''}: ${key.uuid}`);
  return key;
}

/**
 * 431 "HSM profile is not enabled: <name>" unless the profile is live and enabled; a profile that
 * is gone is named by `ref` (its id) when there is no row to name it.
 */
export function requireEnabledProfile<P extends Pick<HsmProfile, 'name' | 'enabled'> & { removed?: Date | null }>(
  profile: P | undefined, ref?: string | number,
): P {
  if (!profile || !profile.enabled || (profile.removed !== undefined && profile.removed !== null)) {
    throw paramError(`HSM profile is not enabled: ${profile?.name ?? ref}`);
  }
  return profile;
}

/** 431 "HSM profile not found: <ref>". */
export function requireProfile<P>(profile: P | undefined, ref: string | number): P {
  if (!profile) throw paramError(`HSM profile not found: ${ref}`);
  return profile;
}

/** 431 "KMS key not found: <uuid>" (a key that vanished between two steps). */
export const keyNotFound = (uuid: string) => paramError(`KMS key not found: ${uuid}`);
