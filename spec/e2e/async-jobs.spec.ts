import { randomBytes, randomUUID } from 'node:crypto';
import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { registerTestJobs, testCommands, ensureTestJobTables } from '../support/test-jobs';
import { waitFor } from '../support/wait';

type Keys = { apiKey: string; secretKey: string };

describe('queryAsyncJobResult and listAsyncJobs', () => {
  let s: TestServer;
  let user: Keys;
  let other: Keys;
  let domainAdmin: Keys;
  const suffix = randomBytes(3).toString('hex');

  const account = async (name: string, accounttype: number, domainid?: string): Promise<Keys> => {
    const created = await s.client.signed(ADMIN_KEYS, {
      command: 'createAccount', username: `${name}-${suffix}`, password: 'pw-123456', firstname: 'F', lastname: 'L', accounttype, ...(domainid ? { domainid } : {}),
    });
    const uk = (await s.client.signed(ADMIN_KEYS, { command: 'registerUserKeys', id: created.body.account.user[0].id })).body.userkeys;
    return { apiKey: uk.apikey, secretKey: uk.secretkey };
  };
  const run = async (keys: Keys, params: Record<string, string | number> = {}) => {
    const res = await s.client.signed(keys, { command: 'runTestJob', ...params });
    expect(res.status).toBe(200);
    return res.body.jobid as string;
  };
  const finished = (keys: Keys, jobid: string) => waitFor(async () => {
    const res = await s.client.signed(keys, { command: 'queryAsyncJobResult', jobid });
    return res.body.jobstatus !== 0 ? res.body : undefined;
  }, 15_000, `job ${jobid}`);

  beforeAll(async () => {
    s = await startTestServer({}, { commands: testCommands, setup: registerTestJobs });
    await ensureTestJobTables(s.app.db);
    const sub = await s.client.signed(ADMIN_KEYS, { command: 'createDomain', name: `sub-${suffix}` });
    user = await account('user', 0);
    other = await account('other', 0);
    domainAdmin = await account('dadmin', 2, sub.body.domain.id);
  });
  afterAll(async () => { await s.close(); });

  it('marks async commands isasync:true in listApis, so cmk polls them', async () => {
    const apis = (await s.client.signed(ADMIN_KEYS, { command: 'listApis' })).body.api as Array<{ name: string; isasync: boolean; params: Array<{ name: string }> }>;
    const byName = new Map(apis.map((a) => [a.name, a]));
    expect(byName.get('runTestJob')!.isasync).toBe(true);
    expect(byName.get('runTestJob')!.params.map((p) => p.name)).toContain('customjobid');
    expect(byName.get('queryAsyncJobResult')!.isasync).toBe(false);
    expect(byName.get('listAsyncJobs')!.isasync).toBe(false);
  });

  it('answers every CloudStack field with its type, in order, once the job succeeded', async () => {
    const jobid = await run(user, { value: 'fields' });
    const body = await finished(user, jobid);
    const acct = (await s.client.signed(user, { command: 'listAccounts' })).body.account[0];
    expect(Object.keys(body)).toEqual([
      'accountid', 'account', 'domainid', 'domainpath', 'userid', 'cmd', 'jobprocstatus', 'jobresultcode', 'jobresulttype', 'jobresult',
      'jobinstancetype', 'jobinstanceid', 'created', 'completed', 'jobid', 'jobstatus',
    ]);
    expect(body).toMatchObject({
      accountid: acct.id, account: acct.name, domainid: acct.domainid, domainpath: 'ROOT', userid: acct.user[0].id, cmd: 'runTestJob',
      jobresultcode: 0, jobresulttype: 'object', jobresult: { testwork: { value: 'fields', attempt: 1 } }, jobinstancetype: 'Volume', jobid, jobstatus: 1,
    });
    expect(typeof body.jobprocstatus).toBe('number');
  });

  it('uses customjobid as the job id, and refuses one already in use with 431', async () => {
    const custom = randomUUID();
    expect(await run(user, { customjobid: custom })).toBe(custom);
    expect((await finished(user, custom)).jobstatus).toBe(1);
    const again = await s.client.signed(user, { command: 'runTestJob', customjobid: custom });
    expect(again.status).toBe(431);
    expect(await s.app.db('async_job').where({ uuid: custom })).toHaveLength(1);
  });

  it('answers 431 for an unknown job id and for one that is not a uuid', async () => {
    const unknown = await s.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult', jobid: randomUUID() });
    expect(unknown.status).toBe(431);
    expect(unknown.body).toMatchObject({ errorcode: 431, cserrorcode: 4350 });
    const invalid = await s.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult', jobid: 'not-a-uuid' });
    expect(invalid.status).toBe(431);
    const missing = await s.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult' });
    expect(missing.body.errortext).toBe('Unable to execute API command queryasyncjobresult due to missing parameter jobid');
  });

  it("answers 531 when a user queries another account's job; admins above it may", async () => {
    const jobid = await run(other, { value: 'private' });
    await finished(other, jobid);
    const denied = await s.client.signed(user, { command: 'queryAsyncJobResult', jobid });
    expect(denied.status).toBe(531);
    expect(denied.body).toMatchObject({ errorcode: 531, cserrorcode: 4365 });
    expect((await s.client.signed(ADMIN_KEYS, { command: 'queryAsyncJobResult', jobid })).body.jobstatus).toBe(1);
    expect((await s.client.signed(domainAdmin, { command: 'queryAsyncJobResult', jobid })).status).toBe(531);
  });

  it("lists a user's own jobs only, a domain admin's subtree with listall, and everything for root with listall", async () => {
    const mine = await run(user, { value: 'list-mine' });
    const theirs = await run(other, { value: 'list-theirs' });
    const sub = await run(domainAdmin, { value: 'list-sub' });
    for (const [k, id] of [[user, mine], [other, theirs], [domainAdmin, sub]] as const) await finished(k, id);
    const ids = async (k: Keys, extra: Record<string, string | boolean> = {}) =>
      ((await s.client.signed(k, { command: 'listAsyncJobs', ...extra })).body.asyncjobs ?? []).map((j: { jobid: string }) => j.jobid);
    const userSees = await ids(user, { listall: true });
    expect(userSees).toContain(mine);
    expect(userSees).not.toContain(theirs);
    const daSees = await ids(domainAdmin, { listall: true });
    expect(daSees).toEqual([sub]);
    const rootSees = await ids(ADMIN_KEYS, { listall: true });
    expect(rootSees).toEqual(expect.arrayContaining([mine, theirs, sub]));
    const res = await s.client.signed(ADMIN_KEYS, { command: 'listAsyncJobs', listall: true, page: 1, pagesize: 1 });
    expect(res.body.count).toBe(rootSees.length);
    expect(res.body.asyncjobs).toHaveLength(1);
    expect(typeof res.body.asyncjobs[0].jobstatus).toBe('number');
    expect(await ids(ADMIN_KEYS, { listall: true, startdate: '2999-01-01' })).toEqual([]);
  });

  it('shows a failed job as jobstatus 2 with {errorcode, errortext} and never a stack', async () => {
    const jobid = await run(user, { fail: 'crash' });
    const body = await finished(user, jobid);
    expect(body).toMatchObject({ jobstatus: 2, jobresultcode: 530, jobresulttype: 'object' });
    expect(body.jobresult).toEqual({ errorcode: 530, errortext: 'Internal error executing command, please contact your system administrator' });
  });
});
