import type { Repositories } from '../db/repositories';
import { verifyPassword } from '../identity/password';

/** CloudStack's default password of `admin`, which KMS_ADMIN_PASSWORD replaces at the first start. */
const DEFAULT_ADMIN_PASSWORD = 'password';

/** Whether user `admin` of the ROOT domain still logs in with the default password (one hash check). */
export async function adminHasDefaultPassword(repos: Pick<Repositories, 'domains' | 'users'>): Promise<boolean> {
  const root = await repos.domains.byPath('/');
  const admin = root && (await repos.users.forLogin('admin', root.id));
  return !!admin && (await verifyPassword(DEFAULT_ADMIN_PASSWORD, admin.passwordHash));
}

/** The warning a start logs while it is so. */
export const DEFAULT_PASSWORD_WARNING =
  'SECURITY: user admin still has the default password "password"; anyone who can reach the API can log in as the root admin. ' +
  'Change it now: KMS_ADMIN_PASSWORD=… npm run admin -- set-admin-password (node dist/cli/admin.js in the image); a new deployment takes KMS_ADMIN_PASSWORD at its first start';
