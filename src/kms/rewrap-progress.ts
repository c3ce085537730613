import type { KekVersion, KekVersionRepository } from '../db/repositories/kek-versions';
import { REWRAP_SOURCE_STATUSES, type KekStatus } from './kek-states';

/** One KEK version of a key as an operator follows a rotation: its state and the DEKs still on it. */
export interface KekVersionSummary {
  version: number;
  status: KekStatus;
  wrappedKeys: number;
  created: Date;
  archived: Date | null;
  destroyed: boolean;
}

export const summarize = (v: KekVersion): KekVersionSummary => ({
  version: v.versionNumber, status: v.status, wrappedKeys: v.wrappedKeys, created: v.created, archived: v.archived, destroyed: v.removed !== null,
});

/** The versions of several keys (oldest first), with their wrapped-key counts, in one query. */
export async function kekVersionSummaries(versions: Pick<KekVersionRepository, 'ofKeys'>, keyIds: readonly number[]): Promise<Map<number, KekVersionSummary[]>> {
  const all = await versions.ofKeys(keyIds);
  return new Map([...all].map(([keyId, list]) => [keyId, list.map(summarize)]));
}

/** Wrapped keys still waiting for the background rewrap (on Previous versions). */
export const rewrapRemaining = (versions: readonly KekVersionSummary[]): number =>
  versions.filter((v) => REWRAP_SOURCE_STATUSES.includes(v.status)).reduce((n, v) => n + v.wrappedKeys, 0);
