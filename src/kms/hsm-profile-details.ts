import type { MasterKey } from '../config/master-key';
import type { Repositories } from '../db/repositories';
import type { HsmProfileConfig, ProviderKind } from '../providers/provider';

/** CloudStack's KMSProvider.isSensitiveKey: pin, password, anything with "secret", private_key. */
export function isSensitiveDetail(name: string): boolean {
  const n = name.toLowerCase();
  return n === 'pin' || n === 'password' || n.includes('secret') || n === 'private_key';
}

export const MASKED = '*****';

/** The authenticated place of a sensitive profile detail under the master key. */
export const detailAad = (profileUuid: string, name: string) => `hsm-profile-detail:${profileUuid}:${name.toLowerCase()}`;

/** The stored form of a detail value: sensitive ones encrypted under the master key, bound to profile and name. */
export function storedDetailValue(masterKey: MasterKey, profileUuid: string, name: string, value: string): string {
  return isSensitiveDetail(name) ? masterKey.encryptString(value, detailAad(profileUuid, name)) : value;
}

/** Details as responses show them: sensitive values masked. */
export function maskedDetails(rows: ReadonlyArray<{ name: string; value: string }>): Record<string, string> {
  return Object.fromEntries(rows.map((r) => [r.name, isSensitiveDetail(r.name) ? MASKED : r.value]));
}

/** What a provider configuration is made from: the profile's identity and protocol. */
export interface ProfileIdentity { id: number; uuid: string; name: string; protocol: string }

/** A profile as a provider needs it, with sensitive details decrypted (never log or return it). */
export async function loadProfileConfig(
  repos: Pick<Repositories, 'hsmProfiles'>, masterKey: MasterKey, profile: ProfileIdentity,
): Promise<HsmProfileConfig> {
  const { hsmProfiles } = repos;
  const details: Record<string, string> = {};
  for (const r of await hsmProfiles.details(profile.id)) {
    details[r.name] = isSensitiveDetail(r.name) ? masterKey.decryptString(r.value, detailAad(profile.uuid, r.name)) : r.value;
  }
  return { id: profile.uuid, name: profile.name, protocol: profile.protocol as ProviderKind, details };
}
