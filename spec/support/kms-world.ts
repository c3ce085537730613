import { randomBytes } from 'node:crypto';
import type { ApiAnswer, ApiClient, Params } from './client';
import { adminCall, createActor, type Keys } from './actors';
import { ADMIN_KEYS, type TestServer } from './server';

/** One caller of the permission world: API keys plus its account and domain. */
export interface Actor { keys: Keys; account: string; accountId: string; domainId: string; userId: string }

/**
 * A zone, two domains and four accounts: users A and B and a domain admin in domain 1, user C in
 * domain 2. Names are random, so several files can share one database.
 */
export interface KmsWorld {
  zoneId: string;
  zone2Id: string;
  d1: string;
  d2: string;
  root: Actor;
  a: Actor;
  b: Actor;
  da: Actor;
  c: Actor;
}

/** A random suffix for names, so test files can share a database. */
export const suffix = (): string => randomBytes(4).toString('hex');

/** Builds the KmsWorld through the API as root admin (accounts get API keys with registerUserKeys). */
export async function createKmsWorld(client: ApiClient): Promise<KmsWorld> {
  const s = suffix();
  const zoneId = (await adminCall(client, { command: 'createZone', name: `zone-${s}` })).zone.id;
  const zone2Id = (await adminCall(client, { command: 'createZone', name: `zone2-${s}` })).zone.id;
  const d1 = (await adminCall(client, { command: 'createDomain', name: `d1-${s}` })).domain.id;
  const d2 = (await adminCall(client, { command: 'createDomain', name: `d2-${s}` })).domain.id;
  const a = await createActor(client, { name: `usera-${s}`, domainId: d1 });
  const b = await createActor(client, { name: `userb-${s}`, domainId: d1 });
  const da = await createActor(client, { name: `dadmin-${s}`, domainId: d1, accountType: 2 });
  const c = await createActor(client, { name: `userc-${s}`, domainId: d2 });
  const rootAccount = (await adminCall(client, { command: 'listAccounts', name: 'admin' })).account[0];
  const root: Actor = { keys: ADMIN_KEYS, account: 'admin', accountId: rootAccount.id, domainId: rootAccount.domainid, userId: '' };
  return { zoneId, zone2Id, d1, d2, root, a, b, da, c };
}

/**
 * The finished job's body (jobstatus 1 or 2, jobresult): through queryAsyncJobResult, or by reading
 * the async_job row while that command is not registered.
 */
export async function finishedJob(ts: TestServer, keys: Keys, jobId: string, timeoutMs = 30_000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await ts.client.signed(keys, { command: 'queryAsyncJobResult', jobid: jobId });
    if (res.status === 200 && res.body.jobstatus !== 0) return res.body;
    if (res.status === 432) {
      const row = await ts.app.db('async_job').where({ uuid: jobId }).first();
      if (row && Number(row.status) !== 0) return { jobid: jobId, jobstatus: Number(row.status), jobresultcode: Number(row.result_code), jobresult: row.result ? JSON.parse(row.result) : undefined };
    } else if (res.status !== 200) {
      throw new Error(`queryAsyncJobResult failed: ${res.raw}`);
    }
    if (Date.now() > deadline) throw new Error(`job ${jobId} still running after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A signed call that must succeed; returns the body under the wrapper. */
export async function ok(client: ApiClient, keys: Keys, params: Params): Promise<Record<string, any>> {
  const res: ApiAnswer = await client.signed(keys, params);
  if (res.status !== 200) throw new Error(`${String(params.command)} failed: ${res.status} ${res.raw}`);
  return res.body;
}
