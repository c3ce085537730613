import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { dropPrefix, PrivateRedis, randomQueuePrefix, SHARED_REDIS_URL } from '../support/redis';
import { ensureTestJobTables, testCommands } from '../support/test-jobs';
import { WorkerProcess } from '../support/worker-process';
import { waitFor } from '../support/wait';

/** Short leases so a killed worker's job is taken over within seconds. */
const FAST_JOBS = { KMS_JOB_LEASE_MS: '1500', KMS_JOB_SWEEP_MS: '200', KMS_JOB_PICKUP_DELAY_MS: '500' };

/** Polls queryAsyncJobResult as cmk does and returns the final answer body. */
async function pollAsCmk(s: TestServer, jobid: string, timeoutMs = 30_000): Promise<Record<string, any>> {
  return waitFor(async () => {
    const res = await s.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult', jobid });
    expect(res.status).toBe(200);
    expect(res.wrapper).toBe('queryasyncjobresultresponse');
    expect(typeof res.body.jobstatus).toBe('number'); // cmk type-asserts float64
    return res.body.jobstatus === 0 ? undefined : res.body;
  }, timeoutMs, `job ${jobid}`);
}

async function submit(s: TestServer, params: Record<string, string | number>): Promise<string> {
  const res = await s.client.signed(ADMIN_KEYS, { command: 'runTestJob', ...params });
  expect(res.status).toBe(200);
  expect(Object.keys(res.body)).toEqual(['jobid']);
  expect(typeof res.body.jobid).toBe('string');
  return res.body.jobid;
}

describe.each(['in-process', 'bullmq'] as const)('jobs submitted to an API-only server and run by separate worker processes (%s queue)', (queueKind) => {
  let s: TestServer;
  let prefix: string;
  const workers: WorkerProcess[] = [];
  const queueEnv = () => ({ KMS_QUEUE_PREFIX: prefix, ...(queueKind === 'bullmq' ? { REDIS_URL: SHARED_REDIS_URL } : {}) });

  beforeAll(async () => {
    prefix = randomQueuePrefix();
    s = await startTestServer({ KMS_ROLE: 'api', ...queueEnv() }, { commands: testCommands });
    await ensureTestJobTables(s.app.db);
    workers.push(await WorkerProcess.start(s, { ...queueEnv(), ...FAST_JOBS }));
  });
  afterAll(async () => {
    for (const w of workers) await w.kill();
    await s.close();
    await dropPrefix(SHARED_REDIS_URL, prefix);
  });

  it('runs the job in the worker process and answers queryAsyncJobResult as cmk parses it', async () => {
    const jobid = await submit(s, { ms: 600, value: 'from-worker' });
    const pending = await s.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult', jobid });
    expect(pending.body).toMatchObject({ jobid, jobstatus: 0, jobresultcode: 0, cmd: 'runTestJob' });
    expect(pending.body).not.toHaveProperty('jobresult');
    expect(pending.body).not.toHaveProperty('jobresulttype');
    expect(pending.body).not.toHaveProperty('completed');
    const done = await pollAsCmk(s, jobid);
    expect(done).toMatchObject({ jobstatus: 1, jobresultcode: 0, jobresulttype: 'object', jobinstancetype: 'Volume' });
    // cmk prints only jobresult on success.
    expect(done.jobresult).toEqual({ testwork: { value: 'from-worker', attempt: 1 } });
    expect(done.completed).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$/);
    const runs = await s.app.db('test_job_run').where({ job_uuid: jobid });
    expect(runs.map((r) => Number(r.pid))).toEqual([workers[0]!.pid]);
    expect(runs[0].pid).not.toBe(process.pid);
  });

  it('completes a job once, with a correct result, when its worker is killed with SIGKILL mid-job', async () => {
    workers.push(await WorkerProcess.start(s, { ...queueEnv(), ...FAST_JOBS }));
    const jobid = await submit(s, { ms: 3000, value: 'survives-kill' });
    const first = await waitFor(async () => (await s.app.db('test_job_run').where({ job_uuid: jobid }).first()) as { pid: number } | undefined, 20_000, 'the job to start');
    const victim = workers.find((w) => w.pid === Number(first.pid))!;
    await victim.kill();
    const done = await pollAsCmk(s, jobid, 40_000);
    expect(done.jobstatus).toBe(1);
    expect(done.jobresult).toEqual({ testwork: { value: 'survives-kill', attempt: 2 } });
    const runs = await s.app.db('test_job_run').where({ job_uuid: jobid }).orderBy('attempt');
    expect(runs.map((r) => Number(r.attempt))).toEqual([1, 2]);
    expect(Number(runs[1].pid)).not.toBe(victim.pid);
    expect(await s.app.db('test_job_effect').where({ job_uuid: jobid })).toEqual([{ job_uuid: jobid, value: 'survives-kill' }]);
  });

  it('fails a job with errorcode and errortext in jobresult, as cmk and the UI show it', async () => {
    const jobid = await submit(s, { fail: 'param' });
    const done = await pollAsCmk(s, jobid);
    expect(done).toMatchObject({ jobstatus: 2, jobresultcode: 431, jobresulttype: 'object' });
    expect(done.jobresult).toEqual({ errorcode: 431, errortext: 'The test job was given a bad value' });
  });
});

describe('a Redis restart while jobs are queued and running', () => {
  let redis: PrivateRedis;
  let s: TestServer;
  let worker: WorkerProcess;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    const env = { REDIS_URL: redis.url, KMS_QUEUE_PREFIX: randomQueuePrefix() };
    s = await startTestServer({ KMS_ROLE: 'api', KMS_JOB_ENQUEUE_TIMEOUT_MS: '500', ...env }, { commands: testCommands });
    await ensureTestJobTables(s.app.db);
    worker = await WorkerProcess.start(s, { ...env, ...FAST_JOBS });
  });
  afterAll(async () => {
    await worker?.kill();
    await s?.close();
    await redis?.stop();
  });

  it('loses no job: the running one, one submitted while Redis was down and one after it came back all complete once', async () => {
    const running = await submit(s, { ms: 2000, value: 'running' });
    await waitFor(async () => (await s.app.db('test_job_run').where({ job_uuid: running })).length > 0, 20_000, 'the job to start');
    await redis.stop();
    const whileDown = await submit(s, { value: 'while-down' });
    await redis.start();
    const after = await submit(s, { value: 'after' });
    for (const [jobid, value] of [[running, 'running'], [whileDown, 'while-down'], [after, 'after']] as const) {
      const done = await pollAsCmk(s, jobid, 40_000);
      expect(done.jobstatus).toBe(1);
      expect(done.jobresult.testwork.value).toBe(value);
      expect(await s.app.db('test_job_effect').where({ job_uuid: jobid })).toHaveLength(1);
    }
    expect(await s.app.db('test_job_run').where({ job_uuid: running })).toHaveLength(1);
  });
});
