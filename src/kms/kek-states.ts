import type { KekStatus, KekVersionRepository } from '../db/repositories/kek-versions';

export type { KekStatus } from '../db/repositories/kek-versions';

/**
 * The life of a KEK version, in one table. A version is born Active (createKMSKey, or a rotation's
 * new version); a rotation makes the Active one Previous (its DEKs are then rewrapped in the
 * background); a drained Previous version becomes Archived. An Archived KEK is kept in its backend
 * for `kms.kek.destroy.delay.days` (so a DEK restored from a backup can still be unwrapped, and is
 * rewrapped to the Active version), then destroyed (the row is marked removed; its status stays
 * Archived). Deleting a key, or a root admin's purge, destroys at once. Nothing else changes a status.
 */
export const KEK_TRANSITIONS = {
  /** rotateKMSKey: the Active version steps down when the new one becomes Active (same transaction). */
  rotate: { from: 'Active', to: 'Previous' },
  /** The rewrap drained a Previous version: no live wrapped key is under it any more. */
  drain: { from: 'Previous', to: 'Archived' },
} as const satisfies Record<string, { from: KekStatus; to: KekStatus }>;

export type KekTransition = keyof typeof KEK_TRANSITIONS;

/** The state of a new version (a key's first, or a rotation's). */
export const NEW_VERSION_STATUS: KekStatus = 'Active';

/** The state of the version that wraps new DEKs: exactly one per live key. */
export const WRAPPING_STATUS: KekStatus = 'Active';

/** States a DEK may be stored under (a blob made under a version that moved on is still readable). */
export const USABLE_STATUSES: readonly KekStatus[] = ['Active', 'Previous'];

/**
 * States whose DEKs the background rewrap moves to the key's Active version: Previous, and Archived
 * (a drained version gets wrapped keys again only when rows are restored from a backup).
 */
export const REWRAP_SOURCE_STATUSES: readonly KekStatus[] = ['Previous', 'Archived'];

/** Archived versions: drained; their KEK is kept for the retention delay, then destroyed (the row is removed). */
export const DESTROYED_STATUS: KekStatus = 'Archived';

/** States whose KEK may still exist: DEKs under them unwrap while the version is not destroyed (removed). */
export const UNWRAPPABLE_STATUSES: readonly KekStatus[] = ['Active', 'Previous', 'Archived'];

/** Whether DEKs under a version in this state, destroyed or not, can be unwrapped. */
export const canUnwrapUnder = (status: KekStatus, destroyed = false): boolean => !destroyed && UNWRAPPABLE_STATUSES.includes(status);

/** The retention setting of Archived KEKs, in days (0: destroyed as soon as the version drains, as CloudStack does). */
export const KEK_DESTROY_DELAY_SETTING = 'kms.kek.destroy.delay.days' as const;

/** When an Archived version's KEK is due for destruction, under a retention of `delayMs`. */
export const destroyDueAt = (archived: Date | null, delayMs: number): Date | null => (archived ? new Date(archived.getTime() + delayMs) : null);

/** Whether DEKs under a version in this state still wait for the rewrap (their key's Active version is another). */
export const awaitsRewrap = (status: KekStatus): boolean => status !== WRAPPING_STATUS;

/**
 * Every change of a version's status goes through here: one conditional UPDATE from the state the
 * table names, by version id or for the live versions of a key. Answers how many versions moved
 * (0 when another writer moved them first).
 */
export function changeKekState(
  versions: KekVersionRepository,
  which: { id: number } | { liveOfKey: number },
  transition: KekTransition,
  at: Date,
): Promise<number> {
  const t = KEK_TRANSITIONS[transition];
  return versions.transition(which, t.from, t.to, t.to === DESTROYED_STATUS ? { archivedAt: at } : {});
}
