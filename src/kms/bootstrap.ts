import { randomUUID } from 'node:crypto';
import type { Repositories } from '../db/repositories';
import type { Env } from '../config/env';
import type { MasterKey } from '../config/master-key';
import type { Directory } from '../identity/directory';
import type { User } from '../db/repositories/users';
import type { Logger } from '../core/logger';
import { ACCOUNT_TYPES } from '../identity/caller';
import { generateKey, hashPassword } from '../identity/password';

/**
 * First-start setup, idempotent: ROOT domain, `admin` root-admin account and user `admin`, and the
 * admin's API keys (from the environment, or generated once and returned so main can print them).
 */
export async function bootstrapIdentity(
  repos: Pick<Repositories, 'bootstrap' | 'domains' | 'accounts' | 'users'>, directory: Directory, env: Env,
): Promise<{ generatedKeys?: { apiKey: string; secretKey: string } }> {
  const rootId = (await repos.domains.byPath('/'))?.id ?? (await repos.bootstrap.insertRootDomain({ uuid: randomUUID(), created: new Date() }));
  let admin: Pick<User, 'id' | 'uuid' | 'apiKey' | 'sealedSecretKey'> | undefined = await repos.users.forLogin('admin', rootId);
  if (!admin) {
    const accountId = (await repos.accounts.byName(rootId, 'admin'))?.id ?? (await repos.bootstrap.insertAccount({
      uuid: randomUUID(), name: 'admin', type: ACCOUNT_TYPES.Admin, domainId: rootId, state: 'enabled', created: new Date(),
    }));
    const uuid = randomUUID();
    const id = await repos.bootstrap.insertUser({
      uuid, username: 'admin', passwordHash: await hashPassword(env.adminPassword), accountId, firstname: 'Admin', lastname: 'User',
      state: 'enabled', created: new Date(),
    });
    admin = { id, uuid, apiKey: null, sealedSecretKey: null };
  }
  if (env.adminApiKey && env.adminSecretKey) {
    const current = directory.userKeys(admin);
    if (current?.apiKey !== env.adminApiKey || current.secretKey !== env.adminSecretKey) {
      await directory.storeUserKeys(admin, { apiKey: env.adminApiKey, secretKey: env.adminSecretKey });
    }
    return {};
  }
  if (!admin.apiKey) {
    const keys = { apiKey: generateKey(), secretKey: generateKey() };
    await directory.storeUserKeys(admin, keys);
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
  repos: Pick<Repositories, 'bootstrap' | 'domains' | 'accounts' | 'users'>, env: Env,
  opts: {
    logger?: Logger;
    openKey: () => Promise<MasterKey>;
    /** The identity directory over the opened master key (app.ts builds it). */
    directory: (key: MasterKey) => Directory;
    /** Makes the default `database` HSM profile once (ensureDefaultHsmProfile, src/kms/hsm-profiles.ts). */
    ensureDefaultProfile: (directory: Directory) => Promise<void>;
  },
): Promise<{ generatedKeys?: { apiKey: string; secretKey: string } }> {
  return repos.bootstrap.withLock('kms.bootstrap', { waitSec: env.startupLockWaitSec, logger: opts.logger, what: 'bootstrap' }, async () => {
    const directory = opts.directory(await opts.openKey());
    const out = await bootstrapIdentity(repos, directory, env);
    await opts.ensureDefaultProfile(directory);
    return out;
  });
}
