/**
 * Who may do what with HSM profiles and KMS keys, as CloudStack decides it: root admin on all,
 * domain admins on their domain's subtree, users on their own account; profiles are root-only to
 * manage and usable by their scope (public, a domain, an account). Every row is one call.
 */
import type { Params } from '../support/client';
import { createKmsWorld, finishedJob, ok, suffix, type Actor, type KmsWorld } from '../support/kms-world';
import { startTestServer, type TestServer } from '../support/server';

type Who = 'root' | 'domain admin' | 'user A' | 'user B' | 'user C';
interface Expect { status: number; errorcode?: number; cserrorcode?: number; errortext?: string | RegExp; count?: number; details?: boolean; keklabel?: boolean; job?: { errorcode: number; errortext: string } }
interface Row { who: Who; does: string; params: () => Promise<Params> | Params; expect: Expect }

let ts: TestServer;
let w: KmsWorld;
const o = { profile: {} as Record<'pub' | 'a' | 'd1' | 'c' | 'off', { id: string; name: string }>, key: {} as Record<'a' | 'b' | 'c', string> };

const actor = (who: Who): Actor => ({ root: w.root, 'domain admin': w.da, 'user A': w.a, 'user B': w.b, 'user C': w.c })[who];
const profile = async (params: Params) => (await ok(ts.client, w.root.keys, { command: 'createHSMProfile', protocol: 'database', ...params })).hsmprofile;
const key = async (who: Who, profileId: string, extra: Params = {}) =>
  (await ok(ts.client, actor(who).keys, { command: 'createKMSKey', name: `k-${suffix()}`, zoneid: w.zoneId, hsmprofileid: profileId, ...extra })).kmskey.id as string;

beforeAll(async () => {
  ts = await startTestServer();
  w = await createKmsWorld(ts.client);
  const s = suffix();
  o.profile.pub = await profile({ name: `pub-${s}`, ispublic: true });
  o.profile.a = await profile({ name: `of-a-${s}`, account: w.a.account, domainid: w.d1 });
  o.profile.d1 = await profile({ name: `d1-${s}`, domainid: w.d1 });
  o.profile.c = await profile({ name: `of-c-${s}`, account: w.c.account, domainid: w.d2 });
  o.profile.off = await profile({ name: `off-${s}`, ispublic: true });
  await ok(ts.client, w.root.keys, { command: 'updateHSMProfile', id: o.profile.off.id, enabled: false });
  o.key.a = await key('user A', o.profile.pub.id);
  o.key.b = await key('user B', o.profile.d1.id);
  o.key.c = await key('user C', o.profile.c.id);
});

afterAll(async () => {
  await ts?.close();
});

const OK = { status: 200 };
const NOT_AVAILABLE = { status: 432, errorcode: 432, cserrorcode: 9999, errortext: /does not exist or is not available for the account/ };
const DENIED = { status: 531, errorcode: 531, cserrorcode: 4365 };
const BAD = (errortext: string | RegExp) => ({ status: 431, errorcode: 431, cserrorcode: 4350, errortext });
/** Refused by the async job, as CloudStack checks state in execute(): {jobid}, then jobstatus 2. */
const BAD_IN_JOB = (errortext: string) => ({ status: 200, job: { errorcode: 431, errortext } });

const profileRows: Row[] = [
  { who: 'root', does: 'createHSMProfile', params: () => ({ command: 'createHSMProfile', protocol: 'database', name: `n-${suffix()}` }), expect: OK },
  { who: 'root', does: 'addHSMProfile (the docs\' name)', params: () => ({ command: 'addHSMProfile', protocol: 'database', name: `n-${suffix()}` }), expect: OK },
  { who: 'domain admin', does: 'createHSMProfile', params: () => ({ command: 'createHSMProfile', protocol: 'database', name: `n-${suffix()}` }), expect: NOT_AVAILABLE },
  { who: 'user A', does: 'createHSMProfile', params: () => ({ command: 'createHSMProfile', protocol: 'database', name: `n-${suffix()}` }), expect: NOT_AVAILABLE },
  { who: 'root', does: "updateHSMProfile on A's profile", params: () => ({ command: 'updateHSMProfile', id: o.profile.a.id, enabled: true }), expect: OK },
  { who: 'domain admin', does: "updateHSMProfile on A's profile", params: () => ({ command: 'updateHSMProfile', id: o.profile.a.id, enabled: true }), expect: NOT_AVAILABLE },
  { who: 'user A', does: 'updateHSMProfile on its own profile', params: () => ({ command: 'updateHSMProfile', id: o.profile.a.id, enabled: true }), expect: NOT_AVAILABLE },
  { who: 'root', does: 'deleteHSMProfile on an unused profile', params: async () => ({ command: 'deleteHSMProfile', id: (await profile({ name: `x-${suffix()}` })).id }), expect: OK },
  { who: 'user A', does: 'deleteHSMProfile on its own profile', params: () => ({ command: 'deleteHSMProfile', id: o.profile.a.id }), expect: NOT_AVAILABLE },
  {
    who: 'root', does: 'deleteHSMProfile on the public profile key A uses', params: () => ({ command: 'deleteHSMProfile', id: o.profile.pub.id }),
    expect: BAD(/^Cannot delete HSM profile '.+': it is referenced by \d+ KMS key\(s\)\. Please delete or reassign those keys first\.$/),
  },
  { who: 'user A', does: 'listHSMProfiles on the public profile (limited: no details)', params: () => ({ command: 'listHSMProfiles', listall: true, id: o.profile.pub.id }), expect: { status: 200, count: 1, details: false } },
  { who: 'user A', does: 'listHSMProfiles on the public profile without listall', params: () => ({ command: 'listHSMProfiles', id: o.profile.pub.id }), expect: { status: 200, count: 0 } },
  { who: 'user A', does: 'listHSMProfiles ispublic=true', params: () => ({ command: 'listHSMProfiles', ispublic: true, id: o.profile.pub.id }), expect: { status: 200, count: 1, details: false } },
  { who: 'user A', does: 'listHSMProfiles on its own profile', params: () => ({ command: 'listHSMProfiles', id: o.profile.a.id }), expect: { status: 200, count: 1, details: true } },
  { who: 'user A', does: "listHSMProfiles on its domain's profile", params: () => ({ command: 'listHSMProfiles', id: o.profile.d1.id }), expect: { status: 200, count: 1, details: true } },
  { who: 'user A', does: "listHSMProfiles on C's profile", params: () => ({ command: 'listHSMProfiles', listall: true, id: o.profile.c.id }), expect: { status: 200, count: 0 } },
  { who: 'user B', does: "listHSMProfiles on A's profile", params: () => ({ command: 'listHSMProfiles', listall: true, id: o.profile.a.id }), expect: { status: 200, count: 0 } },
  { who: 'user C', does: "listHSMProfiles on domain 1's profile", params: () => ({ command: 'listHSMProfiles', listall: true, id: o.profile.d1.id }), expect: { status: 200, count: 0 } },
  { who: 'domain admin', does: "listHSMProfiles on A's profile", params: () => ({ command: 'listHSMProfiles', listall: true, id: o.profile.a.id }), expect: { status: 200, count: 1, details: true } },
  { who: 'domain admin', does: "listHSMProfiles on C's profile", params: () => ({ command: 'listHSMProfiles', listall: true, id: o.profile.c.id }), expect: { status: 200, count: 0 } },
  { who: 'root', does: "listHSMProfiles on C's profile", params: () => ({ command: 'listHSMProfiles', listall: true, id: o.profile.c.id }), expect: { status: 200, count: 1, details: true } },
];

const create = (extra: Params): Params => ({ command: 'createKMSKey', name: `k-${suffix()}`, zoneid: w.zoneId, ...extra });
const keyRows: Row[] = [
  { who: 'user A', does: 'createKMSKey on the public profile', params: () => create({ hsmprofileid: o.profile.pub.id }), expect: OK },
  { who: 'user A', does: 'createKMSKey on its own profile', params: () => create({ hsmprofileid: o.profile.a.id }), expect: OK },
  { who: 'user A', does: "createKMSKey on its domain's profile", params: () => create({ hsmprofileid: o.profile.d1.id }), expect: OK },
  { who: 'user B', does: "createKMSKey on A's profile", params: () => create({ hsmprofileid: o.profile.a.id }), expect: DENIED },
  { who: 'user C', does: "createKMSKey on domain 1's profile", params: () => create({ hsmprofileid: o.profile.d1.id }), expect: DENIED },
  { who: 'user A', does: 'createKMSKey for account B', params: () => create({ hsmprofileid: o.profile.pub.id, account: w.b.account, domainid: w.d1 }), expect: DENIED },
  { who: 'user A', does: 'createKMSKey with domainid but no account', params: () => create({ hsmprofileid: o.profile.pub.id, domainid: w.d1 }), expect: BAD('Account name must be provided with domain ID') },
  { who: 'domain admin', does: 'createKMSKey for account A', params: () => create({ hsmprofileid: o.profile.a.id, account: w.a.account, domainid: w.d1 }), expect: OK },
  { who: 'domain admin', does: 'createKMSKey for account C (another domain)', params: () => create({ hsmprofileid: o.profile.pub.id, account: w.c.account, domainid: w.d2 }), expect: DENIED },
  {
    who: 'root', does: "createKMSKey for account C on A's profile", params: () => create({ hsmprofileid: o.profile.a.id, account: w.c.account, domainid: w.d2 }),
    expect: BAD(`HSM profile '<a>' is owned by another account and cannot be used for this key's owner`),
  },
  {
    who: 'root', does: "createKMSKey for account C on domain 1's profile", params: () => create({ hsmprofileid: o.profile.d1.id, account: w.c.account, domainid: w.d2 }),
    expect: BAD(`HSM profile '<d1>' is domain-scoped and can only be used by accounts in its domain`),
  },
  { who: 'user A', does: 'createKMSKey on a disabled profile', params: () => create({ hsmprofileid: o.profile.off.id }), expect: BAD('HSM profile is not enabled: <off>') },
  { who: 'user A', does: 'createKMSKey with keybits=100', params: () => create({ hsmprofileid: o.profile.pub.id, keybits: 100 }), expect: BAD('Key bits must be 128, 192, or 256') },
  { who: 'user A', does: 'listKMSKeys on its key', params: () => ({ command: 'listKMSKeys', id: o.key.a }), expect: { status: 200, count: 1, keklabel: false } },
  { who: 'user B', does: "listKMSKeys on A's key", params: () => ({ command: 'listKMSKeys', listall: true, id: o.key.a }), expect: { status: 200, count: 0 } },
  { who: 'user C', does: "listKMSKeys on A's key", params: () => ({ command: 'listKMSKeys', listall: true, id: o.key.a }), expect: { status: 200, count: 0 } },
  { who: 'domain admin', does: "listKMSKeys on A's key", params: () => ({ command: 'listKMSKeys', listall: true, id: o.key.a }), expect: { status: 200, count: 1, keklabel: false } },
  { who: 'domain admin', does: "listKMSKeys on C's key", params: () => ({ command: 'listKMSKeys', listall: true, id: o.key.c }), expect: { status: 200, count: 0 } },
  { who: 'root', does: "listKMSKeys on C's key (keklabel shown)", params: () => ({ command: 'listKMSKeys', listall: true, id: o.key.c }), expect: { status: 200, count: 1, keklabel: true } },
  { who: 'user A', does: 'updateKMSKey on its key', params: () => ({ command: 'updateKMSKey', id: o.key.a, description: 'mine' }), expect: OK },
  { who: 'user B', does: "updateKMSKey on A's key", params: () => ({ command: 'updateKMSKey', id: o.key.a, description: 'theirs' }), expect: DENIED },
  { who: 'domain admin', does: "updateKMSKey on B's key", params: () => ({ command: 'updateKMSKey', id: o.key.b, description: 'admin' }), expect: OK },
  { who: 'domain admin', does: "updateKMSKey on C's key", params: () => ({ command: 'updateKMSKey', id: o.key.c, description: 'admin' }), expect: DENIED },
  { who: 'root', does: "updateKMSKey on C's key", params: () => ({ command: 'updateKMSKey', id: o.key.c, description: 'root' }), expect: OK },
  { who: 'user A', does: 'updateKMSKey on an unknown id', params: () => ({ command: 'updateKMSKey', id: '00000000-0000-4000-8000-000000000001' }), expect: BAD('KMS key not found: 00000000-0000-4000-8000-000000000001') },
  { who: 'user A', does: 'rotateKMSKey on its key', params: () => ({ command: 'rotateKMSKey', id: o.key.a }), expect: OK },
  { who: 'user B', does: "rotateKMSKey on A's key", params: () => ({ command: 'rotateKMSKey', id: o.key.a }), expect: DENIED },
  { who: 'domain admin', does: "rotateKMSKey on B's key", params: () => ({ command: 'rotateKMSKey', id: o.key.b }), expect: OK },
  { who: 'user C', does: "rotateKMSKey on B's key", params: () => ({ command: 'rotateKMSKey', id: o.key.b }), expect: DENIED },
  { who: 'root', does: "rotateKMSKey on C's key", params: () => ({ command: 'rotateKMSKey', id: o.key.c }), expect: OK },
  {
    who: 'root', does: "rotateKMSKey on A's key onto C's profile", params: () => ({ command: 'rotateKMSKey', id: o.key.a, hsmprofileid: o.profile.c.id }),
    expect: BAD_IN_JOB("HSM profile '<c>' is owned by another account and cannot be used for this key's owner"),
  },
  { who: 'user A', does: "deleteKMSKey on a key of B", params: async () => ({ command: 'deleteKMSKey', id: await key('user B', o.profile.pub.id) }), expect: DENIED },
  { who: 'user A', does: 'deleteKMSKey on its own key', params: async () => ({ command: 'deleteKMSKey', id: await key('user A', o.profile.pub.id) }), expect: OK },
  { who: 'domain admin', does: 'deleteKMSKey on a key of B', params: async () => ({ command: 'deleteKMSKey', id: await key('user B', o.profile.pub.id) }), expect: OK },
  { who: 'domain admin', does: 'deleteKMSKey on a key of C', params: async () => ({ command: 'deleteKMSKey', id: await key('user C', o.profile.pub.id) }), expect: DENIED },
  { who: 'root', does: 'deleteKMSKey on a key of C', params: async () => ({ command: 'deleteKMSKey', id: await key('user C', o.profile.pub.id) }), expect: OK },
];

/** `<a>`-style placeholders in expected texts name the profiles made in beforeAll. */
const named = (t: string | RegExp | undefined): string | RegExp | undefined =>
  typeof t === 'string' ? t.replace(/<(pub|a|d1|c|off)>/g, (_, k: keyof typeof o.profile) => o.profile[k].name) : t;

describe.each([
  ['HSM profiles', profileRows],
  ['KMS keys', keyRows],
])('%s: the permission matrix', (_title, rows) => {
  it.each(rows.map((r) => [`${r.who} → ${r.does} → ${r.expect.status}${r.expect.count !== undefined ? ` (count ${r.expect.count})` : ''}`, r] as const))('%s', async (_name, row) => {
    const res = await ts.client.signed(actor(row.who).keys, await row.params());
    const e = row.expect;
    expect({ status: res.status, raw: res.status === e.status ? '' : res.raw }).toEqual({ status: e.status, raw: '' });
    if (e.errorcode !== undefined) expect(res.body.errorcode).toBe(e.errorcode);
    if (e.cserrorcode !== undefined) expect(res.body.cserrorcode).toBe(e.cserrorcode);
    const text = named(e.errortext);
    if (typeof text === 'string') expect(res.body.errortext).toBe(text);
    else if (text) expect(res.body.errortext).toMatch(text);
    if (e.count !== undefined) expect(res.body.count ?? 0).toBe(e.count);
    const item = res.body.hsmprofile?.[0] ?? res.body.kmskey?.[0];
    if (e.details !== undefined) expect(item.details !== undefined).toBe(e.details);
    if (e.keklabel !== undefined) expect(item.keklabel !== undefined).toBe(e.keklabel);
    if (res.status === 200 && res.body.jobid) {
      const job = await finishedJob(ts, actor(row.who).keys, res.body.jobid);
      if (e.job) expect(job).toMatchObject({ jobstatus: 2, jobresultcode: e.job.errorcode, jobresult: { errorcode: e.job.errorcode, errortext: named(e.job.errortext) } });
      else expect(job.jobstatus).toBe(1);
    }
  });
});
