import type { UserAccountAndDomain } from '../db/repositories/users';

/** CloudStack role types that may call a command. */
export type Role = 'Admin' | 'DomainAdmin' | 'User';

/** Who is calling: the authenticated user with its account and domain (a project's account, type 5, never calls). */
export interface Caller extends UserAccountAndDomain {
  readonly userId: number;
  readonly userUuid: string;
  readonly username: string;
  readonly role: Role;
}

export const ACCOUNT_TYPES = { User: 0, Admin: 1, DomainAdmin: 2, Project: 5 } as const;

export const roleOf = (accountType: number): Role =>
  accountType === 1 ? 'Admin' : accountType === 2 ? 'DomainAdmin' : 'User';

/** The UI's role names (listUsers rolename). */
export const ROLE_NAMES: Record<Role, string> = { Admin: 'Root Admin', DomainAdmin: 'Domain Admin', User: 'User' };

export const isRootAdmin = (c: Caller): boolean => c.role === 'Admin';

