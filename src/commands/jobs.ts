import { permissionError } from '../core/errors';
import type { JobService } from '../jobs/job-service';
import type { JobOutcome, RunningJob } from '../jobs/types';
import type { ApiResult } from './result';
import type { Services } from './context';
import type { CommandContext, CommandSpec, JobContext, JobSpec } from './define';

/**
 * The async half of a command, declared next to its parameters (docs/architecture.md): the job
 * kind, the shape of its stored arguments, and what a worker runs. The registry registers every
 * declared job; app.ts registers none by hand.
 */

/** How a stored argument is read back: its JSON type, `?` when it may be absent. */
type ArgType = 'string' | 'number' | 'boolean' | 'string[]';
export type ArgShape = Readonly<Record<string, ArgType | `${ArgType}?`>>;

type TypeOf<T> = T extends 'string[]' | 'string[]?' ? string[]
  : T extends 'string' | 'string?' ? string : T extends 'number' | 'number?' ? number : boolean;

const hasType = (v: unknown, type: string): boolean =>
  type === 'string[]' ? Array.isArray(v) && v.every((x) => typeof x === 'string') : typeof v === type;
type Required<S extends ArgShape> = { [K in keyof S as S[K] extends `${string}?` ? never : K]: TypeOf<S[K]> };
type Optional<S extends ArgShape> = { [K in keyof S as S[K] extends `${string}?` ? K : never]?: TypeOf<S[K]> };
/** The typed arguments of a shape. */
export type ArgsOf<S extends ArgShape> = Required<S> & Optional<S>;

/** Thrown when a stored job record does not have the declared shape (a bug or a foreign row). */
export class JobArgsError extends Error {}

function readArgs<S extends ArgShape>(shape: S, raw: Readonly<Record<string, unknown>>): ArgsOf<S> {
  const out: Record<string, unknown> = {};
  for (const [name, declared] of Object.entries(shape)) {
    const optional = declared.endsWith('?');
    const type = optional ? declared.slice(0, -1) : declared;
    const v = raw[name];
    if (v === undefined || v === null) {
      if (!optional) throw new JobArgsError(`job argument ${name} is missing`);
      continue;
    }
    if (!hasType(v, type)) throw new JobArgsError(`job argument ${name} is not a ${type}`);
    out[name] = v;
  }
  return out as ArgsOf<S>; // every declared field was checked above
}

/** The uuid of the object a job acts on: its instance id, stored with the job when it was submitted. */
export function instanceOf(job: Pick<RunningJob, 'uuid' | 'instanceId'>): string {
  if (job.instanceId === undefined) throw new JobArgsError(`job ${job.uuid} has no instance id`);
  return job.instanceId;
}

/** Declares a job: kind, argument shape, and `run` with typed arguments. */
export function defineJob<const S extends ArgShape>(spec: {
  kind: string;
  args: S;
  run: (args: ArgsOf<S>, job: RunningJob, ctx: JobContext) => Promise<JobOutcome>;
}): JobSpec<ArgsOf<S>> {
  return {
    kind: spec.kind,
    check: (args) => void readArgs(spec.args, args),
    handle: async (job, ctx) => spec.run(readArgs(spec.args, job.args), job, ctx),
  };
}

/** What an async command answers: `{jobid}`, or `{id, jobid}` for an async create (§4.1). */
export function asyncResult(jobId: string, id?: string): ApiResult {
  return { kind: 'flat', value: id === undefined ? { jobid: jobId } : { id, jobid: jobId } };
}

/**
 * Submits a command's declared job as the caller (honouring `customjobid`) and answers `{jobid}`
 * or `{id, jobid}`. The job row is written before this returns; a worker runs it.
 */
export async function submitJob<A extends object>(
  ctx: CommandContext,
  p: { customjobid?: string },
  job: JobSpec<A>,
  args: A,
  opts: { instanceType?: string; instanceId?: string; id?: string } = {},
): Promise<ApiResult> {
  job.check(args);
  const { jobId } = await ctx.jobs.submit({
    kind: job.kind, args: Object.fromEntries(Object.entries(args)), cmd: ctx.command, caller: ctx.caller, jobUuid: p.customjobid,
    instanceType: opts.instanceType, instanceId: opts.instanceId,
  });
  return asyncResult(jobId, opts.id);
}

/** Registers the job of every command that declares one, run with the services and the re-loaded submitter. */
export function registerDeclaredJobs(jobs: Pick<JobService, 'register'>, services: Services, commands: readonly CommandSpec[]): void {
  for (const c of commands) {
    if (!c.job) continue;
    const job = c.job;
    jobs.register(job.kind, (running) => job.handle(running, {
      ...services,
      submitter: async () => {
        const caller = await services.directory.loadCaller(running.userId);
        if (!caller) throw permissionError('The user who submitted this job no longer exists or is disabled');
        return caller;
      },
    }));
  }
}
