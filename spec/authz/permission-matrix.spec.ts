/**
 * The permission matrix: every declared command × every caller × an object owned by every party,
 * with the expected answer written here by hand (never computed by the code under test):
 * the HTTP status, and for lists exactly which of the world's ids are visible.
 *
 * A command without a case here fails the first test, so a new command cannot ship without an
 * access rule. Domain names are chosen to break string-prefix scoping: `%`, `a_b` beside `axb`,
 * `A_B` (a case pair of `a_b`), `_x` beside `yx`.
 */
import { randomUUID } from 'node:crypto';
import { ALL_COMMANDS } from '../../src/commands/registry';
import type { Role } from '../../src/commands/define';
import { hashPassword } from '../../src/identity/password';
import type { ApiAnswer, Params } from '../support/client';
import { createActor, enableDefaultProfile, type Keys } from '../support/actors';
import { finishedJob, ok, suffix } from '../support/kms-world';
import { ADMIN_KEYS, startTestServer, type TestServer } from '../support/server';

type CallerName = 'root' | 'DA1' | 'DA2' | 'DA3' | 'A' | 'B' | 'R';
type OwnerName = CallerName | 'C' | 'X' | 'Y' | 'Z';
type DomainName = 'ROOT' | '%' | '%/sub' | 'a_b' | 'A_B' | 'axb' | '_x' | 'yx';

const CALLERS: readonly CallerName[] = ['root', 'DA1', 'DA2', 'DA3', 'A', 'B', 'R'];
const OWNERS: readonly OwnerName[] = [...CALLERS, 'C', 'X', 'Y', 'Z'];

/** Where each party lives. R is a root-admin account inside `%` (made as an older server allowed). */
const HOME: Record<OwnerName, DomainName> = {
  root: 'ROOT', DA1: '%', A: '%', B: '%', R: '%', C: '%/sub', DA2: 'a_b', Y: 'A_B', X: 'axb', DA3: '_x', Z: 'yx',
};
const ROLE: Record<CallerName, Role> = { root: 'Admin', R: 'Admin', DA1: 'DomainAdmin', DA2: 'DomainAdmin', DA3: 'DomainAdmin', A: 'User', B: 'User' };

/** The expected rule, by hand: root admins reach all; a domain admin its subtree minus root-admin accounts; a user itself. */
const REACH: Record<CallerName, 'all' | readonly OwnerName[]> = {
  root: 'all', R: 'all', DA1: ['DA1', 'A', 'B', 'C'], DA2: ['DA2'], DA3: ['DA3'], A: ['A'], B: ['B'],
};
const DOMAIN_REACH: Record<CallerName, 'all' | readonly DomainName[]> = {
  root: 'all', R: 'all', DA1: ['%', '%/sub'], DA2: ['a_b'], DA3: ['_x'], A: ['%'], B: ['%'],
};
/** Disk offerings are seen by domain: those of the caller's domain and above it, a domain admin's also below. */
const OFFERING_SIGHT: Record<CallerName, 'all' | readonly DomainName[]> = {
  root: 'all', R: 'all', DA1: ['ROOT', '%', '%/sub'], DA2: ['ROOT', 'a_b'], DA3: ['ROOT', '_x'], A: ['ROOT', '%'], B: ['ROOT', '%'],
};
/**
 * Project P lives in `%`: A made it (its Admin member), B is a Regular member. Who reaches its
 * account (and so its keys and volumes): its members, the domain admin above it, root admins.
 * Who manages it (membership, update, delete): its Admin member, the domain admin above it, root admins.
 */
const PROJECT_SIGHT: readonly CallerName[] = ['root', 'R', 'DA1', 'A', 'B'];
const PROJECT_MANAGE: readonly CallerName[] = ['root', 'R', 'DA1', 'A'];
const seesOffering = (c: CallerName, d: DomainName): boolean => OFFERING_SIGHT[c] === 'all' || (OFFERING_SIGHT[c] as readonly DomainName[]).includes(d);
const reaches = (c: CallerName, o: OwnerName): boolean => REACH[c] === 'all' || (REACH[c] as readonly OwnerName[]).includes(o);
const reachesDomain = (c: CallerName, d: DomainName): boolean => DOMAIN_REACH[c] === 'all' || (DOMAIN_REACH[c] as readonly DomainName[]).includes(d);

interface Party {
  keys: Keys; password: string; username: string; accountName: string; accountId: string; domainId: string; userId: string;
  /** A second user of the party's account, the target of user commands. */
  victimId: string;
  profileId: string; keyId: string; volumeId: string; jobId: string;
}

let ts: TestServer;
const party = {} as Record<OwnerName, Party>;
const domainIds = {} as Record<DomainName, string>;
/** A disk offering limited to each domain (made by root). */
const offeringIds = {} as Record<DomainName, string>;
let zoneId = '';
/** Project P, its key and volume (owned by its account), and an account of `%` that is no member (joins and leaves). */
const project = { id: '', keyId: '', volumeId: '', spare: '', profileId: '' };
let cells = 0;
const unexpected: string[] = [];

const call = (who: CallerName, params: Params): Promise<ApiAnswer> => ts.client.signed(party[who].keys, params);
const root = (params: Params) => ok(ts.client, ADMIN_KEYS, params);

async function makeDomain(name: DomainName, label: string, parent?: DomainName): Promise<void> {
  domainIds[name] = (await root({ command: 'createDomain', name: label, ...(parent ? { parentdomainid: domainIds[parent] } : {}) })).domain.id;
}

async function makeParty(name: OwnerName): Promise<void> {
  const domainId = domainIds[HOME[name]];
  let p: Omit<Party, 'victimId' | 'profileId' | 'keyId' | 'volumeId' | 'jobId'>;
  if (name === 'root') {
    const acct = (await root({ command: 'listAccounts', name: 'admin' })).account[0];
    p = { keys: ADMIN_KEYS, password: 'password', username: 'admin', accountName: 'admin', accountId: acct.id, domainId, userId: acct.user[0].id };
  } else if (name === 'R') {
    p = await insertRootAdminAccount(`r-${suffix()}`, domainId);
  } else {
    const username = `${name.toLowerCase()}-${suffix()}`;
    const a = await createActor(ts.client, { name: username, domainId, accountType: name.startsWith('DA') ? 2 : 0 });
    p = { keys: a.keys, password: `pw-${username}-123`, username, accountName: a.account, accountId: a.accountId, domainId, userId: a.userId };
  }
  const victimId = (await root({
    command: 'createUser', username: `v-${suffix()}`, password: 'victim-pw-1', firstname: 'V', lastname: 'User', account: p.accountName, domainid: domainId,
  })).user.id;
  const owner: Params = name === 'root' ? {} : { account: p.accountName, domainid: domainId };
  const profileId = (await root({ command: 'createHSMProfile', name: `p-${suffix()}`, protocol: 'database', ...owner })).hsmprofile.id;
  const keyId = (await root({ command: 'createKMSKey', name: `k-${suffix()}`, zoneid: zoneId, hsmprofileid: profileId, ...owner })).kmskey.id;
  // The party makes its own volume, so the volume, its job and its event are all the party's.
  const created = await ok(ts.client, p.keys, { command: 'createVolume', name: `vol-${suffix()}`, zoneid: zoneId, kmskeyid: keyId });
  expect((await finishedJob(ts, p.keys, created.jobid)).jobstatus).toBe(1);
  party[name] = { ...p, victimId, profileId, keyId, volumeId: created.id, jobId: created.jobid };
}

/**
 * A root-admin account inside a sub-domain, written to the database as servers before this fix
 * let root create it (createAccount now refuses accounttype=1 outside ROOT, as CloudStack does).
 */
async function insertRootAdminAccount(accountName: string, domainUuid: string): Promise<Omit<Party, 'victimId' | 'profileId' | 'keyId' | 'volumeId' | 'jobId'>> {
  const db = ts.app.db;
  const domain = await db('domain').where({ uuid: domainUuid }).first('id');
  const accountUuid = randomUUID();
  const [accountId] = await db('account').insert({ uuid: accountUuid, account_name: accountName, account_name_key: accountName.toLowerCase(), type: 1, domain_id: domain.id, state: 'enabled', created: Date.now() });
  const userUuid = randomUUID();
  const password = 'r-admin-pw-1';
  await db('user').insert({
    uuid: userUuid, username: accountName, username_key: accountName.toLowerCase(), password: await hashPassword(password), account_id: Number(accountId), firstname: 'R', lastname: 'Admin',
    email: null, state: 'enabled', api_key: null, secret_key: null, timezone: null, created: Date.now(),
  });
  const k = (await root({ command: 'registerUserKeys', id: userUuid })).userkeys;
  return { keys: { apiKey: k.apikey, secretKey: k.secretkey }, password, username: accountName, accountName, accountId: accountUuid, domainId: domainUuid, userId: userUuid };
}

beforeAll(async () => {
  ts = await startTestServer();
  zoneId = (await root({ command: 'createZone', name: `zone-${suffix()}` })).zone.id;
  project.profileId = await enableDefaultProfile(ts.client);
  domainIds.ROOT = (await root({ command: 'listDomains', name: 'ROOT' })).domain[0].id;
  await makeDomain('%', '%');
  await makeDomain('%/sub', 'sub', '%');
  await makeDomain('a_b', 'a_b');
  await makeDomain('A_B', 'A_B');
  await makeDomain('axb', 'axb');
  await makeDomain('_x', '_x');
  await makeDomain('yx', 'yx');
  for (const o of OWNERS) await makeParty(o);
  for (const d of Object.keys(domainIds) as DomainName[]) {
    offeringIds[d] = (await root({ command: 'createDiskOffering', name: `off-${suffix()}`, disksize: 1, domainid: domainIds[d] })).diskoffering.id;
  }
  const made = await ok(ts.client, party.A.keys, { command: 'createProject', name: `proj-${suffix()}` });
  expect((await finishedJob(ts, party.A.keys, made.jobid)).jobstatus).toBe(1);
  project.id = made.id;
  const joined = await ok(ts.client, party.A.keys, { command: 'addAccountToProject', projectid: project.id, account: party.B.accountName });
  expect((await finishedJob(ts, party.A.keys, joined.jobid)).jobstatus).toBe(1);
  project.keyId = (await ok(ts.client, party.B.keys, { command: 'createKMSKey', name: `pk-${suffix()}`, zoneid: zoneId, hsmprofileid: project.profileId, projectid: project.id })).kmskey.id;
  const vol = await ok(ts.client, party.A.keys, { command: 'createVolume', name: `pv-${suffix()}`, zoneid: zoneId, kmskeyid: project.keyId, projectid: project.id });
  expect((await finishedJob(ts, party.A.keys, vol.jobid)).jobstatus).toBe(1);
  project.volumeId = vol.id;
  project.spare = (await createActor(ts.client, { name: `spare-${suffix()}`, domainId: domainIds['%'] })).account;
}, 300_000);

afterAll(async () => {
  await ts?.close();
});

// ---- the cases ---------------------------------------------------------------------------------

type Who = 'root' | 'admins' | 'all';
const WHO_ROLES: Record<Who, readonly Role[]> = { root: ['Admin'], admins: ['Admin', 'DomainAdmin'], all: ['Admin', 'DomainAdmin', 'User'] };

/** What a cell saw: a status, or for reads whether the object was visible. */
type Seen = { status: number } | { visible: boolean };

interface Case {
  who: Who;
  /**
   * none: one cell per caller, no owner; owner: access follows REACH; domain: access follows DOMAIN_REACH;
   * session: login/logout, answered to every caller by its own credentials; project: project P, access
   * follows PROJECT_SIGHT (or PROJECT_MANAGE with `manage`).
   */
  target: 'none' | 'owner' | 'domain' | 'session' | 'project';
  /** For target project: the call manages the project (PROJECT_MANAGE), not only uses it. */
  manage?: boolean;
  /** The status when the caller may act (200 unless the call is refused later for another reason). */
  allowed?: number | ((c: CallerName, o: OwnerName) => number);
  /** The status when the caller may not act on the owner's object (531 unless said otherwise). */
  denied?: number | ((c: CallerName, o: OwnerName) => number);
  /** Overrides the access rule of `target` for this command. */
  may?: (c: CallerName, o: OwnerName) => boolean;
  /** A read: the answer is visibility, compared with the reach. */
  read?: boolean;
  run(c: CallerName, o: OwnerName): Promise<Seen>;
  /** Puts things back after an allowed cell (re-enables what was disabled). */
  restore?(c: CallerName, o: OwnerName): Promise<void>;
}

const status = async (p: Promise<ApiAnswer>): Promise<Seen> => ({ status: (await p).status });
/** An async command's answer; an accepted job is awaited (its own outcome is not the access answer). */
const job = async (p: Promise<ApiAnswer>): Promise<Seen> => {
  const res = await p;
  if (res.status === 200) await finishedJob(ts, ADMIN_KEYS, res.body.jobid);
  return { status: res.status };
};
/** Whether `id` is among the listed items (non-200 answers count as a status). */
const listed = async (p: Promise<ApiAnswer>, name: string, id: string, idField = 'id'): Promise<Seen> => {
  const res = await p;
  if (res.status !== 200) return { status: res.status };
  return { visible: ((res.body[name] ?? []) as Array<Record<string, unknown>>).some((x) => x[idField] === id) };
};
const uniq = () => `m-${suffix()}`;

const CASES: Record<string, Case> = {
  // Session and pre-login commands: every caller, its own credentials.
  login: { who: 'all', target: 'session', run: async (c) => ({ status: (await ts.client.login(party[c].username, party[c].password, domainPathOf(c)).then(() => 200, () => 531)) }) },
  logout: { who: 'all', target: 'session', run: async (c) => ({ status: (await (await ts.client.login(party[c].username, party[c].password, domainPathOf(c))).post({ command: 'logout' })).status }) },
  listApis: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listApis', name: 'listZones' })) },
  listCapabilities: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listCapabilities' })) },
  listGuiThemes: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listGuiThemes' })) },
  listOauthProvider: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listOauthProvider' })) },
  forgotPassword: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'forgotPassword', username: party[c].username, domain: domainPathOf(c) })) },
  listLdapConfigurations: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listLdapConfigurations' })) },
  cloudianIsEnabled: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'cloudianIsEnabled' })) },
  listZones: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listZones' })) },
  createZone: { who: 'root', target: 'none', run: (c) => status(call(c, { command: 'createZone', name: uniq() })) },
  listConfigurations: { who: 'root', target: 'none', run: (c) => status(call(c, { command: 'listConfigurations' })) },
  updateConfiguration: { who: 'root', target: 'none', run: (c) => status(call(c, { command: 'updateConfiguration', name: 'kms.retry.count', value: '3' })) },
  resetConfiguration: { who: 'root', target: 'none', run: (c) => status(call(c, { command: 'resetConfiguration', name: 'kms.retry.count' })) },
  // Roles: CloudStack's four default roles, for admins (a domain admin sees its own and lower types).
  listRoles: { who: 'admins', target: 'none', run: (c) => status(call(c, { command: 'listRoles' })) },
  // What UI pages need to appear: zone metrics and the infrastructure counts for root, empty lists for all.
  listZonesMetrics: { who: 'root', target: 'none', run: (c) => status(call(c, { command: 'listZonesMetrics' })) },
  listInfrastructure: { who: 'root', target: 'none', run: (c) => status(call(c, { command: 'listInfrastructure' })) },
  listServiceOfferings: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listServiceOfferings' })) },
  listResourceIcon: { who: 'all', target: 'none', run: (c) => status(call(c, { command: 'listResourceIcon', resourceids: zoneId, resourcetype: 'Zone' })) },

  // Projects: P is seen by its members, the domain admin above it and root; managed by its Admin member too.
  createProject: { who: 'all', target: 'none', run: (c) => job(call(c, { command: 'createProject', name: uniq() })) },
  listProjects: { who: 'all', target: 'project', read: true, run: (c) => listed(call(c, { command: 'listProjects', listall: true, pagesize: -1 }), 'project', project.id) },
  listProjectAccounts: { who: 'all', target: 'project', run: (c) => status(call(c, { command: 'listProjectAccounts', projectid: project.id })) },
  updateProject: { who: 'all', target: 'project', manage: true, run: (c) => job(call(c, { command: 'updateProject', id: project.id, displaytext: `by ${c}` })) },
  // P owns a key and a volume: an allowed caller is refused for that reason (431), nothing is deleted.
  deleteProject: { who: 'all', target: 'project', manage: true, allowed: 431, run: (c) => status(call(c, { command: 'deleteProject', id: project.id })) },
  addAccountToProject: {
    who: 'all', target: 'project', manage: true,
    run: (c) => job(call(c, { command: 'addAccountToProject', projectid: project.id, account: project.spare })),
    restore: async () => { await finishedJob(ts, ADMIN_KEYS, (await root({ command: 'deleteAccountFromProject', projectid: project.id, account: project.spare })).jobid); },
  },
  deleteAccountFromProject: {
    who: 'all', target: 'project', manage: true,
    run: async (c) => {
      await finishedJob(ts, ADMIN_KEYS, (await root({ command: 'addAccountToProject', projectid: project.id, account: project.spare })).jobid);
      const res = await job(call(c, { command: 'deleteAccountFromProject', projectid: project.id, account: project.spare }));
      if ('status' in res && res.status !== 200) await finishedJob(ts, ADMIN_KEYS, (await root({ command: 'deleteAccountFromProject', projectid: project.id, account: project.spare })).jobid);
      return res;
    },
  },

  // Domains and accounts: access follows the domain.
  listDomains: { who: 'all', target: 'domain', read: true, run: (c, o) => listed(call(c, { command: 'listDomains', id: domainIds[HOME[o]], listall: true }), 'domain', domainIds[HOME[o]]) },
  createDomain: { who: 'admins', target: 'domain', run: (c, o) => status(call(c, { command: 'createDomain', name: uniq(), parentdomainid: domainIds[HOME[o]] })) },
  createAccount: {
    who: 'admins', target: 'domain',
    run: (c, o) => status(call(c, { command: 'createAccount', username: uniq(), password: 'pw-123456', firstname: 'M', lastname: 'M', domainid: domainIds[HOME[o]] })),
  },

  // Users and accounts of each owner.
  listAccounts: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listAccounts', id: party[o].accountId, listall: true }), 'account', party[o].accountId) },
  listUsers: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listUsers', id: party[o].victimId }), 'user', party[o].victimId) },
  createUser: {
    who: 'admins', target: 'owner',
    run: (c, o) => status(call(c, { command: 'createUser', username: uniq(), password: 'pw-123456', firstname: 'M', lastname: 'M', account: party[o].accountName, domainid: party[o].domainId })),
  },
  registerUserKeys: { who: 'all', target: 'owner', run: (c, o) => status(call(c, { command: 'registerUserKeys', id: party[o].victimId })) },
  getUserKeys: { who: 'all', target: 'owner', run: (c, o) => status(call(c, { command: 'getUserKeys', id: party[o].victimId })) },
  disableUser: {
    who: 'admins', target: 'owner', run: (c, o) => job(call(c, { command: 'disableUser', id: party[o].victimId })),
    restore: async (_c, o) => { await root({ command: 'enableUser', id: party[o].victimId }); },
  },
  enableUser: { who: 'admins', target: 'owner', run: (c, o) => status(call(c, { command: 'enableUser', id: party[o].victimId })) },
  lockUser: {
    who: 'admins', target: 'owner', run: (c, o) => status(call(c, { command: 'lockUser', id: party[o].victimId })),
    restore: async (_c, o) => { await root({ command: 'enableUser', id: party[o].victimId }); },
  },
  disableAccount: {
    who: 'admins', target: 'owner',
    // The bootstrap admin account is never disabled (CloudStack refuses its default admin account).
    allowed: (_c, o) => (o === 'root' ? 530 : 200),
    run: (c, o) => job(call(c, { command: 'disableAccount', id: party[o].accountId, lock: true })),
    restore: async (_c, o) => { await root({ command: 'enableAccount', id: party[o].accountId }); },
  },
  enableAccount: { who: 'admins', target: 'owner', run: (c, o) => status(call(c, { command: 'enableAccount', id: party[o].accountId })) },

  // Events and jobs of each owner.
  listEvents: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listEvents', resourceid: party[o].volumeId, listall: true }), 'event', party[o].volumeId, 'resourceid') },
  queryAsyncJobResult: { who: 'all', target: 'owner', run: (c, o) => status(call(c, { command: 'queryAsyncJobResult', jobid: party[o].jobId })) },
  listAsyncJobs: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listAsyncJobs', listall: true, pagesize: -1 }), 'asyncjobs', party[o].jobId, 'jobid') },

  // HSM profiles: root manages them; lists show each owner's own.
  createHSMProfile: { who: 'root', target: 'owner', run: (c, o) => status(call(c, { command: 'createHSMProfile', name: uniq(), protocol: 'database', ...ownerParams(o) })) },
  addHSMProfile: { who: 'root', target: 'owner', run: (c, o) => status(call(c, { command: 'addHSMProfile', name: uniq(), protocol: 'database', ...ownerParams(o) })) },
  listHSMProfiles: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listHSMProfiles', id: party[o].profileId, listall: true }), 'hsmprofile', party[o].profileId) },
  updateHSMProfile: { who: 'root', target: 'owner', run: (c, o) => status(call(c, { command: 'updateHSMProfile', id: party[o].profileId, enabled: true })) },
  // In use by the owner's key: an allowed caller is refused for that reason (431), nothing is deleted.
  deleteHSMProfile: { who: 'root', target: 'owner', allowed: 431, run: (c, o) => status(call(c, { command: 'deleteHSMProfile', id: party[o].profileId })) },

  // KMS keys.
  createKMSKey: {
    who: 'all', target: 'owner',
    run: (c, o) => status(call(c, { command: 'createKMSKey', name: uniq(), zoneid: zoneId, hsmprofileid: party[o].profileId, account: party[o].accountName, domainid: party[o].domainId })),
  },
  listKMSKeys: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listKMSKeys', id: party[o].keyId, listall: true }), 'kmskey', party[o].keyId) },
  updateKMSKey: { who: 'all', target: 'owner', run: (c, o) => status(call(c, { command: 'updateKMSKey', id: party[o].keyId, description: 'seen by the matrix' })) },
  // keybits=7 is checked after access: a caller who may rotate gets 431 for it, and nothing rotates.
  rotateKMSKey: { who: 'all', target: 'owner', allowed: 431, run: (c, o) => status(call(c, { command: 'rotateKMSKey', id: party[o].keyId, keybits: 7 })) },
  // The key is in use: an allowed caller's job fails with 431 and the key stays.
  deleteKMSKey: { who: 'all', target: 'owner', run: (c, o) => job(call(c, { command: 'deleteKMSKey', id: party[o].keyId })) },

  // Disk offerings, scoped by domain: managed within the caller's subtree, seen up and (admins) down the tree.
  createDiskOffering: { who: 'admins', target: 'domain', run: (c, o) => status(call(c, { command: 'createDiskOffering', name: uniq(), disksize: 1, domainid: domainIds[HOME[o]] })) },
  listDiskOfferings: {
    who: 'all', target: 'domain', read: true, may: (c, o) => seesOffering(c, HOME[o]),
    run: (c, o) => listed(call(c, { command: 'listDiskOfferings', id: offeringIds[HOME[o]], state: 'all' }), 'diskoffering', offeringIds[HOME[o]]),
  },
  // An offering the caller sees but may not manage is a 531; one it does not see, a 431 (not found).
  updateDiskOffering: {
    who: 'admins', target: 'domain', denied: (c, o) => (seesOffering(c, HOME[o]) ? 531 : 431),
    run: (c, o) => status(call(c, { command: 'updateDiskOffering', id: offeringIds[HOME[o]], displaytext: 'seen by the matrix' })),
  },
  deleteDiskOffering: {
    who: 'admins', target: 'domain', denied: (c, o) => (seesOffering(c, HOME[o]) ? 531 : 431),
    run: (c, o) => status(call(c, { command: 'deleteDiskOffering', id: offeringIds[HOME[o]] })),
    restore: async (_c, o) => { await root({ command: 'updateDiskOffering', id: offeringIds[HOME[o]], state: 'Active' }); },
  },
  listStorageTags: { who: 'root', target: 'none', run: (c) => status(call(c, { command: 'listStorageTags' })) },
  listDomainChildren: { who: 'admins', target: 'domain', run: (c, o) => status(call(c, { command: 'listDomainChildren', id: domainIds[HOME[o]], isrecursive: true })) },

  // Volumes.
  createVolume: {
    who: 'all', target: 'owner',
    run: (c, o) => job(call(c, { command: 'createVolume', name: uniq(), zoneid: zoneId, kmskeyid: party[o].keyId, account: party[o].accountName, domainid: party[o].domainId })),
  },
  listVolumesMetrics: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listVolumesMetrics', id: party[o].volumeId, listall: true }), 'volume', party[o].volumeId) },
  listVolumes: { who: 'all', target: 'owner', read: true, run: (c, o) => listed(call(c, { command: 'listVolumes', id: party[o].volumeId, listall: true }), 'volume', party[o].volumeId) },
  deleteVolume: {
    who: 'all', target: 'owner',
    run: async (c, o) => {
      const v = await root({ command: 'createVolume', name: uniq(), zoneid: zoneId, kmskeyid: party[o].keyId, ...ownerParams(o) });
      await finishedJob(ts, ADMIN_KEYS, v.jobid);
      return status(call(c, { command: 'deleteVolume', id: v.id }));
    },
  },
  getVolumeEncryptionKey: { who: 'root', target: 'owner', run: (c, o) => status(call(c, { command: 'getVolumeEncryptionKey', id: party[o].volumeId })) },
  migrateVolumesToKMS: { who: 'root', target: 'owner', run: (c, o) => job(call(c, { command: 'migrateVolumesToKMS', kmskeyid: party[o].keyId, volumeids: party[o].volumeId })) },

  // The master key: root admins only. No new key is configured, so an allowed caller is refused (431) and nothing rotates.
  rotateMasterKey: { who: 'root', target: 'none', allowed: 431, run: (c) => status(call(c, { command: 'rotateMasterKey' })) },
};

function domainPathOf(c: OwnerName): string {
  const home = HOME[c];
  return home === 'ROOT' ? '/' : `/${home}/`;
}

function ownerParams(o: OwnerName): Params {
  return o === 'root' ? {} : { account: party[o].accountName, domainid: party[o].domainId };
}

/** The expected answer of one cell, from the hand-written tables above. */
function expected(name: string, k: Case, c: CallerName, o: OwnerName | undefined): Seen {
  if (!WHO_ROLES[k.who].includes(ROLE[c])) return { status: 432 };
  if (k.target === 'project') {
    const mayProject = (k.manage ? PROJECT_MANAGE : PROJECT_SIGHT).includes(c);
    if (k.read) return { visible: mayProject };
    if (!mayProject) return { status: 531 };
    return { status: typeof k.allowed === 'number' ? k.allowed : 200 };
  }
  const may = o === undefined || (k.may ? k.may(c, o) : k.target === 'domain' ? reachesDomain(c, HOME[o]) : k.target === 'owner' ? reaches(c, o) : true);
  if (k.read && o !== undefined) return { visible: may };
  if (!may) return { status: typeof k.denied === 'function' ? k.denied(c, o!) : k.denied ?? 531 };
  const allowed = typeof k.allowed === 'function' ? k.allowed(c, o!) : k.allowed ?? 200;
  void name;
  return { status: allowed };
}

const same = (a: Seen, b: Seen): boolean => JSON.stringify(a) === JSON.stringify(b);

describe('permission matrix', () => {
  it('has a case for every declared command, with the roles the declaration gives', () => {
    const missing = ALL_COMMANDS.filter((c) => !CASES[c.name]).map((c) => c.name);
    expect(missing).toEqual([]);
    const stale = Object.keys(CASES).filter((n) => !ALL_COMMANDS.some((c) => c.name === n));
    expect(stale).toEqual([]);
    for (const c of ALL_COMMANDS) expect([c.name, [...c.roles].sort()]).toEqual([c.name, [...WHO_ROLES[CASES[c.name]!.who]].sort()]);
  });

  for (const spec of ALL_COMMANDS) {
    it(`${spec.name}: every caller × every owner answers as the rules say`, async () => {
      const k = CASES[spec.name];
      if (!k) throw new Error(`no case for ${spec.name}`);
      const owners: Array<OwnerName | undefined> = k.target === 'owner' || k.target === 'domain' ? [...OWNERS] : [undefined];
      for (const c of CALLERS) {
        for (const o of owners) {
          const want = expected(spec.name, k, c, o);
          const got = await k.run(c, o as OwnerName);
          cells++;
          if (!same(got, want)) unexpected.push(`${spec.name} by ${c} on ${o ?? '-'}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
          if ('status' in got && got.status === 200 && k.restore) await k.restore(c, o as OwnerName);
        }
      }
      expect(unexpected.filter((u) => u.startsWith(`${spec.name} `))).toEqual([]);
    }, 300_000);
  }

  it('lists show exactly the reached objects, the same as single reads', async () => {
    const lists: Array<[string, Params, string, (o: OwnerName) => string, string]> = [
      ['listKMSKeys', { listall: true }, 'kmskey', (o) => party[o].keyId, 'id'],
      ['listVolumes', { listall: true }, 'volume', (o) => party[o].volumeId, 'id'],
      ['listHSMProfiles', { listall: true }, 'hsmprofile', (o) => party[o].profileId, 'id'],
      ['listAccounts', { listall: true }, 'account', (o) => party[o].accountId, 'id'],
      ['listUsers', { listall: true }, 'user', (o) => party[o].victimId, 'id'],
      ['listEvents', { listall: true, type: 'VOLUME.CREATE' }, 'event', (o) => party[o].volumeId, 'resourceid'],
      ['listAsyncJobs', { listall: true }, 'asyncjobs', (o) => party[o].jobId, 'jobid'],
    ];
    for (const [command, params, name, idOf, field] of lists) {
      for (const c of CALLERS) {
        const res = await call(c, { command, ...params, pagesize: -1 });
        expect(res.status).toBe(200);
        const seen = new Set(((res.body[name] ?? []) as Array<Record<string, string>>).map((x) => x[field]));
        for (const o of OWNERS) {
          cells++;
          if (seen.has(idOf(o)) !== reaches(c, o)) unexpected.push(`${command} listall by ${c}: ${o}'s object ${seen.has(idOf(o)) ? 'shown' : 'hidden'}`);
        }
        // Narrowed by domain and recursive, a domain admin still never sees a root-admin account's objects.
        for (const d of ['%', 'a_b', '_x'] as const) {
          const r = await call(c, { command, ...params, domainid: domainIds[d], isrecursive: true, pagesize: -1 });
          const owned = OWNERS.filter((o) => HOME[o] === d || (d === '%' && HOME[o] === '%/sub'));
          cells++;
          if (!reachesDomain(c, d)) {
            if (r.status !== 531) unexpected.push(`${command} domainid=${d} by ${c}: expected 531, got ${r.status}`);
            continue;
          }
          const inDomain = new Set(((r.body[name] ?? []) as Array<Record<string, string>>).map((x) => x[field]));
          for (const o of owned) {
            if (inDomain.has(idOf(o)) !== reaches(c, o)) unexpected.push(`${command} domainid=${d} isrecursive by ${c}: ${o}'s object ${inDomain.has(idOf(o)) ? 'shown' : 'hidden'}`);
          }
          for (const o of OWNERS.filter((x) => !owned.includes(x))) {
            if (inDomain.has(idOf(o))) unexpected.push(`${command} domainid=${d} isrecursive by ${c}: ${o}'s object from another domain shown`);
          }
        }
      }
    }
    expect(unexpected).toEqual([]);
  }, 300_000);

  it('project P: its members, the domain admin above it and root act on its objects with projectid; others get 531 and see nothing', async () => {
    const bad: string[] = [];
    const check = (what: string, got: unknown, want: unknown) => {
      cells++;
      if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    };
    for (const c of CALLERS) {
      const sees = PROJECT_SIGHT.includes(c);
      const idsOf = async (params: Params, name: string, field = 'id') => {
        const r = await call(c, { ...params, pagesize: -1 });
        return r.status === 200 ? ((r.body[name] ?? []) as Array<Record<string, string>>).map((x) => x[field]) : r.status;
      };
      const has = async (params: Params, name: string, id: string, field = 'id') => {
        const got = await idsOf(params, name, field);
        return typeof got === 'number' ? got : got.includes(id);
      };
      check(`listKMSKeys projectid=P by ${c}`, await has({ command: 'listKMSKeys', projectid: project.id }, 'kmskey', project.keyId), sees ? true : 531);
      check(`listVolumes projectid=P by ${c}`, await has({ command: 'listVolumes', projectid: project.id }, 'volume', project.volumeId), sees ? true : 531);
      check(`listVolumesMetrics projectid=-1 by ${c}`, await has({ command: 'listVolumesMetrics', projectid: '-1' }, 'volume', project.volumeId), sees);
      check(`listKMSKeys projectid=-1 by ${c}`, await has({ command: 'listKMSKeys', projectid: '-1' }, 'kmskey', project.keyId), sees);
      check(`listEvents projectid=P by ${c}`, await has({ command: 'listEvents', projectid: project.id, type: 'KMS.KEY.CREATE' }, 'event', project.keyId, 'resourceid'), sees ? true : 531);
      check(`listHSMProfiles projectid=P by ${c}`, (await call(c, { command: 'listHSMProfiles', projectid: project.id })).status, sees ? 200 : 531);
      check(`listAsyncJobs projectid=P by ${c}`, (await call(c, { command: 'listAsyncJobs', projectid: project.id })).status, sees ? 200 : 531);
      // Without projectid no list shows a project's objects, even with listall.
      check(`listKMSKeys listall by ${c}`, await has({ command: 'listKMSKeys', listall: true }, 'kmskey', project.keyId), false);
      check(`listVolumes listall by ${c}`, await has({ command: 'listVolumes', listall: true }, 'volume', project.volumeId), false);
      check(`updateKMSKey on P's key by ${c}`, (await call(c, { command: 'updateKMSKey', id: project.keyId, description: `by ${c}` })).status, sees ? 200 : 531);
      check(`createKMSKey projectid=P by ${c}`, (await call(c, { command: 'createKMSKey', name: uniq(), zoneid: zoneId, hsmprofileid: project.profileId, projectid: project.id })).status, sees ? 200 : 531);
      check(`createVolume projectid=P by ${c}`, (await job(call(c, { command: 'createVolume', name: uniq(), zoneid: zoneId, kmskeyid: project.keyId, projectid: project.id }))), { status: sees ? 200 : 531 });
    }
    expect(bad).toEqual([]);
  }, 300_000);

  afterAll(() => {
    // The size of the matrix, for the record (commands × callers × owners, plus the list sweeps).
    process.stdout.write(`permission matrix: ${ALL_COMMANDS.length} commands, ${CALLERS.length} callers, ${OWNERS.length} owners: ${cells} cells, ${unexpected.length} unexpected\n`);
  });
});
