/**
 * Row shapes of the KMS tables (src/db/migrations/002_kms.ts). Booleans come back as 0/1 from
 * MariaDB and SQLite: read them with `bool()` from src/db/paging.ts.
 */

/** KEK version states with CloudStack's spelling: exactly one Active per key. */
export type KekStatus = 'Active' | 'Previous' | 'Archived';

export { KEY_BITS, type KeyBits } from '../core/key-bits';

/** The only purpose 4.23 creates (KeyPurpose.VOLUME_ENCRYPTION). */
export const KEY_PURPOSE = 'volume';

/** The algorithm CloudStack stores and shows for every KMS key. */
export const KEY_ALGORITHM = 'AES/GCM/NoPadding';

/** A `kms_hsm_profiles` row. `account_id` null with a `domain_id` is a domain-scoped profile. */
export interface HsmProfileRow {
  id: number;
  uuid: string;
  name: string;
  protocol: string;
  account_id: number | null;
  domain_id: number | null;
  zone_id: number | null;
  vendor_name: string | null;
  enabled: number | boolean;
  is_public: number | boolean;
  created: number;
  removed: number | null;
}

/** A `kms_hsm_profile_details` row; sensitive values are ciphertext under the master key. */
export interface HsmProfileDetailRow {
  id: number;
  profile_id: number;
  name: string;
  value: string;
}

/** A `kms_keys` row: a zone-scoped key owned by one account; `kek_label` mirrors the Active version. */
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

/** A `kms_kek_versions` row: one KEK in one backend, named by its label. */
export interface KekVersionRow {
  id: number;
  uuid: string;
  kms_key_id: number;
  version_number: number;
  kek_label: string;
  status: KekStatus;
  key_bits: number;
  hsm_profile_id: number;
  created: number;
  archived: number | null;
  removed: number | null;
}
