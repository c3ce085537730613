import { formatDate } from '../../core/dates';
import { isRootAdmin, type Caller } from '../../identity/caller';
import type { KmsKeyView } from '../../kms/kms-keys';
import { rewrapRemaining, type KekVersionSummary } from '../../kms/rewrap-progress';
import type { ResponseField } from '../define';
import { prettyPath } from './identity';
import { ownerOf, projectFields } from './owner';

/** KMSKeyResponse fields (reference §1.5). */
export const kmsKeyFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the ID of the KMS key' },
  { name: 'name', type: 'string', description: 'the name of the KMS key' },
  { name: 'description', type: 'string', description: 'the description of the KMS key' },
  { name: 'account', type: 'string', description: 'the account owning the key' },
  { name: 'accountid', type: 'string', description: 'the ID of the account owning the key' },
  ...projectFields,
  { name: 'domainid', type: 'string', description: 'the ID of the domain of the owning account' },
  { name: 'domain', type: 'string', description: 'the name of the domain of the owning account' },
  { name: 'domainpath', type: 'string', description: 'the path of the domain of the owning account' },
  { name: 'zoneid', type: 'string', description: 'the ID of the zone the key belongs to' },
  { name: 'zonename', type: 'string', description: 'the name of the zone the key belongs to' },
  { name: 'hsmprofileid', type: 'string', description: 'the ID of the HSM profile holding the active KEK version' },
  { name: 'hsmprofile', type: 'string', description: 'the name of the HSM profile holding the active KEK version' },
  { name: 'standbyhsmprofileid', type: 'string', description: 'the ID of the standby HSM profile that also wraps every DEK of the key; an extension of CloudStack\'s API' },
  { name: 'standbyhsmprofile', type: 'string', description: 'the name of the standby HSM profile; an extension of CloudStack\'s API' },
  { name: 'standbywrappedkeys', type: 'integer', description: 'wrapped DEKs that also have a standby wrap (with a standby); an extension of CloudStack\'s API' },
  { name: 'purpose', type: 'string', description: 'what the key protects: volume (volume encryption keys)' },
  { name: 'algorithm', type: 'string', description: 'the algorithm of the key' },
  { name: 'keybits', type: 'integer', description: 'the size of the active KEK version in bits' },
  { name: 'version', type: 'integer', description: 'the number of the active KEK version' },
  { name: 'enabled', type: 'boolean', description: 'true if the key may be used' },
  { name: 'created', type: 'date', description: 'the date the key was created' },
  { name: 'keklabel', type: 'string', description: 'the backend label of the active KEK version (root admin only)' },
  { name: 'rewrapremaining', type: 'integer', description: 'wrapped DEKs still on Previous KEK versions, waiting for the background rewrap' },
  {
    name: 'versions', type: 'list', description: 'the KEK versions of the key, oldest first',
    response: [
      { name: 'version', type: 'integer', description: 'the version number' },
      { name: 'status', type: 'string', description: 'Active, Previous (DEKs being rewrapped away) or Archived (drained)' },
      { name: 'wrappedkeys', type: 'integer', description: 'wrapped DEKs on this version' },
      { name: 'created', type: 'date', description: 'when the version was created' },
      { name: 'archived', type: 'date', description: 'when the version was archived' },
      { name: 'destroyed', type: 'boolean', description: 'true once the archived KEK was destroyed in its backend' },
      { name: 'destroyat', type: 'date', description: 'for an Archived version not yet destroyed: when its KEK will be destroyed (archival plus kms.kek.destroy.delay.days); an extension of CloudStack\'s API' },
    ],
  },
];

/** A key on the wire; `keklabel` only for the root admin (reference §1.5). */
export function kmsKeyResponse(k: KmsKeyView, caller: Caller, versions: readonly KekVersionSummary[] = [], standbyWrappedKeys = 0) {
  return {
    id: k.uuid, name: k.name, description: k.description ?? undefined,
    ...ownerOf(k), domainid: k.domainUuid, domain: k.domainName, domainpath: prettyPath(k.domainPath),
    zoneid: k.zoneUuid, zonename: k.zoneName, hsmprofileid: k.profileUuid, hsmprofile: k.profileName,
    standbyhsmprofileid: k.standbyProfileUuid ?? undefined, standbyhsmprofile: k.standbyProfileName ?? undefined,
    standbywrappedkeys: k.standbyProfileUuid ? standbyWrappedKeys : undefined,
    purpose: k.purpose, algorithm: k.algorithm, keybits: k.keyBits, version: k.version ?? undefined,
    enabled: k.enabled, created: formatDate(k.created),
    keklabel: isRootAdmin(caller) ? k.kekLabel : undefined,
    rewrapremaining: rewrapRemaining(versions),
    versions: versions.map((v) => ({
      version: v.version, status: v.status, wrappedkeys: v.wrappedKeys, created: formatDate(v.created),
      archived: formatDate(v.archived), destroyed: v.destroyed, destroyat: formatDate(v.destroyAt),
    })),
  };
}
