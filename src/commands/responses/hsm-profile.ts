import { formatDate } from '../../core/dates';
import { maskedDetails } from '../../kms/hsm-profile-details';
import type { HsmProfileDetail, HsmProfileView } from '../../kms/hsm-profiles';
import type { ResponseField } from '../define';
import { prettyPath } from './identity';
import { ownerOf, projectFields } from './owner';

/** HSMProfileResponse fields (reference §1.1, §5 item 3: the vendor is `vendor`). */
export const hsmProfileFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'the ID of the HSM profile' },
  { name: 'name', type: 'string', description: 'the name of the HSM profile' },
  { name: 'protocol', type: 'string', description: 'the backend protocol: pkcs11 or database' },
  { name: 'vendor', type: 'string', description: 'the HSM vendor name' },
  { name: 'accountid', type: 'string', description: 'the ID of the account owning the profile, for account-owned profiles' },
  { name: 'account', type: 'string', description: 'the account owning the profile, for account-owned profiles' },
  ...projectFields,
  { name: 'domainid', type: 'string', description: 'the ID of the domain of the profile' },
  { name: 'domain', type: 'string', description: 'the name of the domain of the profile' },
  { name: 'domainpath', type: 'string', description: 'the path of the domain of the profile' },
  { name: 'zoneid', type: 'string', description: 'the ID of the zone the profile is scoped to; absent for all zones' },
  { name: 'zonename', type: 'string', description: 'the name of the zone the profile is scoped to' },
  { name: 'ispublic', type: 'boolean', description: 'true if every account may use the profile' },
  { name: 'enabled', type: 'boolean', description: 'true if keys may be created and used with the profile' },
  { name: 'created', type: 'date', description: 'the date the profile was created' },
  { name: 'health', type: 'string', description: 'Healthy, or Degraded while the backend keeps failing and calls to it fail fast (as seen by the server answering)' },
  { name: 'details', type: 'map', description: 'the protocol settings; PINs, passwords and secrets are shown as *****. Absent in the limited view of a public profile' },
];

/** A profile on the wire (sensitive details masked); `details` undefined gives CloudStack's limited view (no details at all). */
export function hsmProfileResponse(p: HsmProfileView, details: readonly HsmProfileDetail[] | undefined, health: 'Healthy' | 'Degraded' = 'Healthy') {
  return {
    id: p.uuid, name: p.name, protocol: p.protocol, vendor: p.vendorName ?? undefined,
    ...ownerOf(p),
    domainid: p.domainUuid ?? undefined, domain: p.domainName ?? undefined, domainpath: p.domainPath ? prettyPath(p.domainPath) : undefined,
    zoneid: p.zoneUuid ?? undefined, zonename: p.zoneName ?? undefined,
    ispublic: p.isPublic, enabled: p.enabled, created: formatDate(p.created), health,
    details: details ? maskedDetails(details) : undefined,
  };
}
