import { paramError } from '../core/errors';
import { asyncParams } from './async-jobs';
import type { CommandContext } from './define';
import { ADMIN_ONLY, ALL_ROLES, defineCommand, ownerListParams, param, SUCCESS_FIELDS, type Infer } from './define';
import { defineJob, instanceOf, submitJob } from './jobs';
import { listOwned } from './list';
import type { ApiResult } from './result';
import { volumeFields, volumeMetricsFields, volumeMetricsResponse, volumeResponse } from './responses/volume';

/**
 * The volume and its secret are made in the create phase (as CloudStack's BaseAsyncCreateCmd);
 * the job answers the volume (its uuid is the job's instance id), so cmk and the UI poll and print
 * it as they do for CloudStack.
 */
const createVolumeJob = defineJob({
  kind: 'volume.create',
  args: {},
  async run(_args, job, ctx) {
    const uuid = instanceOf(job);
    const view = await ctx.repos.volumes.view(uuid);
    if (!view) throw paramError(`Unable to find volume by id ${uuid}`);
    return { type: 'object', name: 'volume', value: volumeResponse(view) };
  },
});

const listVolumeParams = {
  ...ownerListParams,
  id: param.uuid({ description: 'the ID of the disk volume', related: 'listVolumes' }),
  name: param.string({ description: 'the name of the disk volume' }),
  zoneid: param.uuid({ description: 'the ID of the availability zone', related: 'listZones' }),
  diskofferingid: param.uuid({ description: 'list volumes of this disk offering', related: 'listDiskOfferings' }),
  state: param.string({ description: 'state of the volume. Possible values are: Allocated (every volume of this server)' }),
  isencrypted: param.boolean({ description: 'list only encrypted (true) or unencrypted (false) volumes' }),
  kmskeyid: param.uuid({ description: 'list volumes whose encryption key is wrapped by this KMS key', related: 'listKMSKeys', since: '4.23.0' }),
};

/** listVolumes and listVolumesMetrics: the same list, each row as `item`. */
function listVolumes(p: Infer<typeof listVolumeParams>, ctx: CommandContext, item: typeof volumeResponse): Promise<ApiResult> {
  const filter = {
    uuid: p.id, name: p.name, zoneUuid: p.zoneid, diskOfferingUuid: p.diskofferingid, state: p.state, encrypted: p.isencrypted, kmsKeyUuid: p.kmskeyid, keyword: p.keyword,
  };
  return listOwned(ctx, p, 'volume', (scope, page) => ctx.repos.volumes.listViews(scope, filter, page), item);
}

export const volumeCommands = [
  defineCommand({
    name: 'createVolume',
    description: 'Creates a disk volume. With kmskeyid its encryption key (DEK) is generated and wrapped by the KMS key; with encrypt=true and no key it gets a legacy passphrase.',
    roles: ALL_ROLES,
    isAsync: true,
    job: createVolumeJob,
    related: 'listVolumes',
    backendErrorPrefix: 'Failed to create volume: ',
    params: {
      ...asyncParams,
      name: param.string({ required: true, description: 'the name of the disk volume' }),
      zoneid: param.uuid({ required: true, description: 'the ID of the availability zone', related: 'listZones' }),
      diskofferingid: param.uuid({ description: 'the ID of the disk offering: its size (or size, for a customized offering) and, with encrypt=true on the offering, an encrypted volume', related: 'listDiskOfferings' }),
      size: param.long({ description: 'Arbitrary volume size in GB: required with a customized disk offering; without a disk offering the size of the volume' }),
      encrypt: param.boolean({ default: false, description: 'shortcut without diskofferingid: true makes an encrypted volume (implied by kmskeyid); with a disk offering, the offering decides' }),
      kmskeyid: param.uuid({ description: 'the ID of the KMS key that wraps the volume encryption key; needs an encrypting disk offering (or no offering)', related: 'listKMSKeys', since: '4.23.0' }),
      miniops: param.long({ description: 'min iops (accepted; this server runs no hypervisor, so it is not used)' }),
      maxiops: param.long({ description: 'max iops (accepted; this server runs no hypervisor, so it is not used)' }),
      account: param.string({ description: 'the account associated with the disk volume. Must be used with the domainId parameter.' }),
      domainid: param.uuid({ description: 'the domain ID associated with the disk volume. If used with the account parameter returns the disk volume associated with the account for the specified domain.', related: 'listDomains' }),
      projectid: param.uuid({ description: 'the project associated with the volume. Mutually exclusive with account parameter', related: 'listProjects' }),
    },
    response: volumeFields,
    async handler(p, ctx) {
      const volume = await ctx.kms.volumes.create(ctx.caller, {
        name: p.name, zoneUuid: p.zoneid, diskOfferingUuid: p.diskofferingid, encrypt: p.encrypt, kmsKeyUuid: p.kmskeyid, account: p.account, domainUuid: p.domainid, projectUuid: p.projectid, sizeGb: p.size,
      });
      return submitJob(ctx, p, createVolumeJob, {}, { instanceType: 'Volume', instanceId: volume.uuid, id: volume.uuid });
    },
  }),
  defineCommand({
    name: 'listVolumes',
    description: 'Lists all volumes.',
    roles: ALL_ROLES,
    related: 'createVolume',
    params: listVolumeParams,
    response: volumeFields,
    handler: (p, ctx) => listVolumes(p, ctx, volumeResponse),
  }),
  defineCommand({
    name: 'listVolumesMetrics',
    description: 'Lists volume metrics: the volumes of listVolumes with their size in GiB (the UI\'s Volumes page)',
    roles: ALL_ROLES,
    related: 'listVolumes',
    params: listVolumeParams,
    response: volumeMetricsFields,
    handler: (p, ctx) => listVolumes(p, ctx, volumeMetricsResponse),
  }),
  defineCommand({
    name: 'deleteVolume',
    description: 'Deletes a detached disk volume and destroys its encryption secret (the wrapped DEK or the legacy passphrase).',
    roles: ALL_ROLES,
    params: { id: param.uuid({ required: true, description: 'The ID of the disk volume', related: 'listVolumes' }) },
    response: SUCCESS_FIELDS,
    async handler(p, ctx) {
      await ctx.kms.volumes.delete(ctx.caller, p.id);
      return { kind: 'success' };
    },
  }),
  defineCommand({
    name: 'getVolumeEncryptionKey',
    description: 'Returns the encryption secret of a volume (base64), for the hypervisor that opens it: the DEK unwrapped in memory, or the legacy passphrase. Audited with a KMS.KEY.UNWRAP event.',
    roles: ADMIN_ONLY,
    backendErrorPrefix: 'Failed to unwrap volume key: ',
    params: { id: param.uuid({ required: true, description: 'The ID of the disk volume', related: 'listVolumes' }) },
    response: [
      { name: 'volumeid', type: 'string', description: 'the ID of the volume' },
      { name: 'secret', type: 'string', description: 'the volume secret (LUKS key material), base64' },
      { name: 'kmskeyid', type: 'string', description: 'the KMS key that wraps the secret; absent for legacy passphrases' },
      { name: 'kmskeyversion', type: 'integer', description: 'the KEK version the secret is wrapped with' },
    ],
    async handler(p, ctx) {
      const s = await ctx.kms.volumes.secretOf(ctx.caller, p.id);
      return { kind: 'object', name: 'volumeencryptionkey', value: { volumeid: s.volume.uuid, secret: s.secretBase64, kmskeyid: s.keyUuid, kmskeyversion: s.keyVersion } };
    },
  }),
];
