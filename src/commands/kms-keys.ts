import { pageWindow } from './pagination';
import type { ApiResult } from './result';
import type { App } from '../app';
import type { Caller } from '../identity/caller';
import { KMS_KEY_JOBS } from '../kms/kms-key-jobs';
import { KeyRotation } from '../kms/kms-key-rotation';
import { assertKeyBits, KmsKeys } from '../kms/kms-keys';
import { KEY_BITS } from '../kms/types';
import { kekVersionSummaries } from '../kms/rewrap-progress';
import { asyncParams, submitAsync } from './async-jobs';
import { ALL_ROLES, defineCommand, ownerListParams, param, type ResponseField } from './define';
import { kmsKeyFields, kmsKeyResponse } from './responses/kms-key';

const KEY_BITS_TEXT = `${KEY_BITS.slice(0, -1).join(', ')} or ${KEY_BITS[KEY_BITS.length - 1]}`;

/** listApis fields of an async command's immediate answer. */
const jobFields: readonly ResponseField[] = [
  { name: 'success', type: 'boolean', description: 'in the job result: true if the operation succeeded' },
];

async function keyObject(app: App, caller: Caller, id: number): Promise<ApiResult> {
  const versions = await kekVersionSummaries(app.db, [id]);
  return { kind: 'object', name: 'kmskey', value: kmsKeyResponse(await new KmsKeys(app).view(id), caller, versions.get(id)) };
}

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
      keybits: param.integer({ default: 256, description: `the KEK size in bits: ${KEY_BITS_TEXT}` }),
      account: param.string({ description: 'the account owning the key (domain admin or admin). Must be used with domainid' }),
      domainid: param.uuid({ description: 'the domain of the owning account', related: 'listDomains' }),
      projectid: param.uuid({ description: 'the project owning the key (its account owns it; every member of the project may use it)', related: 'listProjects' }),
    },
    response: kmsKeyFields,
    async handler(p, ctx) {
      const key = await new KmsKeys(ctx.app).create(ctx.caller, {
        name: p.name, description: p.description, zoneUuid: p.zoneid, account: p.account, domainUuid: p.domainid, projectUuid: p.projectid,
        keyBits: p.keybits, profileUuid: p.hsmprofileid,
      });
      return keyObject(ctx.app, ctx.caller, key.id);
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
      const { rows, count } = await new KmsKeys(ctx.app).list(ctx.caller, {
        uuid: p.id, zoneUuid: p.zoneid, profileUuid: p.hsmprofileid, enabled: p.enabled, keyword: p.keyword,
        account: p.account, domainid: p.domainid, isrecursive: p.isrecursive, listall: p.listall, projectid: p.projectid,
      }, pageWindow(p));
      const versions = await kekVersionSummaries(ctx.app.db, rows.map((r) => r.id));
      return { kind: 'list', name: 'kmskey', items: rows.map((r) => kmsKeyResponse(r, ctx.caller, versions.get(r.id))), count };
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
    },
    response: kmsKeyFields,
    async handler(p, ctx) {
      const key = await new KmsKeys(ctx.app).update(ctx.caller, p.id, { name: p.name, description: p.description, enabled: p.enabled });
      return keyObject(ctx.app, ctx.caller, key.id);
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
    async handler(p, ctx) {
      // Access is checked now; whether the key is still in use is checked by the job, so a refusal
      // is a failed job with jobresultcode 431, as CloudStack's deleteKMSKey (reference §1.8).
      const key = await new KmsKeys(ctx.app).requireAccessible(ctx.caller, p.id);
      return submitAsync(ctx, p, { kind: KMS_KEY_JOBS.delete, args: { id: key.uuid }, instanceType: 'KmsKey', instanceId: key.uuid });
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
      keybits: param.integer({ description: `the size of the new KEK version in bits: ${KEY_BITS_TEXT}; the key's current size when absent` }),
      hsmprofileid: param.uuid({ description: 'the HSM profile for the new KEK version (moves the key to another backend); the current one when absent', related: 'listHSMProfiles' }),
    },
    response: jobFields,
    async handler(p, ctx) {
      // Access and parameter values are checked now; the key's and profile's state by the job, so
      // "KMS key is not enabled" is a failed job with jobresultcode 431 (reference §1.9).
      const key = await new KmsKeys(ctx.app).requireAccessible(ctx.caller, p.id);
      if (p.keybits !== undefined) assertKeyBits(p.keybits);
      const fromVersion = await new KeyRotation(ctx.app).currentVersion(key.id);
      return submitAsync(ctx, p, {
        kind: KMS_KEY_JOBS.rotate, instanceType: 'KmsKey', instanceId: key.uuid,
        args: { id: key.uuid, fromVersion, keyBits: p.keybits, profileUuid: p.hsmprofileid },
      });
    },
  }),
];
