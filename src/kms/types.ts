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
