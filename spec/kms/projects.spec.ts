/**
 * CloudStack projects: a project owns keys, volumes and profiles through its own account (type 5);
 * its members act on them with `projectid`, others are refused (531) and never see them; plain lists
 * (without projectid) show no project-owned object; `projectid=-1` lists every project the caller sees.
 */
import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { createActor, enableDefaultProfile, type Keys } from '../support/actors';
import { createKmsWorld, finishedJob, ok, suffix, type Actor, type KmsWorld } from '../support/kms-world';
import type { Params } from '../support/client';

let ts: TestServer;
let w: KmsWorld;
let outsider: Actor; // a user of the project's domain who is no member
let profileId: string;
let projectId: string;
let projectName: string;
let keyId: string;
let volumeId: string;

const call = (keys: Keys, params: Params) => ts.client.signed(keys, params);
/** Submits an async command and answers its finished job. */
async function job(keys: Keys, params: Params): Promise<Record<string, any>> {
  const res = await call(keys, params);
  if (res.status !== 200) throw new Error(`${String(params.command)} failed: ${res.status} ${res.raw}`);
  return finishedJob(ts, keys, res.body.jobid);
}
const ids = (items: Array<{ id: string }> | undefined) => (items ?? []).map((x) => x.id);

beforeAll(async () => {
  ts = await startTestServer();
  w = await createKmsWorld(ts.client);
  outsider = await createActor(ts.client, { name: `outsider-${suffix()}`, domainId: w.d1 });
  profileId = await enableDefaultProfile(ts.client);
  projectName = `proj-${suffix()}`;
});
afterAll(async () => { await ts?.close(); });

describe('projects', () => {
  it('a user creates a project (async) and owns it as its Admin member', async () => {
    const res = await call(w.a.keys, { command: 'createProject', name: projectName, displaytext: 'KMS team' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: expect.any(String), jobid: expect.any(String) });
    const done = await finishedJob(ts, w.a.keys, res.body.jobid);
    expect(done.jobstatus).toBe(1);
    const project = done.jobresult.project;
    expect(project).toMatchObject({
      id: res.body.id, name: projectName, displaytext: 'KMS team', domainid: w.d1, state: 'Active', account: w.a.account,
      owner: [{ account: w.a.account, accountid: w.a.accountId }], projectaccountname: expect.stringMatching(/^PrjAcct-/),
    });
    projectId = project.id;
    const members = (await ok(ts.client, w.a.keys, { command: 'listProjectAccounts', projectid: projectId })).projectaccount;
    expect(members).toEqual([expect.objectContaining({ projectid: projectId, account: w.a.account, role: 'Admin', domainid: w.d1 })]);
  });

  it('refuses a second project of the same name in the domain (431), and changes nothing', async () => {
    const res = await call(w.a.keys, { command: 'createProject', name: projectName });
    expect(res.status).toBe(431);
    expect(res.raw).toContain('already exists');
    expect((await ok(ts.client, ADMIN_KEYS, { command: 'listProjects', name: projectName, listall: true })).count).toBe(1);
  });

  it('the Admin member adds a Regular member; a Regular member may not manage membership (531)', async () => {
    expect((await job(w.a.keys, { command: 'addAccountToProject', projectid: projectId, account: w.b.account })).jobstatus).toBe(1);
    const members = (await ok(ts.client, w.b.keys, { command: 'listProjectAccounts', projectid: projectId })).projectaccount;
    expect(members.map((m: any) => [m.account, m.role])).toEqual([[w.a.account, 'Admin'], [w.b.account, 'Regular']]);
    const refused = await call(w.b.keys, { command: 'addAccountToProject', projectid: projectId, account: outsider.account });
    expect(refused.status).toBe(531);
    // An account of another domain cannot join.
    expect((await call(w.a.keys, { command: 'addAccountToProject', projectid: projectId, account: w.c.account })).status).toBe(431);
  });

  it('a member creates a project-owned key and volume with projectid', async () => {
    const key = (await ok(ts.client, w.b.keys, { command: 'createKMSKey', name: 'team-key', zoneid: w.zoneId, hsmprofileid: profileId, projectid: projectId })).kmskey;
    keyId = key.id;
    // CloudStack's owner rule: a project's object names its project, never the internal PrjAcct-… account.
    expect(key).toMatchObject({ projectid: projectId, project: expect.any(String) });
    expect(key.account).toBeUndefined();
    expect(key.accountid).toBeUndefined();
    const created = await call(w.a.keys, { command: 'createVolume', name: 'team-disk', zoneid: w.zoneId, kmskeyid: keyId, projectid: projectId });
    expect(created.status).toBe(200);
    const done = await finishedJob(ts, w.a.keys, created.body.jobid);
    expect(done.jobstatus).toBe(1);
    volumeId = done.jobresult.volume.id;
    expect(done.jobresult.volume).toMatchObject({ projectid: projectId, project: key.project });
    expect(done.jobresult.volume.account).toBeUndefined();
    // Root makes a profile for the project; members list it with projectid, beside the public ones.
    const madeProfile = (await ok(ts.client, ADMIN_KEYS, { command: 'createHSMProfile', name: `pp-${suffix()}`, protocol: 'database', projectid: projectId })).hsmprofile;
    expect(madeProfile).toMatchObject({ projectid: projectId, project: key.project });
    expect(madeProfile.account).toBeUndefined();
    const projectProfile = madeProfile.id;
    // The key's events answer with the project too.
    const events = (await ok(ts.client, w.b.keys, { command: 'listEvents', projectid: projectId, resourceid: keyId })).event;
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) {
      expect(e).toMatchObject({ projectid: projectId, project: key.project });
      expect(e.account).toBeUndefined();
    }
    const profiles = ids((await ok(ts.client, w.b.keys, { command: 'listHSMProfiles', projectid: projectId, listall: true })).hsmprofile);
    expect(profiles).toEqual(expect.arrayContaining([projectProfile, profileId]));
    expect(ids((await ok(ts.client, w.b.keys, { command: 'listHSMProfiles', listall: true })).hsmprofile)).not.toContain(projectProfile);
    expect((await call(w.c.keys, { command: 'listHSMProfiles', projectid: projectId })).status).toBe(531);
    expect((await call(ADMIN_KEYS, { command: 'deleteHSMProfile', id: projectProfile })).status).toBe(200);
    // A member may also act on the project's key by id.
    expect((await call(w.a.keys, { command: 'updateKMSKey', id: keyId, description: 'the team key' })).status).toBe(200);
  });

  it('members list the project objects with projectid and with projectid=-1; plain lists hide them', async () => {
    for (const m of [w.a, w.b]) {
      expect(ids((await ok(ts.client, m.keys, { command: 'listKMSKeys', projectid: projectId })).kmskey)).toEqual([keyId]);
      expect(ids((await ok(ts.client, m.keys, { command: 'listVolumes', projectid: projectId })).volume)).toEqual([volumeId]);
      expect(ids((await ok(ts.client, m.keys, { command: 'listVolumesMetrics', projectid: '-1' })).volume)).toEqual([volumeId]);
      expect(ids((await ok(ts.client, m.keys, { command: 'listKMSKeys', projectid: '-1' })).kmskey)).toEqual([keyId]);
      expect(ids((await ok(ts.client, m.keys, { command: 'listKMSKeys', listall: true })).kmskey)).not.toContain(keyId);
      expect(ids((await ok(ts.client, m.keys, { command: 'listVolumes', listall: true })).volume)).not.toContain(volumeId);
    }
    // Root and the domain admin of the project's domain see it with projectid=-1, never without projectid.
    for (const admin of [ADMIN_KEYS, w.da.keys]) {
      expect(ids((await ok(ts.client, admin, { command: 'listKMSKeys', projectid: '-1' })).kmskey)).toContain(keyId);
      expect(ids((await ok(ts.client, admin, { command: 'listKMSKeys', listall: true, pagesize: -1 })).kmskey)).not.toContain(keyId);
    }
    const events = (await ok(ts.client, w.b.keys, { command: 'listEvents', projectid: projectId, type: 'KMS.KEY.CREATE' })).event;
    expect(events.map((e: any) => e.resourceid)).toEqual([keyId]);
  });

  it('a non-member is refused (531), sees nothing of the project, and cannot use its key', async () => {
    for (const stranger of [outsider, w.c]) {
      expect((await call(stranger.keys, { command: 'listKMSKeys', projectid: projectId })).status).toBe(531);
      expect((await call(stranger.keys, { command: 'createKMSKey', name: 'x', zoneid: w.zoneId, hsmprofileid: profileId, projectid: projectId })).status).toBe(531);
      expect((await call(stranger.keys, { command: 'createVolume', name: 'x', zoneid: w.zoneId, kmskeyid: keyId, projectid: projectId })).status).toBe(531);
      expect((await call(stranger.keys, { command: 'updateKMSKey', id: keyId, description: 'taken' })).status).toBe(531);
      expect((await call(stranger.keys, { command: 'listProjectAccounts', projectid: projectId })).status).toBe(531);
      expect((await ok(ts.client, stranger.keys, { command: 'listProjects', listall: true })).project ?? []).toEqual([]);
      expect((await ok(ts.client, stranger.keys, { command: 'listKMSKeys', projectid: '-1' })).kmskey ?? []).toEqual([]);
      expect((await ok(ts.client, stranger.keys, { command: 'listVolumes', projectid: '-1' })).volume ?? []).toEqual([]);
    }
    // The domain admin of another domain: no project, and 531 on it.
    const otherDa = await createActor(ts.client, { name: `da2-${suffix()}`, domainId: w.d2, accountType: 2 });
    expect((await call(otherDa.keys, { command: 'listVolumes', projectid: projectId })).status).toBe(531);
    // An unknown project is a 431.
    expect((await call(w.a.keys, { command: 'listKMSKeys', projectid: '7c0c1a64-0000-4000-8000-000000000000' })).status).toBe(431);
    expect((await call(w.a.keys, { command: 'listKMSKeys', projectid: 'nope' })).status).toBe(431);
  });

  it('listProjects: members without listall, the domain admin and root with listall', async () => {
    for (const m of [w.a, w.b]) expect(ids((await ok(ts.client, m.keys, { command: 'listProjects' })).project)).toEqual([projectId]);
    expect(ids((await ok(ts.client, w.da.keys, { command: 'listProjects', listall: true })).project)).toEqual([projectId]);
    expect(ids((await ok(ts.client, ADMIN_KEYS, { command: 'listProjects', listall: true, pagesize: -1 })).project)).toContain(projectId);
    expect(ids((await ok(ts.client, w.da.keys, { command: 'listProjects' })).project)).toEqual([]);
  });

  it('listProjects and listProjectAccounts filter and page: displaytext exactly, keyword; a member keyword is case-sensitive', async () => {
    const list = (keys: Keys, params: Params) => ok(ts.client, keys, { command: 'listProjects', ...params });
    expect(ids((await list(w.a.keys, { displaytext: 'KMS team' })).project)).toEqual([projectId]);
    expect((await list(w.a.keys, { displaytext: 'kms team' })).project ?? []).toEqual([]);
    expect((await list(w.a.keys, { displaytext: 'KMS' })).project ?? []).toEqual([]);
    expect(ids((await list(w.a.keys, { keyword: 'KMS' })).project)).toEqual([projectId]);
    expect(ids((await list(w.a.keys, { keyword: projectName.slice(2) })).project)).toEqual([projectId]);
    expect((await list(w.a.keys, { page: 2, pagesize: 1 }))).toMatchObject({ count: 1 });
    const members = (params: Params) => ok(ts.client, w.a.keys, { command: 'listProjectAccounts', projectid: projectId, ...params });
    expect((await members({ keyword: w.b.account.slice(1) })).projectaccount.map((m: any) => m.account)).toEqual([w.b.account]);
    expect((await members({ keyword: w.b.account.toUpperCase() })).projectaccount ?? []).toEqual([]);
    expect((await members({ keyword: 'user' })).count).toBe(2);
    const second = await members({ page: 2, pagesize: 1 });
    expect(second.count).toBe(2);
    expect(second.projectaccount.map((m: any) => [m.account, m.role])).toEqual([[w.b.account, 'Regular']]);
    expect((await members({ role: 'Admin' })).projectaccount.map((m: any) => m.account)).toEqual([w.a.account]);
  });

  it('a removed member loses the project at once; the last Admin cannot be removed', async () => {
    expect((await job(w.da.keys, { command: 'deleteAccountFromProject', projectid: projectId, account: w.b.account })).jobstatus).toBe(1);
    expect((await call(w.b.keys, { command: 'listKMSKeys', projectid: projectId })).status).toBe(531);
    expect((await call(w.b.keys, { command: 'updateKMSKey', id: keyId, description: 'gone' })).status).toBe(531);
    const last = await job(w.a.keys, { command: 'deleteAccountFromProject', projectid: projectId, account: w.a.account });
    expect(last.jobstatus).toBe(2);
    expect(last.jobresultcode).toBe(431);
  });

  it('updateProject renames it; deleteProject refuses while the project owns a key, then deletes the empty project', async () => {
    const updated = await job(w.a.keys, { command: 'updateProject', id: projectId, displaytext: 'renamed team' });
    expect(updated.jobresult.project).toMatchObject({ id: projectId, displaytext: 'renamed team' });
    const refused = await call(w.a.keys, { command: 'deleteProject', id: projectId });
    expect(refused.status).toBe(431);
    expect(refused.raw).toContain('still owns');
    expect((await call(w.a.keys, { command: 'deleteVolume', id: volumeId })).status).toBe(200);
    expect((await job(w.a.keys, { command: 'deleteKMSKey', id: keyId })).jobstatus).toBe(1);
    expect((await job(w.a.keys, { command: 'deleteProject', id: projectId })).jobstatus).toBe(1);
    expect((await ok(ts.client, ADMIN_KEYS, { command: 'listProjects', id: projectId })).project ?? []).toEqual([]);
    expect((await call(w.a.keys, { command: 'listKMSKeys', projectid: projectId })).status).toBe(431);
  });
});
