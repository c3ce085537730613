import type { KekVersion, KekVersionRepository } from '../db/repositories/kek-versions';
import { destroyDueAt, REWRAP_SOURCE_STATUSES, type KekStatus } from './kek-states';

/** One KEK version of a key as an operator follows a rotation: its state and the DEKs still on it. */
export interface KekVersionSummary {
  version: number;
  status: KekStatus;
  wrappedKeys: number;
  created: Date;
  archived: Date | null;
  destroyed: boolean;
  /** When the KEK is destroyed: for an Archived version not yet destroyed, its archival plus the retention delay (the sweep runs with the rewrap's ticks). */
  destroyAt: Date | null;
}

export const summarize = (v: KekVersion, destroyDelayMs = 0): KekVersionSummary => ({
  version: v.versionNumber, status: v.status, wrappedKeys: v.wrappedKeys, created: v.created, archived: v.archived, destroyed: v.removed !== null,
  destroyAt: v.status === 'Archived' && v.removed === null ? destroyDueAt(v.archived, destroyDelayMs) : null,
});

/** The versions of several keys (oldest first), with their wrapped-key counts, in one query. */
export async function kekVersionSummaries(
  versions: Pick<KekVersionRepository, 'ofKeys'>, keyIds: readonly number[], destroyDelayMs = 0,
): Promise<Map<number, KekVersionSummary[]>> {
  const all = await versions.ofKeys(keyIds);
  return new Map([...all].map(([keyId, list]) => [keyId, list.map((v) => summarize(v, destroyDelayMs))]));
}

/** Wrapped keys still waiting for the background rewrap (on Previous versions). */
export const rewrapRemaining = (versions: readonly KekVersionSummary[]): number =>
  versions.filter((v) => REWRAP_SOURCE_STATUSES.includes(v.status)).reduce((n, v) => n + v.wrappedKeys, 0);
