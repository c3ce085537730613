/**
 * Facts of KMS keys that are not stored per row. The domain types of the KMS tables are defined
 * with their repositories (src/db/repositories/kms-keys.ts, kek-versions.ts, hsm-profiles.ts,
 * wrapped-keys.ts); KEK version states and transitions are src/kms/kek-states.ts.
 */

export type { KekStatus } from '../db/repositories/kek-versions';
export type { KmsKey, KmsKeyView } from '../db/repositories/kms-keys';
export type { HsmProfile, HsmProfileView, HsmProfileDetail } from '../db/repositories/hsm-profiles';
export type { KekVersion, KekVersionContext } from '../db/repositories/kek-versions';

/** The only purpose 4.23 creates (KeyPurpose.VOLUME_ENCRYPTION). */
export const KEY_PURPOSE = 'volume';

/** The algorithm CloudStack stores and shows for every KMS key. */
export const KEY_ALGORITHM = 'AES/GCM/NoPadding';

/**
 * @deprecated shim for src/kms/volumes.ts (area C): a `kms_keys` row as getKeyByUuid returned it.
 * New code uses `KmsKey` (kms.keys.byUuid / repos.kmsKeys.byUuid).
 */
export interface KmsKeyRow {
  id: number;
  uuid: string;
  name: string;
  description: string | null;
  kek_label: string;
  purpose: string;
  account_id: number;
  domain_id: number;
  zone_id: number;
  algorithm: string;
  key_bits: number;
  enabled: number | boolean;
  hsm_profile_id: number;
  created: number;
  removed: number | null;
}
