import type { Knex } from 'knex';
import type { OwnerScope } from '../core/owner-scope';

/** Columns of an owned table, qualified as the query names them. */
export interface OwnerColumns {
  readonly accountCol: string;
  readonly domainCol: string;
}

/** Restricts a query on an owned table to a scope: the SQL twin of `scopeContains`. */
export function applyOwnerScope(q: Knex.QueryBuilder, scope: OwnerScope, cols: OwnerColumns): Knex.QueryBuilder {
  switch (scope.kind) {
    case 'all':
      if (scope.exceptAccountIds?.length) {
        q.where((b) => b.whereNull(cols.accountCol).orWhereNotIn(cols.accountCol, [...scope.exceptAccountIds!]));
      }
      return q;
    case 'accounts':
      return q.whereIn(cols.accountCol, [...scope.accountIds]);
    case 'domains':
      return q.where((outer) => {
        outer.where((inDomains) => {
          inDomains.whereIn(cols.domainCol, [...scope.domainIds]);
          if (scope.exceptAccountIds.length) {
            inDomains.where((b) => b.whereNull(cols.accountCol).orWhereNotIn(cols.accountCol, [...scope.exceptAccountIds]));
          }
        });
        if (scope.alsoAccountIds?.length) outer.orWhereIn(cols.accountCol, [...scope.alsoAccountIds]);
      });
  }
}
