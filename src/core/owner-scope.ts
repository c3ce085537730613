/**
 * Owners and sets of owners: what identity's access rule computes (src/identity/access.ts) and
 * what repositories filter by (src/db/owner-scope.ts).
 */

/** Who owns something: an account (and its domain), or a domain alone (accountId null). */
export interface Owner {
  readonly accountId: number | null;
  readonly domainId: number | null;
}

/** A set of owners: what a caller reaches, or what a list may show. */
export type OwnerScope =
  /** Every owner, except the listed accounts (project accounts, for a list without projectid). */
  | { readonly kind: 'all'; readonly exceptAccountIds?: readonly number[] }
  | { readonly kind: 'accounts'; readonly accountIds: readonly number[] }
  /**
   * Owners in these domains, except the listed accounts (root-admin accounts, for a domain admin),
   * plus `alsoAccountIds` wherever they live (the projects a domain admin is a member of).
   */
  | {
    readonly kind: 'domains'; readonly domainIds: readonly number[]; readonly exceptAccountIds: readonly number[];
    readonly alsoAccountIds?: readonly number[];
  };

/** Whether an owner is in a scope. */
export function scopeContains(scope: OwnerScope, owner: Owner): boolean {
  switch (scope.kind) {
    case 'all':
      return owner.accountId === null || !(scope.exceptAccountIds ?? []).includes(owner.accountId);
    case 'accounts':
      return owner.accountId !== null && scope.accountIds.includes(owner.accountId);
    case 'domains':
      if (owner.accountId !== null && (scope.alsoAccountIds ?? []).includes(owner.accountId)) return true;
      return owner.domainId !== null && scope.domainIds.includes(owner.domainId) &&
        (owner.accountId === null || !scope.exceptAccountIds.includes(owner.accountId));
  }
}
