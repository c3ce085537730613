import type { Repositories } from '../db/repositories';
import { ACCOUNT_TYPES, type Caller } from './caller';
import { scopeContains, type Owner, type OwnerScope } from '../core/owner-scope';

export { scopeContains, type Owner, type OwnerScope } from '../core/owner-scope';

/**
 * The one authorization rule. Every command, list and job asks it; nothing else decides whether a
 * caller may see or act on something an account or a domain owns.
 *
 * - A root admin reaches everything.
 * - A domain admin reaches what is owned in its own domain and every domain below it, found by
 *   following `parent_id` (ids, never a path prefix), except what a root-admin account owns:
 *   only a root admin acts on a root-admin account, its users or its resources, wherever the
 *   account lives (CloudStack's role-type rule: a caller never acts on a more privileged account).
 *   Another domain admin account of its subtree is reachable, as in CloudStack (same role type).
 * - A user reaches what its own account owns.
 * - Every caller also reaches the account of each project it is a member of (CloudStack: a
 *   project's resources are owned by its own account, type 5 PROJECT, and its members act on
 *   them). A domain admin reaches the project accounts of its subtree anyway, as accounts there.
 *
 * A single read and a list both derive from `reach`: a list narrows it (its filters), a single
 * check tests membership of the same set, so the two cannot disagree.
 */

export class Access {
  constructor(private readonly repos: Repositories) {}

  /** Everything the caller may see and act on. */
  async reach(caller: Caller): Promise<OwnerScope> {
    if (caller.accountType === ACCOUNT_TYPES.Admin) return { kind: 'all' };
    const projects = await this.memberProjectAccountIds(caller.accountId);
    if (caller.accountType === ACCOUNT_TYPES.DomainAdmin) {
      const scope = await this.domainScope(caller, caller.domainId, true);
      if (scope.kind !== 'domains' || !projects.length) return scope;
      return { ...scope, alsoAccountIds: projects };
    }
    return { kind: 'accounts', accountIds: [caller.accountId, ...projects] };
  }

  /** The accounts of the live projects an account is a member of (any role). */
  async memberProjectAccountIds(accountId: number): Promise<number[]> {
    return this.repos.projects.memberProjectAccountIds(accountId);
  }

  /** The project accounts (type 5) in these domains (all domains when absent), among `amongIds` when given. */
  async projectAccountIds(domainIds?: readonly number[], amongIds?: readonly number[]): Promise<number[]> {
    return this.repos.accounts.projectAccountIds(domainIds, amongIds);
  }

  /** Whether the caller reaches an owner (a single read or an action on one object). */
  async allows(caller: Caller, owner: Owner): Promise<boolean> {
    return scopeContains(await this.reach(caller), owner);
  }

  /** Whether the caller reaches a domain: root anywhere, a domain admin its subtree, a user its own domain. */
  async reachesDomain(caller: Caller, domainId: number): Promise<boolean> {
    if (caller.accountType === ACCOUNT_TYPES.Admin) return true;
    if (caller.accountType === ACCOUNT_TYPES.DomainAdmin) return (await this.subtreeIds(caller.domainId)).includes(domainId);
    return domainId === caller.domainId;
  }

  /**
   * Owners in a domain the caller reaches (or in it and every domain below it), minus root-admin
   * accounts unless a root admin asks. The caller must reach `domainId`: check `reachesDomain` first.
   */
  async domainScope(caller: Caller, domainId: number, recursive: boolean): Promise<OwnerScope> {
    const domainIds = recursive ? await this.subtreeIds(domainId) : [domainId];
    const exceptAccountIds = caller.accountType === ACCOUNT_TYPES.Admin ? [] : await this.repos.accounts.rootAdminIdsIn(domainIds);
    return { kind: 'domains', domainIds, exceptAccountIds };
  }

  /** The ids of a domain and of every live domain below it, following parent ids level by level. */
  async subtreeIds(domainId: number): Promise<number[]> {
    const all = [domainId];
    let frontier = [domainId];
    while (frontier.length) {
      frontier = (await this.repos.domains.childIds(frontier)).filter((id) => !all.includes(id));
      all.push(...frontier);
    }
    return all;
  }

  /** The ids of a live domain and of every domain above it, up to ROOT. */
  async ancestorIds(domainId: number): Promise<number[]> {
    const out: number[] = [];
    let id: number | null = domainId;
    while (id !== null && !out.includes(id)) {
      const row = await this.repos.domains.parentOf(id);
      if (!row) break;
      out.push(id);
      id = row.parentId;
    }
    return out;
  }
}
