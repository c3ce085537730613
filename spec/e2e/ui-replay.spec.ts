/**
 * Replays, request for request, what the CloudStack 4.23 web UI (upstream Vue 3, with the newest
 * ui/src/config/section/kms.js) sends while an admin does the KMS work, and asserts every field each
 * screen reads. The order and parameters follow the UI's public code:
 *   - ui/src/views/auth/Login.vue and ui/src/store/modules/user.js (Login, GetInfo),
 *   - ui/src/config/section/kms.js (HSM profile and KMS key pages and actions),
 *   - ui/src/config/section/offering.js + views/offering/AddDiskOffering.vue + components/offering/DiskOfferingForm.vue,
 *   - ui/src/config/section/storage.js + views/storage/CreateVolume.vue (Volumes page, create form),
 *   - ui/src/config/section/domain.js + components/view/TreeView.vue (Domains page),
 *   - components/header/ProjectMenu.vue + views/project/CreateProject.vue (project selector and form);
 *     with a project chosen, every request carries its projectid; kms.js/storage.js show `project`,
 *   - views/iam/AddAccount.vue (Add Account with a role from listRoles) and section/account.js,
 *   - section/infra.js + infra/zones.js + views/infra/InfraSummary.vue (Infrastructure, Zones),
 *   - section/offering.js (Compute Offerings beside Disk Offerings), section/config.js and
 *     components/view/SettingsTab.vue (Global Settings; a domain's Settings tab),
 *   - listResourceIcon, which every detail page asks for its icon.
 * GETs for list/query commands, form POSTs for the rest, always to /client/api/ with the
 * sessionkey parameter and cookies, as ui/src/api/index.js does.
 */
import { createSoftHsmTokens, type SoftHsmToken } from '../support/softhsm';
import { startTestServer, ADMIN_KEYS, type TestServer } from '../support/server';
import { adminCall } from '../support/actors';
import type { ApiAnswer, Session } from '../support/client';

let token: SoftHsmToken;
let s: TestServer;
let ui: Session;
let apis: Record<string, { params: Array<{ name: string; type: string; description: string }>; isasync: boolean; description: string; response: Array<{ name: string }> }>;

const DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$/;

/** What the generic action form needs: every argument the section names is a declared parameter with a description. */
function expectFormArgs(api: string, args: readonly string[]): void {
  expect(apis[api]).toBeDefined();
  const declared = new Map(apis[api]!.params.map((p) => [p.name, p]));
  for (const arg of args) {
    expect({ api, arg, declared: declared.has(arg) }).toEqual({ api, arg, declared: true });
    expect(typeof declared.get(arg)!.description).toBe('string');
  }
}

/** Every column/detail a page reads is present (a field the server has no value for may be absent only if listed in `optional`). */
function expectFields(item: Record<string, unknown>, fields: readonly string[], optional: readonly string[] = []): void {
  for (const f of fields) {
    if (optional.includes(f)) continue;
    expect({ field: f, present: item[f] !== undefined && item[f] !== null }).toEqual({ field: f, present: true });
  }
}

/** The UI polls queryAsyncJobResult (GET, jobId) until jobstatus leaves 0. */
async function pollJob(jobid: string): Promise<Record<string, any>> {
  for (let i = 0; i < 300; i++) {
    const res = await ui.get({ command: 'queryAsyncJobResult', jobId: jobid });
    expect(res.status).toBe(200);
    if (res.body.jobstatus !== 0) return res.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${jobid} did not finish`);
}

const ok = (res: ApiAnswer): Record<string, any> => {
  if (res.status !== 200) throw new Error(`${res.wrapper} ${res.status}: ${res.raw}`);
  return res.body;
};

beforeAll(async () => {
  [token] = await createSoftHsmTokens(1);
  s = await startTestServer();
  // An operator's cloud has a zone before anyone opens the UI.
  await adminCall(s.client, { command: 'createZone', name: 'zone1' });
});

afterAll(async () => {
  await s?.close();
  await token?.cleanup();
});

describe('the CloudStack UI, request for request', () => {
  let zoneId: string;
  let profileId: string;
  let keyId: string;
  let offeringId: string;
  let kmsVolumeId: string;
  let legacyVolumeId: string;

  it('boots and shows the login page', async () => {
    // main.js → guiTheme.js: unauthenticated theme lookup.
    expect(await s.client.raw('command=listGuiThemes&listonlydefaulttheme=true&response=json')).toMatchObject({ status: 200, body: {} });
    // Login.vue fetchData: CloudStack without SAML has no listIdps; the 401 is the one request.js lets through.
    const idps = await s.client.raw('command=listIdps&response=json');
    expect(idps.status).toBe(401);
    expect((await s.client.raw('command=listOauthProvider&response=json')).body).toEqual({});
    const fp = await fetch(`${s.url}/client/api/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'command=forgotPassword&response=json' });
    expect(((await fp.json()) as any).forgotpasswordresponse.enabled).toBe(false);
  });

  it('logs admin in (no time zone) with every field the store reads', async () => {
    // Login action: a fire-and-forget logout, then the login form (domain "/" when left empty).
    const pre = await fetch(`${s.url}/client/api/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'command=logout&response=json' });
    expect(pre.status).toBe(431);
    ui = await s.client.login('admin', 'password', '/');
    const r = ui.login;
    // setLoginCookies + processLoginResponse.
    expect(r).toMatchObject({ account: 'admin', type: '1', username: 'admin', firstname: expect.any(String), lastname: expect.any(String), is2faenabled: 'false', issuerfor2fa: 'CloudStack' });
    expect(r.userid).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.domainid).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.sessionkey).toMatch(/^[A-Za-z0-9_-]{27}$/);
    expect(typeof r.timeout).toBe('number');
    // SET_TIMEZONE_OFFSET stores it and GetInfo JSON-parses it back: it must be a number string even without a time zone.
    expect(r.timezone).toBeUndefined();
    expect(JSON.parse(r.timezoneoffset)).toBe(0);
    expect(r.providerfor2fa).toBeUndefined();
  });

  it('discovers the features after login (GetInfo)', async () => {
    zoneId = ok(await ui.get({ command: 'listZones' })).zone[0].id;
    const listed = ok(await ui.get({ command: 'listApis' }));
    apis = Object.fromEntries(listed.api.map((a: any) => [a.name, a]));
    for (const a of listed.api) expect(typeof a.isasync).toBe('boolean');
    // Their errors are ignored by the UI; any answer will do.
    await ui.get({ command: 'listNetworks', restartrequired: true, forvpc: false });
    await ui.get({ command: 'listVPCs', restartrequired: true });
    const me = ok(await ui.get({ command: 'listUsers', id: ui.login.userid })).user[0];
    expectFields(me, ['id', 'firstname', 'lastname', 'account', 'accountid', 'domainid', 'domain', 'roletype', 'rolename']);
    expect(me).toMatchObject({ roletype: 'Admin', rolename: 'Root Admin' });
    await ui.get({ command: 'listNetworkServiceProviders', name: 'SecurityGroupProvider', state: 'Enabled' });
    const caps = ok(await ui.get({ command: 'listCapabilities' })).capability;
    expect(caps).toMatchObject({ defaultuipagesize: 20, securitygroupsenabled: false, hashsmprofiles: true, cloudstackversion: expect.stringMatching(/^4\.23/) });
    expect(ok(await ui.get({ command: 'listLdapConfigurations' }))).toEqual({});
    expect(ok(await ui.get({ command: 'cloudianIsEnabled' })).cloudianisenabled.enabled).toBe(false);
    // Routes exist only when every API a section names is listed (store/modules/permission.js).
    for (const needed of ['listKMSKeys', 'listHSMProfiles', 'listVolumesMetrics', 'listDiskOfferings', 'listDomains', 'listDomainChildren', 'listEvents', 'listConfigurations',
      'listRoles', 'listZonesMetrics', 'listInfrastructure', 'listServiceOfferings', 'listResourceIcon']) {
      expect({ needed, listed: needed in apis }).toEqual({ needed, listed: true });
    }
    // Without SAML, listIdps is not an API: the Add User form skips it.
    expect('listIdps' in apis).toBe(false);
  });

  it('shows the Domains page (#/domain) as a tree', async () => {
    // DomainView.fetchData: the caller's domain is the tree's root.
    const root = ok(await ui.get({ command: 'listDomains', listall: true, id: ui.login.domainid, showicon: true })).domain[0];
    expectFields(root, ['id', 'name', 'path', 'level', 'state', 'created', 'haschild']);
    expect(root.id).toBe(ui.login.domainid);
    const children = ok(await ui.get({ command: 'listDomainChildren', listAll: true, id: root.id, showicon: true }));
    expect(children).toEqual({});
    const detail = ok(await ui.get({ command: 'listDomains', id: root.id, listAll: true, showicon: true, page: 1, pageSize: 1 })).domain[0];
    expect(detail).toMatchObject({ id: root.id, name: 'ROOT', haschild: false });
  });

  it('creates an HSM profile from the 4.23 form (system, no protocol)', async () => {
    // kms.js hsmprofile: the create form's arguments must all be declared, or the form opens blank.
    expectFormArgs('createHSMProfile', ['name', 'zoneid', 'vendorname', 'domainid', 'account', 'projectid', 'details', 'system']);
    expectFormArgs('createHSMProfile', ['ispublic']); // older 4.23 builds
    expectFormArgs('updateHSMProfile', ['id', 'name', 'enabled']);
    expectFormArgs('deleteHSMProfile', ['id']);
    expectFormArgs('listHSMProfiles', ['zoneid', 'account', 'domainid', 'projectid']); // search filters
    const d = token.details();
    const created = await ui.post({
      command: 'createHSMProfile', name: 'softhsm', zoneid: zoneId, vendorname: 'SoftHSM', system: true,
      'details[0].pin': d.pin!, 'details[0].library': d.library!, 'details[0].token_label': d.token_label!,
    });
    const p = ok(created).hsmprofile;
    expect(p).toMatchObject({ name: 'softhsm', protocol: 'pkcs11', ispublic: true, enabled: true, vendor: 'SoftHSM', zoneid: zoneId });
    expect(JSON.stringify(p)).not.toContain(d.pin!);
    profileId = p.id;
    // The list page: columns name, enabled, account, domain; details id, name, enabled, account, domain, created, details.
    const list = ok(await ui.get({ command: 'listHSMProfiles', listall: true, page: 1, pagesize: 20 }));
    const row = list.hsmprofile.find((x: any) => x.id === profileId);
    expectFields(row, ['name', 'enabled', 'account', 'domain', 'id', 'created', 'details']);
    expect(row.details.pin).toBe('*****');
  });

  it('creates a KMS key and shows it with every column and detail of kms.js', async () => {
    expectFormArgs('createKMSKey', ['zoneid', 'domainid', 'account', 'projectid', 'name', 'description', 'hsmprofileid', 'keybits']);
    expectFormArgs('updateKMSKey', ['id', 'name', 'description', 'enabled']);
    expectFormArgs('rotateKMSKey', ['id', 'keybits', 'hsmprofileid']);
    expectFormArgs('migrateVolumesToKMS', ['zoneid', 'kmskeyid', 'volumeids', 'account', 'domainid']);
    expectFormArgs('deleteKMSKey', ['id']);
    expectFormArgs('listKMSKeys', ['zoneid', 'hsmprofileid', 'account', 'domainid', 'projectid', 'purpose']);
    const key = ok(await ui.post({ command: 'createKMSKey', zoneid: zoneId, name: 'disks', description: 'volume keys', hsmprofileid: profileId, keybits: 256 })).kmskey;
    keyId = key.id;
    const list = ok(await ui.get({ command: 'listKMSKeys', listall: true, page: 1, pagesize: 20 }));
    expect(list.count).toBe(1);
    const row = list.kmskey[0];
    // columns: name, enabled, purpose, hsmprofile, account, domain; details: id, name, description, version, enabled, account, domain, created, hsmprofile.
    expectFields(row, ['name', 'enabled', 'purpose', 'hsmprofile', 'account', 'domain', 'id', 'description', 'version', 'created']);
    expect(row).toMatchObject({ name: 'disks', purpose: 'volume', hsmprofile: 'softhsm', version: 1, enabled: true, account: 'admin', domain: 'ROOT' });
    expect(row.created).toMatch(DATE);
  });

  it('creates an encrypted disk offering from the Add Disk Offering form', async () => {
    // DiskOfferingForm reads these parameters' descriptions as soon as it opens.
    expectFormArgs('createDiskOffering', ['name', 'displaytext', 'storagetype', 'provisioningtype', 'encrypt', 'disksizestrictness', 'customized', 'disksize', 'cachemode', 'tags', 'domainid', 'zoneid']);
    expectFormArgs('updateDiskOffering', ['name', 'displaytext', 'tags', 'state']);
    expectFormArgs('deleteDiskOffering', ['id']);
    ok(await ui.get({ command: 'listDomains', listAll: true, showicon: true, details: 'min' }));
    ok(await ui.get({ command: 'listZones', showicon: true }));
    expect(ok(await ui.get({ command: 'listStorageTags' }))).toEqual({});
    const created = ok(await ui.post({
      command: 'createDiskOffering', name: 'Encrypted 20', displaytext: 'Encrypted 20 GB', storageType: 'shared', cacheMode: 'none',
      provisioningType: 'thin', customized: false, disksizestrictness: false, encrypt: true, disksize: 20,
    }));
    offeringId = created.diskoffering.id;
    // The Disk Offerings page: columns name, displaytext, state, disksize, domain, zone; details include encrypt.
    const list = ok(await ui.get({ command: 'listDiskOfferings', isrecursive: true, listall: true, page: 1, pagesize: 20 }));
    const row = list.diskoffering.find((o: any) => o.id === offeringId);
    expectFields(row, ['name', 'displaytext', 'state', 'disksize', 'id', 'provisioningtype', 'storagetype', 'iscustomized', 'disksizestrictness', 'iscustomizediops', 'created', 'encrypt']);
    expect(row).toMatchObject({ state: 'Active', disksize: 20, encrypt: true, iscustomized: false });
  });

  it('creates a KMS volume from the Create Volume form', async () => {
    // CreateVolume.vue reads these parameters' descriptions when it renders.
    expectFormArgs('createVolume', ['name', 'zoneid', 'diskofferingid', 'size', 'kmskeyid']);
    // Ownership selection for admins, then zones, then the zone's offerings for the chosen owner.
    ok(await ui.get({ command: 'listDomains', listAll: true, details: 'min' }));
    ok(await ui.get({ command: 'listAccounts', domainid: ui.login.domainid, listAll: true }));
    const zones = ok(await ui.get({ command: 'listZones', showicon: true })).zone;
    expect(zones[0].id).toBe(zoneId);
    const offerings = ok(await ui.get({ command: 'listDiskOfferings', zoneid: zoneId, listall: true, domainid: ui.login.domainid, account: 'admin' })).diskoffering;
    expect(offerings[0]).toMatchObject({ id: expect.any(String), iscustomized: expect.any(Boolean) });
    const chosen = offerings.find((o: any) => o.id === offeringId);
    expect(chosen.encrypt).toBe(true); // diskOfferingSupportsEncryption: the KMS key field appears
    const keys = ok(await ui.get({ command: 'listKMSKeys', zoneid: zoneId, account: 'admin', domainid: ui.login.domainid, purpose: 'volume' })).kmskey;
    expect(keys.map((k: any) => [k.id, k.name])).toEqual([[keyId, 'disks']]);
    const submitted = ok(await ui.post({ command: 'createVolume', name: 'db-disk', zoneid: zoneId, diskofferingid: offeringId, kmskeyid: keyId, domainid: ui.login.domainid, account: 'admin' }));
    const job = await pollJob(submitted.jobid);
    expect(job).toMatchObject({ jobstatus: 1, jobprocstatus: 0 });
    kmsVolumeId = job.jobresult.volume.id;
    expect(job.jobresult.volume).toMatchObject({ name: 'db-disk', kmskeyid: keyId, diskofferingid: offeringId, encryptformat: 'LUKS' });
    // A volume the legacy way (same encrypted offering, no key), to migrate later.
    const legacy = ok(await ui.post({ command: 'createVolume', name: 'old-disk', zoneid: zoneId, diskofferingid: offeringId, domainid: ui.login.domainid, account: 'admin' }));
    legacyVolumeId = (await pollJob(legacy.jobid)).jobresult.volume.id;
  });

  it('lists volumes with metrics on the Volumes page and its detail view', async () => {
    const list = ok(await ui.get({ command: 'listVolumesMetrics', listall: true, page: 1, pagesize: 20 }));
    expect(list.count).toBe(2);
    const row = list.volume.find((v: any) => v.id === kmsVolumeId);
    // columns: name, state, size, type, vmname, vmstate, storage, account, zonename (no VM, no primary storage here).
    expectFields(row, ['name', 'state', 'size', 'type', 'vmname', 'vmstate', 'storage', 'account', 'zonename'], ['vmname', 'vmstate', 'storage']);
    // details: name, id, type, storagetype, diskofferingdisplaytext, sizegb, provisioningtype (the rest are hypervisor metrics).
    expectFields(row, ['id', 'storagetype', 'diskofferingdisplaytext', 'sizegb', 'provisioningtype', 'deleteprotection', 'diskofferingid', 'diskofferingname', 'encryptformat', 'kmskeyid']);
    expect(row).toMatchObject({ size: 20 * 1024 ** 3, sizegb: '20.00 GiB', type: 'DATADISK', state: 'Allocated', diskofferingname: 'Encrypted 20', kmskey: 'disks', kmskeyversion: 1 });
    const detail = ok(await ui.get({ command: 'listVolumesMetrics', id: kmsVolumeId, listall: true }));
    expect(detail.volume[0].id).toBe(kmsVolumeId);
  });

  it('rotates the key from its detail page', async () => {
    const submitted = ok(await ui.post({ command: 'rotateKMSKey', id: keyId }));
    const job = await pollJob(submitted.jobid);
    expect(job).toMatchObject({ jobstatus: 1, jobresultcode: 0, jobprocstatus: 0 });
    const key = ok(await ui.get({ command: 'listKMSKeys', id: keyId, listall: true })).kmskey[0];
    expect(key.version).toBe(2);
  });

  it('migrates the legacy volume to the key, then lists the key\'s volumes (the related tab)', async () => {
    const submitted = ok(await ui.post({ command: 'migrateVolumesToKMS', kmskeyid: keyId, zoneid: zoneId, volumeids: legacyVolumeId }));
    const job = await pollJob(submitted.jobid);
    expect(job).toMatchObject({ jobstatus: 1, jobprocstatus: 0 });
    expect(job.jobresult.kmsmigration).toEqual({ kmskeyid: keyId, migrated: 1, skipped: 0, failed: 0, failedvolumeids: [] });
    const related = ok(await ui.get({ command: 'listVolumesMetrics', kmskeyid: keyId, listall: true }));
    expect(related.volume.map((v: any) => v.name).sort()).toEqual(['db-disk', 'old-disk']);
    // The events tab of the key.
    const events = ok(await ui.get({ command: 'listEvents', resourceid: keyId, resourcetype: 'KmsKey', listall: true }));
    expect(events.event.map((e: any) => e.type)).toEqual(expect.arrayContaining(['KMS.KEY.CREATE', 'KMS.KEY.ROTATE', 'VOLUME.MIGRATE.TO.KMS']));
  });

  it('works in a project: the selector, the Create Project form, a project-owned key and volume', async () => {
    // ProjectMenu at login: every project the caller may see, one page of 500 (none yet).
    expect(ok(await ui.get({ command: 'listProjects', listAll: true, details: 'min', page: 1, pageSize: 500 }))).toEqual({});
    const submitted = ok(await ui.post({ command: 'createProject', name: 'kms-team', displaytext: 'KMS team' }));
    const job = await pollJob(submitted.jobid);
    expect(job).toMatchObject({ jobstatus: 1, jobresultcode: 0 });
    const projectId = job.jobresult.project.id;
    const projects = ok(await ui.get({ command: 'listProjects', listAll: true, details: 'min', page: 1, pageSize: 500 })).project;
    // The selector shows displaytext (or name); the project dashboard reads owner, domain, state.
    expect(projects).toHaveLength(1);
    expectFields(projects[0], ['id', 'name', 'displaytext', 'domain', 'domainid', 'state', 'owner', 'created']);
    expect(projects[0]).toMatchObject({ id: projectId, displaytext: 'KMS team', state: 'Active', owner: [{ account: 'admin' }] });
    // With the project chosen, the KMS pages and the Create Volume form send its projectid.
    const key = ok(await ui.post({ command: 'createKMSKey', zoneid: zoneId, name: 'team-disks', hsmprofileid: profileId, keybits: 256, projectid: projectId })).kmskey;
    const keys = ok(await ui.get({ command: 'listKMSKeys', listall: true, page: 1, pagesize: 20, projectid: projectId })).kmskey;
    expect(keys.map((k: any) => k.id)).toEqual([key.id]);
    // kms.js columns/details with a project: name, enabled, hsmprofile, project, domain (no internal PrjAcct-… account).
    expectFields(keys[0], ['name', 'enabled', 'hsmprofile', 'project', 'projectid', 'domain', 'id', 'version', 'created']);
    expect(keys[0]).toMatchObject({ project: 'kms-team', projectid: projectId });
    expect(keys[0].account).toBeUndefined();
    const volume = ok(await ui.post({ command: 'createVolume', name: 'team-disk', zoneid: zoneId, diskofferingid: offeringId, kmskeyid: key.id, projectid: projectId }));
    expect((await pollJob(volume.jobid)).jobresult.volume).toMatchObject({ name: 'team-disk', kmskeyid: key.id });
    const volumes = ok(await ui.get({ command: 'listVolumesMetrics', listall: true, page: 1, pagesize: 20, projectid: projectId })).volume;
    expect(volumes.map((v: any) => v.name)).toEqual(['team-disk']);
    expect(volumes[0]).toMatchObject({ project: 'kms-team', projectid: projectId, kmskey: 'team-disks' });
    expect(volumes[0].account).toBeUndefined();
    // The key's Events tab in the project view names the project too.
    const events = ok(await ui.get({ command: 'listEvents', resourceid: key.id, resourcetype: 'KmsKey', listall: true, projectid: projectId })).event;
    expect(events.map((e: any) => e.type)).toEqual(expect.arrayContaining(['KMS.KEY.CREATE', 'KMS.KEY.WRAP']));
    for (const e of events) expect(e).toMatchObject({ project: 'kms-team', projectid: projectId });
    // The detail page asks for the resource's icon: none here, and no error.
    expect(ok(await ui.get({ command: 'listResourceIcon', resourceids: key.id, resourcetype: 'KmsKey' }))).toEqual({});
    // Back in the Default View the project's objects are not listed.
    const plain = ok(await ui.get({ command: 'listVolumesMetrics', listall: true, page: 1, pagesize: 20 })).volume;
    expect(plain.map((v: any) => v.name).sort()).toEqual(['db-disk', 'old-disk']);
  });

  it('adds an account with a role from the Add Account form, and lists it on the Accounts page', async () => {
    // AddAccount.vue reads each of these parameters' descriptions when it renders.
    expectFormArgs('createAccount', ['roleid', 'username', 'password', 'email', 'firstname', 'lastname', 'domainid', 'account', 'timezone', 'networkdomain']);
    expect('listRoles' in apis).toBe(true);
    ok(await ui.get({ command: 'listDomains', listAll: true, details: 'min' }));
    const roles = ok(await ui.get({ command: 'listRoles' })).role;
    // The select shows `name (type)` and picks the first role's id.
    for (const r of roles) expectFields(r, ['id', 'name', 'type']);
    expect(roles.map((r: any) => `${r.name} (${r.type})`)).toEqual(['Root Admin (Admin)', 'Resource Admin (ResourceAdmin)', 'Domain Admin (DomainAdmin)', 'User (User)']);
    const domainAdmin = roles.find((r: any) => r.type === 'DomainAdmin');
    const created = ok(await ui.post({
      command: 'createAccount', roleid: domainAdmin.id, username: 'dana', password: 'dana-pw-123', email: 'dana@example.com',
      firstname: 'Dana', lastname: 'Admin', domainid: ui.login.domainid, account: 'dana-admins', networkdomain: 'dana.example',
    })).account;
    expect(created).toMatchObject({ name: 'dana-admins', accounttype: 2, roleid: domainAdmin.id, rolename: 'Domain Admin', roletype: 'DomainAdmin' });
    expect(created.user.map((u: any) => u.username)).toEqual(['dana']);
    // account.js columns: name, state, rolename, roletype, domainpath.
    const row = ok(await ui.get({ command: 'listAccounts', listall: true, page: 1, pagesize: 20 })).account.find((a: any) => a.id === created.id);
    expectFields(row, ['name', 'state', 'rolename', 'roletype', 'domainpath', 'roleid']);
  });

  it('shows Infrastructure: the summary and the Zones page (listZonesMetrics)', async () => {
    for (const needed of ['listInfrastructure', 'listZonesMetrics']) expect({ needed, listed: needed in apis }).toEqual({ needed, listed: true });
    // InfraSummary.vue: one card per count.
    const infra = ok(await ui.get({ command: 'listInfrastructure' })).infrastructure;
    expectFields(infra, ['zones', 'pods', 'clusters', 'hosts', 'storagepools', 'imagestores', 'objectstores', 'systemvms', 'routers', 'ilbvms', 'cpusockets', 'managementservers', 'alerts']);
    expect(infra).toMatchObject({ zones: 1, hosts: 0, clusters: 0, systemvms: 0 });
    // zones.js: columns name, allocationstate, type, networktype, clusters; details name, id, allocationstate, type, networktype, localstorageenabled, securitygroupsenabled, dns*.
    const zones = ok(await ui.get({ command: 'listZonesMetrics', listall: true, page: 1, pagesize: 20 }));
    expect(zones.count).toBe(1);
    expectFields(zones.zone[0], ['name', 'allocationstate', 'type', 'networktype', 'clusters', 'id', 'localstorageenabled', 'securitygroupsenabled', 'dns1', 'dns2', 'internaldns1', 'internaldns2'], ['dns1', 'dns2', 'internaldns1', 'internaldns2']);
    expect(zones.zone[0]).toMatchObject({ id: zoneId, name: 'zone1', allocationstate: 'Enabled', type: 'Core', clusters: '0 / 0' });
    expect(zones.zone[0].cputotal).toBeUndefined(); // no hosts: no capacity figures
    expect(ok(await ui.get({ command: 'listResourceIcon', resourceids: zoneId, resourcetype: 'Zone' }))).toEqual({});
  });

  it('shows Service Offerings: Compute Offerings (none exist here) beside Disk Offerings', async () => {
    for (const needed of ['listServiceOfferings', 'listDiskOfferings']) expect({ needed, listed: needed in apis }).toEqual({ needed, listed: true });
    expect(apis.listServiceOfferings!.description).toMatch(/No compute offerings exist on this server/);
    expect(ok(await ui.get({ command: 'listServiceOfferings', isrecursive: true, listall: true, page: 1, pagesize: 20 }))).toEqual({});
    expect(ok(await ui.get({ command: 'listDiskOfferings', isrecursive: true, listall: true, page: 1, pagesize: 20 })).diskoffering.map((o: any) => o.id)).toContain(offeringId);
  });

  it('shows Global Settings; a domain-scoped update is refused and the global value stays', async () => {
    const global = async () => ok(await ui.get({ command: 'listConfigurations', name: 'kms.retry.count' })).configuration[0];
    const settings = ok(await ui.get({ command: 'listConfigurations', page: 1, pagesize: 20 })).configuration;
    for (const c of settings) expectFields(c, ['name', 'value', 'description', 'category', 'scope', 'type']);
    // The Global Settings page edits a value globally.
    expect(ok(await ui.post({ command: 'updateConfiguration', name: 'kms.retry.count', value: '4' })).configuration).toMatchObject({ value: '4', scope: 'global' });
    // The domain's Settings tab (SettingsTab.vue) lists the settings of domain scope: none here.
    expect(ok(await ui.get({ command: 'listConfigurations', domainid: ui.login.domainid, page: 1, pagesize: 20 }))).toEqual({});
    // What the operator sent: a value for the ROOT domain. CloudStack's 431; the global value is untouched.
    const scoped = await ui.post({ command: 'updateConfiguration', name: 'kms.retry.count', value: '9', domainid: ui.login.domainid });
    expect(scoped.status).toBe(431);
    expect(scoped.body.errortext).toMatch(/^Invalid scope id provided for the parameter kms\.retry\.count/);
    expect(await global()).toMatchObject({ value: '4', scope: 'global' });
    expect(ok(await ui.post({ command: 'resetConfiguration', name: 'kms.retry.count' })).configuration.value).toBe('3');
  });

  it('logs out', async () => {
    expect(ok(await ui.post({ command: 'logout' }))).toEqual({ description: 'success' });
    expect((await ui.get({ command: 'listKMSKeys' })).status).toBe(401);
    // The server stays usable for cmk.
    expect((await s.client.signed(ADMIN_KEYS, { command: 'listKMSKeys' })).status).toBe(200);
  });
});
