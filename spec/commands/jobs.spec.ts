import { defineJob, JobArgsError } from '../../src/commands/jobs';
import type { JobContext } from '../../src/commands/define';
import type { RunningJob } from '../../src/jobs/types';

/** A declared job reads its stored arguments back by its shape: a record of another shape is refused, never cast. */
describe('a declared job', () => {
  const seen: unknown[] = [];
  const job = defineJob({
    kind: 'test.shape',
    args: { id: 'string', from: 'number', bits: 'number?', ids: 'string[]?', lock: 'boolean?' },
    run: async (args) => {
      seen.push(args);
      return { type: 'success' };
    },
  });
  const running = (args: Record<string, unknown>) => ({ args } as unknown as RunningJob);
  const ctx = {} as JobContext;

  it('runs with the stored arguments as declared, absent optional ones left out', async () => {
    await job.handle(running({ id: 'k', from: 2, ids: ['a', 'b'], lock: false, extra: 'ignored' }), ctx);
    expect(seen.pop()).toEqual({ id: 'k', from: 2, ids: ['a', 'b'], lock: false });
  });

  it('refuses a record with a missing or mistyped argument, naming it', async () => {
    await expect(job.handle(running({ from: 2 }), ctx)).rejects.toThrow(new JobArgsError('job argument id is missing'));
    await expect(job.handle(running({ id: 'k', from: '2' }), ctx)).rejects.toThrow(new JobArgsError('job argument from is not a number'));
    await expect(job.handle(running({ id: 'k', from: 2, ids: 'a,b' }), ctx)).rejects.toThrow(new JobArgsError('job argument ids is not a string[]'));
    expect(seen).toEqual([]);
  });

  it('checks arguments before they are stored, the same way', () => {
    expect(() => job.check({ id: 'k', from: 1 })).not.toThrow();
    expect(() => job.check({ id: 'k', from: Number.NaN, ids: [1 as unknown as string] })).toThrow('job argument ids is not a string[]');
  });
});
