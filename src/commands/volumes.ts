import type { App } from '../app';
import { pageWindow } from './pagination';
import { applyOwnerScope } from '../db/owner-scope';
import { pagedRows } from '../db/paging';
import type { JobHandler } from '../jobs/types';
import { paramError } from '../core/errors';
import { Volumes } from '../kms/volumes';
import { asyncParams, submitAsync } from './async-jobs';
import type { CommandContext } from './context';
import { ADMIN_ONLY, ALL_ROLES, defineCommand, ownerListParams, param, type Infer } from './define';
import { volumeFields, volumeMetricsFields, volumeMetricsResponse, volumeQuery, volumeResponse, type VolumeView } from './responses/volume';

async function volumeView(app: App, uuid: string): Promise<VolumeView> {
  const row = await volumeQuery(app.db).where('v.uuid', uuid).first();
  if (!row) throw paramError(`Unable to find volume by id ${uuid}`);
  return row as VolumeView;
}

/** Job handlers of this family, registered by createApp. */
export const volumeJobHandlers: Record<string, (app: App) => JobHandler> = {
  // The volume and its secret are made in the create phase (as CloudStack's BaseAsyncCreateCmd);
  // the job answers the volume, so cmk and the UI poll and print it as they do for CloudStack.
  'volume.create': (app) => async (job) => ({ type: 'object', name: 'volume', value: volumeResponse(await volumeView(app, String(job.instanceId))) }),
};

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

async function listVolumeRows(p: Infer<typeof listVolumeParams>, ctx: CommandContext): Promise<{ rows: VolumeView[]; count: number }> {
  const scope = await ctx.app.directory.listScope(ctx.caller, p);
  const q = applyOwnerScope(volumeQuery(ctx.app.db), scope, { accountCol: 'v.account_id', domainCol: 'v.domain_id' }).orderBy('v.id');
  if (p.id) q.where('v.uuid', p.id);
  if (p.name) q.where('v.name', p.name);
  if (p.zoneid) q.where('z.uuid', p.zoneid);
  if (p.diskofferingid) q.where('o.uuid', p.diskofferingid);
  if (p.state) q.where('v.state', p.state);
  if (p.isencrypted !== undefined) q.where((w) => (p.isencrypted ? w.whereNotNull('v.encrypt_format') : w.whereNull('v.encrypt_format')));
  if (p.kmskeyid) q.where('k.uuid', p.kmskeyid);
  if (p.keyword) q.where('v.name', 'like', `%${p.keyword}%`);
  return pagedRows<VolumeView>(q, pageWindow(p));
}

export const volumeCommands = [
  defineCommand({
    name: 'createVolume',
    description: 'Creates a disk volume. With kmskeyid its encryption key (DEK) is generated and wrapped by the KMS key; with encrypt=true and no key it gets a legacy passphrase.',
    roles: ALL_ROLES,
    isAsync: true,
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
      const volume = await new Volumes(ctx.app).create(ctx.caller, {
        name: p.name, zoneUuid: p.zoneid, diskOfferingUuid: p.diskofferingid, encrypt: p.encrypt, kmsKeyUuid: p.kmskeyid, account: p.account, domainUuid: p.domainid, projectUuid: p.projectid, sizeGb: p.size,
      });
      return submitAsync(ctx, p, { kind: 'volume.create', args: {}, instanceType: 'Volume', instanceId: volume.uuid }, volume.uuid);
    },
  }),
  defineCommand({
    name: 'listVolumes',
    description: 'Lists all volumes.',
    roles: ALL_ROLES,
    related: 'createVolume',
    params: listVolumeParams,
    response: volumeFields,
    async handler(p, ctx) {
      const { rows, count } = await listVolumeRows(p, ctx);
      return { kind: 'list', name: 'volume', items: rows.map(volumeResponse), count };
    },
  }),
  defineCommand({
    name: 'listVolumesMetrics',
    description: 'Lists volume metrics: the volumes of listVolumes with their size in GiB (the UI\'s Volumes page)',
    roles: ALL_ROLES,
    related: 'listVolumes',
    params: listVolumeParams,
    response: volumeMetricsFields,
    async handler(p, ctx) {
      const { rows, count } = await listVolumeRows(p, ctx);
      return { kind: 'list', name: 'volume', items: rows.map(volumeMetricsResponse), count };
    },
  }),
  defineCommand({
    name: 'deleteVolume',
    description: 'Deletes a detached disk volume and destroys its encryption secret (the wrapped DEK or the legacy passphrase).',
    roles: ALL_ROLES,
    params: { id: param.uuid({ required: true, description: 'The ID of the disk volume', related: 'listVolumes' }) },
    response: [{ name: 'success', type: 'boolean', description: 'true if operation is executed successfully' }],
    async handler(p, ctx) {
      await new Volumes(ctx.app).delete(ctx.caller, p.id);
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
      const s = await new Volumes(ctx.app).secretOf(ctx.caller, p.id);
      return { kind: 'object', name: 'volumeencryptionkey', value: { volumeid: s.volume.uuid, secret: s.secretBase64, kmskeyid: s.keyUuid, kmskeyversion: s.keyVersion } };
    },
  }),
];
