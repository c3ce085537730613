/**
 * A server of our own for the benchmarks: temp SQLite (or DATABASE_URL), in-process jobs, the
 * HTTP API on a random port, a zone, an account `bench` and one KMS key on the chosen backend.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, type App } from '../src/app';
import { createServer } from '../src/api/server';
import { registry } from '../src/commands/registry';
import { readEnv } from '../src/config/env';
import { silentLogger } from '../src/core/logger';
import { ApiClient } from '../spec/support/client';
import { detailParams } from '../spec/support/actors';
import { createSoftHsmToken, type SoftHsmToken } from '../spec/support/softhsm';

export const ADMIN = { apiKey: 'bench-api-key', secretKey: 'bench-secret-key' };

export interface BenchWorld {
  app: App;
  client: ApiClient;
  keyUuid: string;
  keyId: number;
  zoneId: number;
  accountId: number;
  domainId: number;
  close(): Promise<void>;
}

export async function call(client: ApiClient, params: Record<string, string | number | boolean>): Promise<Record<string, any>> {
  const res = await client.signed(ADMIN, params);
  if (res.status !== 200) throw new Error(`${String(params.command)}: ${res.raw}`);
  return res.body;
}

/** Polls queryAsyncJobResult until the job ends; throws when it failed. */
export async function waitJob(client: ApiClient, jobId: string): Promise<Record<string, any>> {
  for (;;) {
    const r = await call(client, { command: 'queryAsyncJobResult', jobid: jobId });
    if (r.jobstatus === 1) return r;
    if (r.jobstatus === 2) throw new Error(`job failed: ${JSON.stringify(r.jobresult)}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

const withDatabase = (url: string, name: string): string => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};

export async function startBenchWorld(backend: 'database' | 'pkcs11'): Promise<BenchWorld> {
  const token: SoftHsmToken | undefined = backend === 'pkcs11' ? await createSoftHsmToken() : undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'kms-bench-'));
  // A database of its own per run (created on open, dropped on close), like the temp SQLite file.
  const databaseUrl = process.env.DATABASE_URL ? withDatabase(process.env.DATABASE_URL, `kms_bench_${randomUUID().slice(0, 8)}`) : undefined;
  const env = readEnv({
    KMS_DATA_DIR: dataDir, KMS_MASTER_KEY: randomBytes(32).toString('base64'),
    KMS_ADMIN_API_KEY: ADMIN.apiKey, KMS_ADMIN_SECRET_KEY: ADMIN.secretKey,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  });
  const { app } = await createApp(env, { logger: silentLogger });
  await app.jobs.start();
  const http: Server = await new Promise((resolve) => { const s = createServer(app, registry).listen(0, '127.0.0.1', () => resolve(s)); });
  const client = new ApiClient(`http://127.0.0.1:${(http.address() as AddressInfo).port}`);
  await call(client, { command: 'updateConfiguration', name: 'kms.rewrap.interval.ms', value: '0' });
  const zone = (await call(client, { command: 'createZone', name: `bench-${randomUUID().slice(0, 8)}` })).zone;
  let profileId: string;
  if (token) {
    profileId = (await call(client, { command: 'createHSMProfile', name: 'softhsm', protocol: 'pkcs11', ispublic: 'true', ...detailParams(token.details({ max_sessions: '16' })) })).hsmprofile.id;
  } else {
    profileId = (await call(client, { command: 'listHSMProfiles', name: 'default', listall: true })).hsmprofile[0].id;
    await call(client, { command: 'updateHSMProfile', id: profileId, enabled: true });
  }
  const key = (await call(client, { command: 'createKMSKey', name: `bench-${randomUUID().slice(0, 8)}`, zoneid: zone.id, hsmprofileid: profileId })).kmskey;
  const row = await app.db('kms_keys').where({ uuid: key.id }).first();
  return {
    app, client, keyUuid: key.id, keyId: row.id, zoneId: row.zone_id, accountId: row.account_id, domainId: row.domain_id,
    async close() {
      await new Promise((r) => http.close(r));
      if (databaseUrl) await app.db.raw('DROP DATABASE ??', [new URL(databaseUrl).pathname.slice(1)]);
      await app.close();
      await token?.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Samples RSS every 20 ms; `peak()` is the highest seen since start. */
export function memorySampler(): { peak(): number; stop(): void } {
  let peak = process.memoryUsage().rss;
  const t = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
  return { peak: () => Math.max(peak, process.memoryUsage().rss), stop: () => clearInterval(t) };
}

export const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
export const rate = (n: number, ms: number): number => Math.round((n * 1000) / ms);
