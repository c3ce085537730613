/**
 * While user admin still has CloudStack's default password, a start warns (src/ops/default-password.ts;
 * spec/ops/drain.spec.ts sees the line from `node dist/main.js`). `npm run admin -- set-admin-password`
 * sets it to KMS_ADMIN_PASSWORD; the default password is then refused, and the warning is gone.
 */
import { runAdmin } from '../../src/cli/admin';
import { readEnv } from '../../src/config/env';
import { adminHasDefaultPassword } from '../../src/ops/default-password';
import { startTestServer, type TestServer } from '../support/server';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); });
afterAll(async () => { await s?.close(); });

const envFor = (extra: Record<string, string>) => readEnv({
  KMS_DATA_DIR: s.testDb.dataDir, KMS_MASTER_KEY: s.masterKey, ...(s.testDb.databaseUrl ? { DATABASE_URL: s.testDb.databaseUrl } : {}), ...extra,
});

it('admin with the default password is found; set-admin-password replaces it with KMS_ADMIN_PASSWORD', async () => {
  expect(await adminHasDefaultPassword(s.app.repos)).toBe(true);
  await expect(runAdmin(['set-admin-password'], envFor({ KMS_ADMIN_PASSWORD: 'password' }), () => undefined)).rejects.toThrow(/Set KMS_ADMIN_PASSWORD to the new password of user admin \(not the default/);
  const old = await s.client.login('admin', 'password');
  expect((await old.get({ command: 'listZones' })).status).toBe(200);
  const out: string[] = [];
  await runAdmin(['set-admin-password'], envFor({ KMS_ADMIN_PASSWORD: 'a-much-better-one-42' }), (l) => out.push(l));
  expect(out).toEqual(['the password of user admin is now KMS_ADMIN_PASSWORD; its sessions are ended on every node; its API keys are unchanged (registerUserKeys replaces them)']);
  expect((await old.get({ command: 'listZones' })).status).toBe(401); // a session opened with the old password is gone
  expect(await adminHasDefaultPassword(s.app.repos)).toBe(false);
  expect((await s.client.login('admin', 'a-much-better-one-42').catch((e: unknown) => e)) instanceof Error).toBe(false);
  const refused = await fetch(`${s.url}/client/api`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ command: 'login', username: 'admin', password: 'password', response: 'json' }).toString(),
  });
  expect(refused.status).toBe(531);
});
