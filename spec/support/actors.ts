import type { ApiClient } from './client';
import { ADMIN_KEYS } from './server';

export interface Keys { apiKey: string; secretKey: string }

/** Signs as root admin and fails the test on any error answer. */
export async function adminCall(client: ApiClient, params: Record<string, string | number | boolean>): Promise<Record<string, any>> {
  const res = await client.signed(ADMIN_KEYS, params);
  if (res.status !== 200) throw new Error(`${String(params.command)} failed: ${res.status} ${res.raw}`);
  return res.body;
}

/** Creates an account (type 0 user, 2 domain admin) with one user and API keys; returns the keys and ids. */
export async function createActor(client: ApiClient, opts: { name: string; domainId?: string; accountType?: 0 | 2 }): Promise<{ keys: Keys; accountId: string; userId: string; account: string; domainId: string }> {
  const acct = await adminCall(client, {
    command: 'createAccount', username: opts.name, password: `pw-${opts.name}-123`, firstname: opts.name, lastname: 'Test',
    accounttype: opts.accountType ?? 0, ...(opts.domainId ? { domainid: opts.domainId } : {}),
  });
  const user = acct.account.user[0];
  const uk = (await adminCall(client, { command: 'registerUserKeys', id: user.id })).userkeys;
  return { keys: { apiKey: uk.apikey, secretKey: uk.secretkey }, accountId: acct.account.id, userId: user.id, account: acct.account.name, domainId: acct.account.domainid };
}

/** Polls queryAsyncJobResult every 100 ms (cmk polls every 2 s) until the job leaves status 0. */
export async function waitForJob(client: ApiClient, keys: Keys, jobId: string, timeoutMs = 30000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await client.signed(keys, { command: 'queryAsyncJobResult', jobid: jobId });
    if (res.status !== 200) throw new Error(`queryAsyncJobResult failed: ${res.raw}`);
    if (res.body.jobstatus !== 0) return res.body;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still running after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The seeded `default` database profile, enabled (CloudStack seeds it disabled); returns its id. */
export async function enableDefaultProfile(client: ApiClient): Promise<string> {
  const profile = (await adminCall(client, { command: 'listHSMProfiles', name: 'default', listall: true })).hsmprofile[0];
  await adminCall(client, { command: 'updateHSMProfile', id: profile.id, enabled: true });
  return profile.id;
}

/** `details` as CloudStack map parameters: details[0].library=…, details[1].pin=… */
export const detailParams = (details: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(details).map(([k, v], i) => [`details[${i}].${k}`, v]));

/** A public PKCS#11 profile on a SoftHSM2 token (root admin); returns its id. */
export async function createPkcs11Profile(client: ApiClient, details: Record<string, string>, name = 'softhsm'): Promise<string> {
  return (await adminCall(client, { command: 'createHSMProfile', name, protocol: 'pkcs11', ispublic: 'true', ...detailParams(details) })).hsmprofile.id;
}
