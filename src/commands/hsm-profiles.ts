import { PROVIDER_KINDS } from '../providers/provider';
import { DEFAULT_BATCH_ITEMS, DEFAULT_KMIP_PORT, DEFAULT_KMIP_VERSION, DEFAULT_MAX_CONNECTIONS, KMIP_VERSIONS } from '../providers/kmip/profile';
import type { ApiResult } from './result';
import type { CommandContext } from './define';
import { listOwned } from './list';
import { ADMIN_ONLY, ALL_ROLES, defineCommand, ownerListParams, param, type Infer } from './define';
import { hsmProfileFields, hsmProfileResponse } from './responses/hsm-profile';

/** The wire form of one profile for this caller (details masked, or left out in the limited view). */
async function profileObject(ctx: CommandContext, id: number): Promise<ApiResult> {
  const item = await ctx.kms.profiles.item(ctx.caller, id);
  return { kind: 'object', name: 'hsmprofile', value: hsmProfileResponse(item.profile, item.details, item.health) };
}

const createParams = {
  name: param.string({ required: true, description: 'the name of the HSM profile' }),
  protocol: param.string({ description: `the backend protocol: ${PROVIDER_KINDS.join(' or ')}; pkcs11 when blank` }),
  zoneid: param.uuid({ description: 'the zone the profile is scoped to; all zones when absent', related: 'listZones' }),
  domainid: param.uuid({ description: 'the domain of the profile; without account it gives a domain-scoped profile usable by the accounts of that domain', related: 'listDomains' }),
  account: param.string({ description: 'the account owning the profile. Must be used with domainId' }),
  projectid: param.uuid({ description: 'the project owning the profile (its account owns it; a member of the project may use it)', related: 'listProjects' }),
  ispublic: param.boolean({ default: false, description: 'true to make the profile usable by every account (root admin only)' }),
  system: param.boolean({ description: 'the name newer 4.23 UIs send for ispublic (the "System" switch): true makes the profile usable by every account (root admin only)' }),
  vendorname: param.string({ description: 'the HSM vendor name' }),
  details: param.map({
    description: `protocol settings as details[0].name=value; pkcs11: library (absolute path), token_label, slot or slot_list_index, pin, max_sessions, threads (1-16: PKCS#11 calls in flight at once per server process; default KMS_PKCS11_THREADS); kmip: host, port (default ${DEFAULT_KMIP_PORT}), ca, client_certificate, private_key (each PEM text or an absolute file path), username, password, kmipversion (${KMIP_VERSIONS.join(', ')}; default ${DEFAULT_KMIP_VERSION}), max_connections (TLS connections per server process; default ${DEFAULT_MAX_CONNECTIONS}), batch_items (operations per KMIP request; default ${DEFAULT_BATCH_ITEMS}). PINs, passwords, private keys and secrets are stored encrypted and shown as *****`,
  }),
};

const createDescription = 'Creates an HSM profile: the connection settings of a KEK backend (a PKCS#11 token, a KMIP key manager or the database), checked against the backend before it is stored';

const createHandler = async (p: Infer<typeof createParams>, ctx: CommandContext): Promise<ApiResult> => {
  const row = await ctx.kms.profiles.create(ctx.caller, {
    name: p.name, protocol: p.protocol, zoneUuid: p.zoneid, domainUuid: p.domainid, account: p.account, projectUuid: p.projectid, isPublic: p.ispublic || p.system === true,
    vendorName: p.vendorname, details: p.details ?? {},
  });
  return profileObject(ctx, row.id);
};

/** createHSMProfile (and its alias addHSMProfile), listHSMProfiles, updateHSMProfile, deleteHSMProfile. */
export const hsmProfileCommands = [
  defineCommand({
    name: 'createHSMProfile', since: '4.23.0', description: createDescription, roles: ADMIN_ONLY, related: 'listHSMProfiles',
    params: createParams, response: hsmProfileFields, handler: createHandler,
  }),
  defineCommand({
    name: 'addHSMProfile', since: '4.23.0', roles: ADMIN_ONLY, related: 'listHSMProfiles',
    description: `${createDescription}. The name the CloudStack admin guide uses; the same command as createHSMProfile`,
    params: createParams, response: hsmProfileFields, handler: createHandler,
  }),
  defineCommand({
    name: 'listHSMProfiles',
    since: '4.23.0',
    description: 'Lists HSM profiles: owned, of the caller\'s domain, and with listall=true or ispublic=true the public ones (without details unless the caller owns them)',
    roles: ALL_ROLES,
    related: 'createHSMProfile',
    params: {
      ...ownerListParams,
      id: param.uuid({ description: 'the ID of the HSM profile', related: 'listHSMProfiles' }),
      zoneid: param.uuid({ description: 'list the profiles usable in this zone: scoped to it or to all zones', related: 'listZones' }),
      protocol: param.string({ description: `list by protocol: ${PROVIDER_KINDS.join(', ')}` }),
      enabled: param.boolean({ description: 'list only enabled (true) or disabled (false) profiles' }),
      ispublic: param.boolean({ description: 'list only public (true) or non-public (false) profiles' }),
    },
    response: hsmProfileFields,
    async handler(p, ctx) {
      return listOwned(ctx, p, 'hsmprofile',
        (scope, page) => ctx.kms.profiles.list(ctx.caller, scope, {
          uuid: p.id, zoneUuid: p.zoneid, protocol: p.protocol, enabled: p.enabled, isPublic: p.ispublic, keyword: p.keyword,
          account: p.account, domainid: p.domainid, listall: p.listall,
        }, page),
        (r) => hsmProfileResponse(r.profile, r.details, r.health));
    },
  }),
  defineCommand({
    name: 'updateHSMProfile',
    since: '4.23.0',
    description: 'Updates an HSM profile: renames, enables or disables it. Keys on a disabled profile cannot wrap or unwrap',
    roles: ADMIN_ONLY,
    related: 'listHSMProfiles',
    params: {
      id: param.uuid({ required: true, description: 'the ID of the HSM profile', related: 'listHSMProfiles' }),
      name: param.string({ description: 'the new name of the HSM profile' }),
      enabled: param.boolean({ description: 'true to enable the profile, false to disable it' }),
    },
    response: hsmProfileFields,
    async handler(p, ctx) {
      const row = await ctx.kms.profiles.update(ctx.caller, p.id, { name: p.name, enabled: p.enabled });
      return profileObject(ctx, row.id);
    },
  }),
  defineCommand({
    name: 'deleteHSMProfile',
    since: '4.23.0',
    description: 'Deletes an HSM profile that no KMS key and no wrapped key uses; the default database profile cannot be deleted',
    roles: ADMIN_ONLY,
    params: { id: param.uuid({ required: true, description: 'the ID of the HSM profile', related: 'listHSMProfiles' }) },
    response: [
      { name: 'success', type: 'boolean', description: 'true if the operation is executed successfully' },
      { name: 'displaytext', type: 'string', description: 'any text associated with the success or failure' },
    ],
    async handler(p, ctx) {
      await ctx.kms.profiles.delete(ctx.caller, p.id);
      return { kind: 'success' };
    },
  }),
];
