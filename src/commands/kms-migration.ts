import { KmsError } from '../core/errors';
import type { MigrationScope } from '../kms/migration';
import { Migration } from '../kms/migration';
import { asyncParams } from './async-jobs';
import { ADMIN_ONLY, defineCommand, param } from './define';
import { defineJob, submitJob } from './jobs';

/** Volumes per batch (one progress step and one events insert per batch). */
export const MIGRATION_BATCH_SIZE = 500;

/**
 * The migration job: re-checks the plan (the key may have changed since), then migrates in batches.
 * Volumes are marked with the job as they migrate, so after a worker takeover the result and the
 * summary event count the whole job, not only the last attempt.
 */
const migrationJob = defineJob({
  kind: 'kms.migrate',
  args: { keyUuid: 'string', volumeUuids: 'string[]?', zoneUuid: 'string?', account: 'string?', domainUuid: 'string?' },
  async run(args, job, ctx) {
    const caller = await ctx.directory.loadCaller(job.userId);
    if (!caller) throw new KmsError('permission', 'The user who started this migration no longer exists or is disabled');
    const migration = ctx.kms.migration;
    const scope: MigrationScope = {
      volumeUuids: args.volumeUuids, zoneUuid: args.zoneUuid, account: args.account, domainUuid: args.domainUuid,
    };
    const plan = await migration.plan(caller, args.keyUuid, scope);
    const r = await migration.run(plan, {
      batchSize: MIGRATION_BATCH_SIZE, userId: job.userId, jobUuid: job.uuid, progress: (p) => job.progress(p), aborted: () => job.signal.aborted,
    });
    const key = await migration.keyOwner(plan);
    await ctx.events.record({
      type: 'VOLUME.MIGRATE.TO.KMS', level: r.failed ? 'WARN' : 'INFO', resourceType: 'KmsKey', resourceId: plan.keyUuid,
      actor: { userId: job.userId, accountId: key?.accountId, domainId: key?.domainId },
      description: `Migrated ${r.migrated + r.skipped + r.failed} volumes to KMS key: ${key?.name} (uuid: ${plan.keyUuid}). Success: ${r.migrated}, Skipped: ${r.skipped}, Failures: ${r.failed}`,
    });
    return {
      type: 'object', name: 'kmsmigration',
      value: { kmskeyid: plan.keyUuid, migrated: r.migrated, skipped: r.skipped, failed: r.failed, failedvolumeids: r.failedVolumeIds },
    };
  },
});

export const kmsMigrationCommands = [
  defineCommand({
    name: 'migrateVolumesToKMS',
    description: 'Migrates encrypted volumes to KMS: each legacy passphrase becomes the volume\'s DEK, wrapped by the KMS key, so the disk itself does not change. Scope by volumeids, by zoneid (the key account\'s legacy volumes in that zone), or by account with domainid.',
    since: '4.23.0',
    roles: ADMIN_ONLY,
    isAsync: true,
    job: migrationJob,
    backendErrorPrefix: 'Failed to migrate volumes to KMS: ',
    params: {
      ...asyncParams,
      kmskeyid: param.uuid({ required: true, description: 'the ID of the KMS key to wrap the volume keys with', related: 'listKMSKeys' }),
      volumeids: param.uuidList({ description: 'the IDs of the volumes to migrate (comma-separated); each must be in the key\'s zone and owned by the key\'s account', related: 'listVolumes' }),
      zoneid: param.uuid({ description: 'migrate every legacy encrypted volume of the key\'s account in this zone (must be the key\'s zone)', related: 'listZones' }),
      account: param.string({ description: 'migrate every legacy encrypted volume of this account (the key\'s account) in the key\'s zone. Must be used with domainid.' }),
      domainid: param.uuid({ description: 'the domain of the account', related: 'listDomains' }),
    },
    response: [
      { name: 'kmskeyid', type: 'string', description: 'the KMS key the volumes were migrated to' },
      { name: 'migrated', type: 'integer', description: 'volumes migrated by this job (over all its attempts, when a worker took it over)' },
      { name: 'skipped', type: 'integer', description: 'volumes skipped because they were already migrated' },
      { name: 'failed', type: 'integer', description: 'volumes that could not be migrated; they keep their passphrase' },
      { name: 'failedvolumeids', type: 'list', description: 'the IDs of the volumes that failed (up to 1000)' },
    ],
    async handler(p, ctx) {
      const scope: MigrationScope = { volumeUuids: p.volumeids, zoneUuid: p.zoneid, account: p.account, domainUuid: p.domainid };
      // The request's shape is checked now; the key's state and each volume by the job, so those
      // refusals are a failed job with jobresultcode 431, as CloudStack's migrateVolumesToKMS.
      Migration.checkScopeShape(scope);
      await ctx.kms.migration.assertKeyExists(p.kmskeyid);
      return submitJob(ctx, p, migrationJob, {
        keyUuid: p.kmskeyid, volumeUuids: p.volumeids, zoneUuid: p.zoneid, account: p.account, domainUuid: p.domainid,
      }, { instanceType: 'KmsKey', instanceId: p.kmskeyid });
    },
  }),
];
