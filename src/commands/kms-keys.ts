import type { ApiResult } from './result';
import type { CommandContext } from './define';
import { KEY_BITS } from '../core/key-bits';
import { assertKeyBits } from '../kms/kms-keys';
import { asyncParams } from './async-jobs';
import { defineJob, submitJob } from './jobs';
import { listOwned } from './list';
import { ALL_ROLES, defineCommand, ownerListParams, param, type ResponseField } from './define';
import { kmsKeyFields, kmsKeyResponse } from './responses/kms-key';

/**
 * The sizes as these parameters' descriptions have always listed them (listApis and apidocs/ are
 * wire text): without the serial comma of KEY_BITS_TEXT, which is the error messages' form.
 */
const KEY_BITS_DESCRIBED = `${KEY_BITS.slice(0, -1).join(', ')} or ${KEY_BITS[KEY_BITS.length - 1]}`;

/** The standby parameter of createKMSKey and updateKMSKey (README "Standby HSM"). */
const STANDBY_DESCRIBED = 'a second HSM profile (another HSM, protocol or the database) that also wraps every DEK of the key, read when the primary profile fails; an extension of CloudStack\'s API';

/** listApis fields of an async command's immediate answer. */
const jobFields: readonly ResponseField[] = [
  { name: 'success', type: 'boolean', description: 'in the job result: true if the operation succeeded' },
];

async function keyObject(ctx: CommandContext, id: number): Promise<ApiResult> {
  const { key, versions, standbyWrappedKeys } = await ctx.kms.keys.item(id);
  return { kind: 'object', name: 'kmskey', value: kmsKeyResponse(key, ctx.caller, versions, standbyWrappedKeys) };
}

/**
 * The deleteKMSKey job: re-checks access and use when it runs, safe to run again after a crash
 * (a re-run finishes the destroys of an already removed key), answers `{success: true}`.
 */
const deleteKeyJob = defineJob({
  kind: 'kms.delete',
  args: { id: 'string' },
  async run(args, job, ctx) {
    await ctx.kms.keys.delete(await ctx.submitter(), args.id, { resume: job.attempt > 1 });
    return { type: 'success' };
  },
});

/**
 * The rotateKMSKey job: re-checks access and state when it runs, safe to run again after a crash
 * (`fromVersion` tells a re-run whether its rotation committed), answers `{success: true}`. The job
 * worker adds the command's backendErrorPrefix ("Failed to rotate KMS key: ") to backend failures.
 */
const rotateKeyJob = defineJob({
  kind: 'kms.rotate',
  args: { id: 'string', fromVersion: 'number', keyBits: 'number?', profileUuid: 'string?' },
  async run(args, job, ctx) {
    await ctx.kms.rotation.rotate(await ctx.submitter(), args, { resume: job.attempt > 1, owner: job.uuid });
    return { type: 'success' };
  },
});

/** createKMSKey, listKMSKeys, updateKMSKey, and the async deleteKMSKey and rotateKMSKey. */
export const kmsKeyCommands = [
  defineCommand({
    name: 'createKMSKey',
    since: '4.23.0',
    description: 'Creates a KMS key for volume encryption in a zone: its first KEK version is generated in the backend of the HSM profile',
    roles: ALL_ROLES,
    related: 'listKMSKeys',
    backendErrorPrefix: 'Failed to create KMS key: ',
    params: {
      name: param.string({ required: true, description: 'the name of the key, unique in its account' }),
      description: param.string({ length: 1024, description: 'the description of the key' }),
      zoneid: param.uuid({ required: true, description: 'the zone of the key; keys are zone-scoped', related: 'listZones' }),
      hsmprofileid: param.uuid({ required: true, description: 'the HSM profile whose backend holds the KEK', related: 'listHSMProfiles' }),
      keybits: param.integer({ default: 256, description: `the KEK size in bits: ${KEY_BITS_DESCRIBED}` }),
      standbyhsmprofileid: param.uuid({ description: STANDBY_DESCRIBED, related: 'listHSMProfiles' }),
      account: param.string({ description: 'the account owning the key (domain admin or admin). Must be used with domainid' }),
      domainid: param.uuid({ description: 'the domain of the owning account', related: 'listDomains' }),
      projectid: param.uuid({ description: 'the project owning the key (its account owns it; every member of the project may use it)', related: 'listProjects' }),
    },
    response: kmsKeyFields,
    async handler(p, ctx) {
      const key = await ctx.kms.keys.create(ctx.caller, {
        name: p.name, description: p.description, zoneUuid: p.zoneid, account: p.account, domainUuid: p.domainid, projectUuid: p.projectid,
        keyBits: p.keybits, profileUuid: p.hsmprofileid, standbyProfileUuid: p.standbyhsmprofileid,
      });
      return keyObject(ctx, key.id);
    },
  }),
  defineCommand({
    name: 'listKMSKeys',
    since: '4.23.0',
    description: 'Lists the KMS keys the caller may see: its own, and for admins those of their domains (with listall=true)',
    roles: ALL_ROLES,
    related: 'createKMSKey',
    params: {
      ...ownerListParams,
      id: param.uuid({ description: 'the ID of the KMS key', related: 'listKMSKeys' }),
      purpose: param.string({ description: 'the key purpose (volume, tls); every key of this server is a volume key' }),
      zoneid: param.uuid({ description: 'list the keys of this zone', related: 'listZones' }),
      hsmprofileid: param.uuid({ description: 'list the keys whose active KEK is on this HSM profile', related: 'listHSMProfiles' }),
      enabled: param.boolean({ description: 'list only enabled (true) or disabled (false) keys' }),
    },
    response: kmsKeyFields,
    async handler(p, ctx) {
      return listOwned(ctx, p, 'kmskey',
        (scope, page) => ctx.kms.keys.list(scope, { uuid: p.id, zoneUuid: p.zoneid, profileUuid: p.hsmprofileid, enabled: p.enabled, keyword: p.keyword }, page),
        (r) => kmsKeyResponse(r.key, ctx.caller, r.versions, r.standbyWrappedKeys));
    },
  }),
  defineCommand({
    name: 'updateKMSKey',
    since: '4.23.0',
    description: 'Updates a KMS key: its name, description, or whether it may be used',
    roles: ALL_ROLES,
    related: 'listKMSKeys',
    backendErrorPrefix: 'Failed to update KMS key: ',
    params: {
      id: param.uuid({ required: true, description: 'the ID of the KMS key', related: 'listKMSKeys' }),
      name: param.string({ description: 'the new name of the key' }),
      description: param.string({ length: 1024, description: 'the new description of the key' }),
      enabled: param.boolean({ description: 'true to enable the key, false to disable it' }),
      standbyhsmprofileid: param.uuid({ description: `${STANDBY_DESCRIBED}; the DEKs already stored get their standby wrap in the background. A standby, once set, cannot be replaced`, related: 'listHSMProfiles' }),
    },
    response: kmsKeyFields,
    async handler(p, ctx) {
      const key = await ctx.kms.keys.update(ctx.caller, p.id, { name: p.name, description: p.description, enabled: p.enabled, standbyProfileUuid: p.standbyhsmprofileid });
      return keyObject(ctx, key.id);
    },
  }),
  defineCommand({
    name: 'deleteKMSKey',
    since: '4.23.0',
    isAsync: true,
    description: 'Deletes a KMS key that no volume and no wrapped key uses, and destroys every KEK version in its backend',
    roles: ALL_ROLES,
    backendErrorPrefix: 'Failed to delete KMS key: ',
    params: { ...asyncParams, id: param.uuid({ required: true, description: 'the ID of the KMS key', related: 'listKMSKeys' }) },
    response: jobFields,
    job: deleteKeyJob,
    async handler(p, ctx) {
      // Access is checked now; whether the key is still in use is checked by the job, so a refusal
      // is a failed job with jobresultcode 431, as CloudStack's deleteKMSKey (reference §1.8).
      const key = await ctx.kms.keys.requireAccessible(ctx.caller, p.id);
      return submitJob(ctx, p, deleteKeyJob, { id: key.uuid }, { instanceType: 'KmsKey', instanceId: key.uuid });
    },
  }),
  defineCommand({
    name: 'rotateKMSKey',
    since: '4.23.0',
    isAsync: true,
    description: 'Rotates a KMS key: a new KEK version becomes Active and the old one Previous; wrapped keys are rewrapped in the background',
    roles: ALL_ROLES,
    backendErrorPrefix: 'Failed to rotate KMS key: ',
    params: {
      ...asyncParams,
      id: param.uuid({ required: true, description: 'the ID of the KMS key', related: 'listKMSKeys' }),
      keybits: param.integer({ description: `the size of the new KEK version in bits: ${KEY_BITS_DESCRIBED}; the key's current size when absent` }),
      hsmprofileid: param.uuid({ description: 'the HSM profile for the new KEK version (moves the key to another backend); the current one when absent', related: 'listHSMProfiles' }),
    },
    response: jobFields,
    job: rotateKeyJob,
    async handler(p, ctx) {
      // Access and parameter values are checked now; the key's and profile's state by the job, so
      // "KMS key is not enabled" is a failed job with jobresultcode 431 (reference §1.9).
      const key = await ctx.kms.keys.requireAccessible(ctx.caller, p.id);
      if (p.keybits !== undefined) assertKeyBits(p.keybits);
      const fromVersion = await ctx.kms.rotation.currentVersion(key.id);
      return submitJob(ctx, p, rotateKeyJob, { id: key.uuid, fromVersion, keyBits: p.keybits, profileUuid: p.hsmprofileid },
        { instanceType: 'KmsKey', instanceId: key.uuid });
    },
  }),
];
