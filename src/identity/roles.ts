import type { Role } from './caller';

/** CloudStack's role types, including ResourceAdmin (no account of this server has it). */
export type RoleType = Role | 'ResourceAdmin';

/** One of CloudStack's four default roles (dynamic roles, since 4.9). */
export interface DefaultRole {
  /** CloudStack's row id of the role (1 to 4 in every installation). */
  readonly id: number;
  /** This server's fixed uuid of the role (CloudStack generates one per installation). */
  readonly uuid: string;
  readonly name: string;
  readonly type: RoleType;
  readonly description: string;
  /** The account type an account of this role has (CloudStack's Account.Type). */
  readonly accountType: number;
}

/**
 * The default roles as CloudStack's schema creates them (ids 1 to 4, `is_default` 1). Custom roles
 * and role permissions are not part of this server: a caller's rights follow its role type.
 */
export const DEFAULT_ROLES: readonly DefaultRole[] = [
  { id: 1, uuid: 'a0c3b0b2-0001-4e4d-9c4a-8f1d2b3c4d01', name: 'Root Admin', type: 'Admin', description: 'Default root admin role', accountType: 1 },
  { id: 2, uuid: 'a0c3b0b2-0002-4e4d-9c4a-8f1d2b3c4d02', name: 'Resource Admin', type: 'ResourceAdmin', description: 'Default resource admin role', accountType: 3 },
  { id: 3, uuid: 'a0c3b0b2-0003-4e4d-9c4a-8f1d2b3c4d03', name: 'Domain Admin', type: 'DomainAdmin', description: 'Default domain admin role', accountType: 2 },
  { id: 4, uuid: 'a0c3b0b2-0004-4e4d-9c4a-8f1d2b3c4d04', name: 'User', type: 'User', description: 'Default user role', accountType: 0 },
];

/** The default role of an account of this type (a project account, type 5, has the User role as in CloudStack). */
export const roleOfAccountType = (accountType: number): DefaultRole =>
  DEFAULT_ROLES.find((r) => r.accountType === accountType) ?? DEFAULT_ROLES[3]!;
