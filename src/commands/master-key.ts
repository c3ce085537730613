import { KmsError } from '../core/errors';
import { ROTATION_JOB, beginRotation, runRotation } from '../kms/master-key-rotation';
import { asyncParams } from './async-jobs';
import { ADMIN_ONLY, defineCommand } from './define';
import { defineJob, submitJob } from './jobs';

export const MASTER_KEY_JOBS = { rotate: ROTATION_JOB } as const;

/** The rotation job: re-encrypts every protected value under the new version, then retires the old one. */
export const rotateMasterKeyJob = defineJob({
  kind: MASTER_KEY_JOBS.rotate,
  args: { fromVersion: 'number', toVersion: 'number' },
  async run({ toVersion: to }, job, ctx) {
    const node = ctx.masterKeys;
    if (!node.key.holds(to)) await node.refresh(); // a worker started before the version was sealed
    if (!node.key.holds(to)) {
      throw new KmsError('unavailable', `This worker does not hold master key version ${to}; give it the new key and restart it`);
    }
    const r = await runRotation(ctx.repos, node, to, {
      batchSize: node.rotationBatch, progress: (p) => job.progress(p), aborted: () => job.signal.aborted, logger: ctx.logger,
    });
    return {
      type: 'object', name: 'masterkey',
      value: { version: r.version, previousversion: r.previousversion, reencrypted: r.reencrypted, retiredversions: r.retired, state: 'Active' },
    };
  },
});

/** rotateMasterKey: not a CloudStack command (CloudStack changes db.cloud.encrypt.secret only offline). */
export const masterKeyCommands = [
  defineCommand({
    name: 'rotateMasterKey',
    description:
      'Rotates the server master key online (not a CloudStack command: CloudStack changes its db.cloud.encrypt.secret only offline). ' +
      'The new version (KMS_MASTER_KEY_NEXT on every node, or made and sealed by the HSM when the master key is sealed) becomes active, ' +
      'and a background job re-encrypts every HSM PIN, API secret key, legacy passphrase and database-provider KEK under it, then retires the old version. ' +
      'Refused until every live node holds the new version. Poll the job with queryAsyncJobResult.',
    isAsync: true,
    job: rotateMasterKeyJob,
    roles: ADMIN_ONLY,
    params: { ...asyncParams },
    response: [
      { name: 'version', type: 'integer', description: 'the master key version every value is now encrypted with' },
      { name: 'previousversion', type: 'integer', description: 'the version the rotation moved away from' },
      { name: 'reencrypted', type: 'integer', description: 'values re-encrypted by the last run of the job (a run taken over after a crash counts only its own)' },
      { name: 'retiredversions', type: 'list', description: 'versions retired when the job finished' },
      { name: 'state', type: 'string', description: 'the state of the new version: Active' },
    ],
    async handler(p, ctx) {
      const { from, to } = await beginRotation(ctx.repos, ctx.masterKeys);
      return submitJob(ctx, p, rotateMasterKeyJob, { fromVersion: from, toVersion: to }, { instanceType: 'MasterKey', instanceId: String(to) });
    },
  }),
];
