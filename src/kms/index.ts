import type { KmsDeps } from './deps';
import { DiskOfferings } from './disk-offerings';
import { HsmProfiles } from './hsm-profiles';
import { KeyRotation } from './kms-key-rotation';
import { KmsKeys } from './kms-keys';
import { Migration } from './migration';
import { Rewrapper } from './rewrap';
import { Volumes } from './volumes';
import { WrappedKeys } from './wrapped-keys';

export type { KmsDeps } from './deps';

/** The KMS services of one process, each built once by app.ts; handlers reach them as ctx.kms.*. */
export interface KmsServices {
  // ── KMS keys ──
  readonly keys: KmsKeys;
  readonly profiles: HsmProfiles;
  readonly rotation: KeyRotation;
  readonly rewrap: Rewrapper;
  readonly wrappedKeys: WrappedKeys;

  // ── volumes and the rest ──
  readonly volumes: Volumes;
  readonly migration: Migration;
  readonly diskOfferings: DiskOfferings;
}

/** Builds every KMS service over one set of dependencies. */
export function createKmsServices(deps: KmsDeps): KmsServices {
  return {
    // KMS keys
    keys: new KmsKeys(deps),
    profiles: new HsmProfiles(deps),
    rotation: new KeyRotation(deps),
    rewrap: new Rewrapper(deps),
    wrappedKeys: new WrappedKeys(deps),

    // volumes and the rest
    volumes: new Volumes(deps),
    migration: new Migration(deps),
    diskOfferings: new DiskOfferings(deps),
  };
}
