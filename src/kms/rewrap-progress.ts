import type { Knex } from 'knex';
import type { KekStatus } from './types';

/** One KEK version of a key as an operator follows a rotation: its state and the DEKs still on it. */
export interface KekVersionSummary {
  version: number;
  status: KekStatus;
  wrappedKeys: number;
  created: number;
  archived: number | null;
  destroyed: boolean;
}

/** The versions of several keys (oldest first), with their wrapped-key counts, in one query. */
export async function kekVersionSummaries(db: Knex, keyIds: readonly number[]): Promise<Map<number, KekVersionSummary[]>> {
  const out = new Map<number, KekVersionSummary[]>();
  if (!keyIds.length) return out;
  const rows: Array<Record<string, any>> = await db('kms_kek_versions as v')
    .whereIn('v.kms_key_id', keyIds)
    .orderBy('v.version_number')
    .select('v.kms_key_id', 'v.version_number', 'v.status', 'v.created', 'v.archived', 'v.removed', 'v.wrapped_keys as n');
  for (const r of rows) {
    const list = out.get(r.kms_key_id) ?? [];
    list.push({
      version: Number(r.version_number), status: r.status, wrappedKeys: Number(r.n), created: Number(r.created),
      archived: r.archived === null ? null : Number(r.archived), destroyed: r.removed !== null,
    });
    out.set(r.kms_key_id, list);
  }
  return out;
}

/** Wrapped keys still waiting for the background rewrap (on Previous versions). */
export const rewrapRemaining = (versions: readonly KekVersionSummary[]): number =>
  versions.filter((v) => v.status === 'Previous').reduce((n, v) => n + v.wrappedKeys, 0);
