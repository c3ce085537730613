import type { ResponseField } from '../define';

/** Who owns an object, as the views read it: its account and, for a project's account, the project. */
export interface OwnerNames {
  readonly accountName: string | null;
  readonly accountUuid: string | null;
  readonly projectUuid: string | null;
  readonly projectName: string | null;
}

/**
 * CloudStack's owner-population rule (ApiResponseHelper.populateOwner) for every object an account
 * owns: a project's object answers `project` and `projectid`, and no `account`/`accountid` (the
 * project's internal PrjAcct-… account is nobody's to see); any other answers its account.
 */
export function ownerOf(o: OwnerNames, opts: { accountId?: boolean } = {}): { account?: string; accountid?: string; project?: string; projectid?: string } {
  if (o.projectUuid) return { project: o.projectName ?? undefined, projectid: o.projectUuid };
  return { account: o.accountName ?? undefined, accountid: opts.accountId === false ? undefined : (o.accountUuid ?? undefined) };
}

/** The two project fields of a controlled object's response. */
export const projectFields: readonly ResponseField[] = [
  { name: 'projectid', type: 'string', description: 'the ID of the project owning the object (then account and accountid are absent)' },
  { name: 'project', type: 'string', description: 'the name of the project owning the object (then account and accountid are absent)' },
];
