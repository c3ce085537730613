import type { App } from '../app';
import type { Caller } from '../identity/caller';
import type { RunningJob } from '../jobs/types';
import { permissionError } from '../core/errors';
import { KeyRotation, type RotateJobArgs } from './kms-key-rotation';
import { KmsKeys } from './kms-keys';

/** Job kinds of the asynchronous key commands. */
export const KMS_KEY_JOBS = { rotate: 'kms.rotate', delete: 'kms.delete' } as const;

/** The submitting user, re-loaded: a job acts with the rights its user has when it runs. */
async function callerOf(app: App, job: RunningJob): Promise<Caller> {
  const caller = await app.directory.loadCaller(job.userId);
  if (!caller) throw permissionError('The user who submitted this job no longer exists or is disabled');
  return caller;
}

/**
 * Registers the rotateKMSKey and deleteKMSKey job handlers. Both re-check access and state when
 * they run, are safe to run again after a crash, and answer `{success: true}`. The job worker adds
 * the commands' backendErrorPrefix ("Failed to rotate KMS key: ") to backend failures.
 */
export function registerKmsKeyJobs(app: App): void {
  app.jobs.register(KMS_KEY_JOBS.rotate, async (job) => {
    const caller = await callerOf(app, job);
    const a = job.args;
    const args: RotateJobArgs = {
      id: String(a.id), fromVersion: Number(a.fromVersion),
      keyBits: a.keyBits === undefined ? undefined : Number(a.keyBits), profileUuid: typeof a.profileUuid === 'string' ? a.profileUuid : undefined,
    };
    await new KeyRotation(app).rotate(caller, args, { resume: job.attempt > 1, owner: job.uuid });
    return { type: 'success' };
  });
  app.jobs.register(KMS_KEY_JOBS.delete, async (job) => {
    const caller = await callerOf(app, job);
    await new KmsKeys(app).delete(caller, String(job.args.id), { resume: job.attempt > 1 });
    return { type: 'success' };
  });
}
