import { createJobService, type JobService, type JobServiceDeps } from '../../src/jobs/job-service';
import { JobRepository } from '../../src/db/repositories/jobs';
import { Settings } from '../../src/config/settings';
import { ConfigurationRepository } from '../../src/db/repositories/configuration';
import type { Logger } from '../../src/core/logger';
import type { Caller } from '../../src/identity/caller';
import { createTestDb, type TestDb } from '../support/db';
import { dropPrefix, keysUnder, randomQueuePrefix, SHARED_REDIS_URL } from '../support/redis';
import { ensureTestJobTables, testJobHandler, TEST_JOB_KIND } from '../support/test-jobs';
import { waitFor } from '../support/wait';

const caller: Caller = {
  userId: 1, userUuid: 'u', username: 'admin', accountId: 1, accountUuid: 'a', accountName: 'admin', accountType: 1,
  domainId: 1, domainUuid: 'd', domainName: 'ROOT', domainPath: '/', role: 'Admin',
};

/** A logger that keeps what it was given, to check that nothing secret or internal leaks. */
const recordingLogger = () => {
  const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => { lines.push({ level, msg, fields }); };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines };
};

describe.each(['in-process', 'bullmq'] as const)('the job service with the %s queue', (queueKind) => {
  let t: TestDb;
  let repo: JobRepository;
  let prefix: string;
  const services: JobService[] = [];

  const service = (over: Partial<JobServiceDeps> = {}): JobService => {
    const s = createJobService({
      db: t.db, logger: over.logger ?? recordingLogger().logger, settings: new Settings(new ConfigurationRepository(t.db)),
      redisUrl: queueKind === 'bullmq' ? SHARED_REDIS_URL : undefined, queuePrefix: prefix,
      options: { leaseMs: 600, sweepMs: 100, pickupDelayMs: 300, maxAttempts: 3, ...over.options },
      errorPrefixOf: (cmd) => (cmd === 'rotateTestKey' ? 'Failed to rotate KMS key: ' : undefined),
      ...over,
    });
    s.register(TEST_JOB_KIND, testJobHandler(t.db));
    services.push(s);
    return s;
  };
  const submit = (s: JobService, args: Record<string, unknown>, cmd = 'runTestJob') =>
    s.submit({ cmd, kind: TEST_JOB_KIND, caller, args }).then((r) => r.jobId);
  const finished = (uuid: string) => waitFor(async () => {
    const row = await repo.findByUuid(uuid);
    return row && row.status !== 0 ? row : undefined;
  }, 15_000, `job ${uuid} to finish`);
  const runsOf = async (uuid: string) => (await t.db('test_job_run').where({ job_uuid: uuid })).length;

  beforeAll(async () => {
    t = await createTestDb();
    repo = new JobRepository(t.db);
    await ensureTestJobTables(t.db);
  });
  beforeEach(() => { prefix = randomQueuePrefix(); });
  afterEach(async () => {
    for (const s of services.splice(0)) await s.close();
    if (queueKind === 'bullmq') await dropPrefix(SHARED_REDIS_URL, prefix);
  });
  afterAll(async () => { await t.drop(); });

  it('runs a submitted job once and stores its jobresult, code and completion time', async () => {
    const s = service();
    await s.start();
    const id = await submit(s, { ms: 50, value: 'v1' });
    const row = await finished(id);
    expect(row).toMatchObject({ status: 1, result_code: 0, result_type: 'object', attempts: 1, lease_owner: null });
    expect(JSON.parse(row.result!)).toEqual({ testwork: { value: 'v1', attempt: 1 } });
    expect(Number(row.completed)).toBeGreaterThanOrEqual(Number(row.created));
    expect(await runsOf(id)).toBe(1);
  });

  it('fails a job with the wire code of its KmsError, the command prefix on backend kinds, and a generic 530 otherwise', async () => {
    const { logger, lines } = recordingLogger();
    const s = service({ logger });
    await s.start();
    const param = await submit(s, { fail: 'param' });
    const provider = await submit(s, { fail: 'provider' }, 'rotateTestKey');
    const crash = await submit(s, { fail: 'crash' });
    expect(JSON.parse((await finished(param)).result!)).toEqual({ errorcode: 431, errortext: 'The test job was given a bad value' });
    const p = await finished(provider);
    expect(p.result_code).toBe(530);
    expect(JSON.parse(p.result!)).toEqual({ errorcode: 530, errortext: 'Failed to rotate KMS key: the backend refused' });
    const c = await finished(crash);
    expect(c).toMatchObject({ status: 2, result_code: 530 });
    expect(JSON.parse(c.result!)).toEqual({ errorcode: 530, errortext: 'Internal error executing command, please contact your system administrator' });
    expect(c.result).not.toContain('/srv/secret');
    expect(lines.some((l) => l.level === 'error' && String(l.fields?.error).includes('/srv/secret/path.ts'))).toBe(true);
  });

  it('takes over a job whose worker died once its lease expires, and runs it to completion once', async () => {
    const api = service({ runWorkers: false });
    const id = await submit(api, { value: 'taken-over' });
    expect(await repo.claim(id, 'dead-worker', 400, 3)).toBeDefined();
    const s = service();
    await s.start();
    const row = await finished(id);
    expect(row).toMatchObject({ status: 1, attempts: 2 });
    expect(await runsOf(id)).toBe(1);
    expect(await t.db('test_job_effect').where({ job_uuid: id })).toEqual([{ job_uuid: id, value: 'taken-over' }]);
  });

  it('picks up, on start, jobs submitted while no worker ran', async () => {
    const api = service({ runWorkers: false });
    const ids = [await submit(api, { value: 'a' }), await submit(api, { value: 'b' })];
    await new Promise((r) => setTimeout(r, 200));
    for (const id of ids) expect((await repo.findByUuid(id))!.status).toBe(0);
    await service({ options: { pickupDelayMs: 60_000 } }).start();
    for (const id of ids) expect((await finished(id)).status).toBe(1);
  });

  it('never runs a job twice when several workers compete for it, and never again after it succeeded', async () => {
    const api = service({ runWorkers: false });
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => submit(api, { ms: 20, value: `c${i}` })));
    const workers = [service({ options: { pickupDelayMs: 0, sweepMs: 20 } }), service({ options: { pickupDelayMs: 0, sweepMs: 20 } })];
    await Promise.all(workers.map((w) => w.start()));
    for (const id of ids) expect((await finished(id)).status).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    for (const id of ids) expect(await runsOf(id)).toBe(1);
  });

  it('fails a job that used up its starts instead of running it forever', async () => {
    const api = service({ runWorkers: false });
    const id = await submit(api, { value: 'poison' });
    await t.db('async_job').where({ uuid: id }).update({ attempts: 3, lease_owner: 'dead', lease_expires: Date.now() - 1 });
    await service().start();
    const row = await finished(id);
    expect(row).toMatchObject({ status: 2, result_code: 530 });
    expect(await runsOf(id)).toBe(0);
  });

  if (queueKind === 'bullmq') {
    it('puts only job ids in Redis, under the deployment prefix', async () => {
      const api = service({ runWorkers: false });
      const id = await submit(api, { value: 'not-in-redis-secret-arg' });
      const keys = await keysUnder(SHARED_REDIS_URL, prefix);
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.every((k) => k.startsWith(`${prefix}:jobs:`))).toBe(true);
      const { Redis } = await import('ioredis');
      const r = new Redis(SHARED_REDIS_URL);
      try {
        const data = await r.hget(`${prefix}:jobs:${id}`, 'data');
        expect(JSON.parse(data!)).toEqual({ jobId: id });
        for (const k of keys) {
          const type = await r.type(k);
          const dump = type === 'hash' ? JSON.stringify(await r.hgetall(k)) : type === 'list' ? JSON.stringify(await r.lrange(k, 0, -1)) : '';
          expect(dump).not.toContain('not-in-redis-secret-arg');
        }
      } finally {
        r.disconnect();
      }
    });
  }
});
