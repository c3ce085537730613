import { randomUUID } from 'node:crypto';
import type { Db } from '../db/knex';
import type { Env } from '../config/env';
import type { MasterKey } from '../config/master-key';
import { Directory } from '../identity/directory';
import type { Logger } from '../core/logger';
import { withDbLock } from '../db/db-lock';
import { ensureDefaultHsmProfile } from './hsm-profiles';
import { ACCOUNT_TYPES } from '../identity/caller';
import { generateKey, hashPassword } from '../identity/password';

/**
 * First-start setup, idempotent: ROOT domain, `admin` root-admin account and user `admin`, and the
 * admin's API keys (from the environment, or generated once and returned so main can print them).
 */
export async function bootstrapIdentity(db: Db, directory: Directory, env: Env): Promise<{ generatedKeys?: { apiKey: string; secretKey: string } }> {
  let root = await directory.domainByPath('/');
  if (!root) {
    const row = { uuid: randomUUID(), name: 'ROOT', path: '/', parent_id: null, level: 0, network_domain: null, created: Date.now() };
    const [id] = await db('domain').insert(row);
    root = { ...row, id: Number(id) };
  }
  let admin = await directory.findUserForLogin('admin', root.id);
  if (!admin) {
    let account = await directory.accountByName(root.id, 'admin');
    if (!account) {
      const row = { uuid: randomUUID(), account_name: 'admin', type: ACCOUNT_TYPES.Admin, domain_id: root.id, state: 'enabled', created: Date.now() };
      const [id] = await db('account').insert(row);
      account = { ...row, id: Number(id) };
    }
    const user = {
      uuid: randomUUID(), username: 'admin', password: await hashPassword(env.adminPassword), account_id: account.id,
      firstname: 'Admin', lastname: 'User', email: null, state: 'enabled', api_key: null, secret_key: null, timezone: null, created: Date.now(), login_attempts: 0,
    };
    const [id] = await db('user').insert(user);
    admin = { ...user, id: Number(id) };
  }
  if (env.adminApiKey && env.adminSecretKey) {
    const current = directory.getUserKeys(admin);
    if (current?.apiKey !== env.adminApiKey || current.secretKey !== env.adminSecretKey) {
      await directory.setUserKeys(admin, { apiKey: env.adminApiKey, secretKey: env.adminSecretKey });
    }
    return {};
  }
  if (!admin.api_key) {
    const keys = { apiKey: generateKey(), secretKey: generateKey() };
    await directory.setUserKeys(admin, keys);
    return { generatedKeys: keys };
  }
  return {};
}

/**
 * Everything a first start sets up, under one deployment-wide lock so that processes started at
 * the same instant on an empty database take turns (waiting at most KMS_STARTUP_LOCK_WAIT_SEC):
 * the master key (`openKey`: its first version, legacy values upgraded), the ROOT domain, admin account and user, the admin's API
 * keys and the default `database` HSM profile. Each step is idempotent.
 */
export async function bootstrapDeployment(
  db: Db, env: Env, opts: { logger?: Logger; openKey: () => Promise<MasterKey> },
): Promise<{ generatedKeys?: { apiKey: string; secretKey: string } }> {
  return withDbLock(db, 'kms.bootstrap', { waitSec: env.startupLockWaitSec, logger: opts.logger, what: 'bootstrap' }, async () => {
    const directory = new Directory(db, await opts.openKey());
    const out = await bootstrapIdentity(db, directory, env);
    await ensureDefaultHsmProfile(db, directory);
    return out;
  });
}
