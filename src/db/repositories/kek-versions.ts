import { randomInt } from 'node:crypto';
import type { Knex } from 'knex';
import { knexReader, type Reader } from '../reader';
import { isMysql } from '../knex';
import { dateOrNull } from '../columns';

/** KEK version states with CloudStack's spelling; their transitions are src/kms/kek-states.ts. */
export type KekStatus = 'Active' | 'Previous' | 'Archived';

/** One KEK in one backend, named by its label: a version of a KMS key. */
export interface KekVersion {
  id: number;
  uuid: string;
  kmsKeyId: number;
  versionNumber: number;
  kekLabel: string;
  status: KekStatus;
  keyBits: number;
  hsmProfileId: number;
  /** The standby KEK of this version (README "Standby HSM"): its profile and label; null without one. */
  standbyHsmProfileId?: number | null;
  standbyKekLabel?: string | null;
  created: Date;
  archived: Date | null;
  /** When the row was removed: the key was deleted, or the archived KEK was destroyed in its backend. */
  removed: Date | null;
  /** Live wrapped keys under this version (kept exact with every change of wrapped keys). */
  wrappedKeys: number;
}

/** A new version row. */
export type NewKekVersion = Omit<KekVersion, 'id' | 'archived' | 'removed' | 'wrappedKeys'>;

/** The profile a KEK version lives in, as wrapping needs it. */
export interface KekProfileRef {
  id: number;
  uuid: string;
  name: string;
  protocol: string;
  enabled: boolean;
}

/** The KEK version a DEK is (or will be) wrapped with, with its key and profile. */
export interface KekVersionContext {
  keyId: number;
  keyUuid: string;
  versionId: number;
  versionNumber: number;
  status: KekStatus;
  kekLabel: string;
  /** The KEK was destroyed in its backend (or the key deleted): the row is removed. */
  destroyed: boolean;
  profile: KekProfileRef;
  /** The standby KEK of the version, when its key has a standby profile. */
  standby?: { profile: KekProfileRef; kekLabel: string };
}

/** Live wrapped keys of one live KMS key under versions of one state (metrics). */
export interface WrappedKeyCount {
  kmsKeyUuid: string;
  kekState: KekStatus;
  count: number;
}

/**
 * Rows per version over which the live wrapped-key count is spread (migration 010): writers on
 * different cluster nodes pick one at random, so they rarely write the same row at once.
 */
export const WRAPPED_KEY_COUNT_SHARDS = 16;
const COUNTS = 'kms_kek_version_counts';

function toVersion(r: Record<string, any>): KekVersion {
  return {
    id: Number(r.id), uuid: r.uuid, kmsKeyId: Number(r.kms_key_id), versionNumber: Number(r.version_number), kekLabel: r.kek_label,
    status: r.status, keyBits: Number(r.key_bits), hsmProfileId: Number(r.hsm_profile_id),
    standbyHsmProfileId: r.standby_hsm_profile_id === null || r.standby_hsm_profile_id === undefined ? null : Number(r.standby_hsm_profile_id),
    standbyKekLabel: r.standby_kek_label ?? null, created: new Date(Number(r.created)),
    archived: dateOrNull(r.archived), removed: dateOrNull(r.removed), wrappedKeys: Number(r.wrapped_keys ?? 0),
  };
}

function toContext(r: Record<string, any>): KekVersionContext {
  return {
    keyId: Number(r.keyId), keyUuid: r.keyUuid, versionId: Number(r.versionId), versionNumber: Number(r.versionNumber), status: r.status, kekLabel: r.kekLabel,
    destroyed: r.removed !== null && r.removed !== undefined,
    profile: { id: Number(r.profileId), uuid: r.profileUuid, name: r.profileName, protocol: r.profileProtocol, enabled: r.profileEnabled === true || Number(r.profileEnabled) === 1 },
    ...(r.standbyKekLabel && r.standbyProfileId !== null && r.standbyProfileId !== undefined ? {
      standby: {
        kekLabel: r.standbyKekLabel,
        profile: { id: Number(r.standbyProfileId), uuid: r.standbyProfileUuid, name: r.standbyProfileName, protocol: r.standbyProfileProtocol, enabled: r.standbyProfileEnabled === true || Number(r.standbyProfileEnabled) === 1 },
      },
    } : {}),
  };
}

/**
 * `kms_kek_versions`: the version chain of every KMS key. A version changes state only through
 * `transition` (a conditional UPDATE from the state the caller's table names), so two writers
 * racing on one version change it once.
 */
export class KekVersionRepository {
  constructor(private readonly db: Knex | Knex.Transaction, private readonly read: Reader = knexReader) {}

  /** The key's live Active version (exactly one for a live key). */
  async active(keyId: number): Promise<KekVersion | undefined> {
    const r = await this.versions().where({ kms_key_id: keyId, status: 'Active' }).whereNull('removed').first();
    return r && toVersion(r);
  }

  /** Every live version of a key, oldest first. */
  async liveOf(keyId: number): Promise<KekVersion[]> {
    return (await this.versions().where({ kms_key_id: keyId }).whereNull('removed').orderBy('version_number')).map(toVersion);
  }

  /** Every version of a key, removed ones too, oldest first. */
  async allOf(keyId: number): Promise<KekVersion[]> {
    return (await this.versions().where({ kms_key_id: keyId }).orderBy('version_number')).map(toVersion);
  }

  /** Every version of several keys (removed ones too), oldest first, by key id. */
  async ofKeys(keyIds: readonly number[]): Promise<Map<number, KekVersion[]>> {
    const out = new Map<number, KekVersion[]>();
    if (!keyIds.length) return out;
    const rows = await this.read.rows<Record<string, any>>(this.versions().whereIn('kms_key_id', [...keyIds]).orderBy('version_number'));
    for (const r of rows.map(toVersion)) out.set(r.kmsKeyId, [...(out.get(r.kmsKeyId) ?? []), r]);
    return out;
  }

  /** The number the key's next version takes (removed versions count: labels are never reused). */
  async nextNumber(keyId: number): Promise<number> {
    const top = await this.db('kms_kek_versions').where({ kms_key_id: keyId }).max({ n: 'version_number' }).first();
    return Number((top as { n: number | null } | undefined)?.n ?? 0) + 1;
  }

  async insert(v: NewKekVersion): Promise<number> {
    const [id] = await this.db('kms_kek_versions').insert({
      uuid: v.uuid, kms_key_id: v.kmsKeyId, version_number: v.versionNumber, kek_label: v.kekLabel, status: v.status, key_bits: v.keyBits,
      hsm_profile_id: v.hsmProfileId, standby_hsm_profile_id: v.standbyHsmProfileId ?? null, standby_kek_label: v.standbyKekLabel ?? null,
      created: v.created.getTime(), archived: null, removed: null,
    });
    return Number(id);
  }

  /** Whether any version row (removed ones too) names this label. */
  async labelTaken(label: string): Promise<boolean> {
    return !!(await this.db('kms_kek_versions').where({ kek_label: label }).orWhere({ standby_kek_label: label }).first('id'));
  }

  /**
   * Locks every version row of a key (FOR UPDATE on MariaDB). A transaction storing a DEK holds the
   * same lock on its version row (`lockIfUsable`), so a key deletion counting wrapped keys after this
   * sees that row, or the writer sees the key removed and stores nothing.
   */
  async lockAllOf(keyId: number): Promise<void> {
    const q = this.db('kms_kek_versions').where({ kms_key_id: keyId }).select('id');
    const rows: Array<{ id: number }> = await (isMysql(this.db) ? q.forUpdate() : q);
    await this.fenceCounts(rows.map((r) => Number(r.id)));
  }

  /**
   * Writes every count shard of each version (creating missing ones), a real change of each row
   * (+1 then -1, so the sums stay true): on Galera, FOR UPDATE locks only on the local node, but a
   * transaction storing a DEK on another node writes one shard row of its version, so certification
   * sees both transactions wrote the same row and fails one of them (retried, it re-checks and
   * refuses). An `n = n` update would not do: MariaDB writes no row that did not change.
   */
  async fenceCounts(versionIds: readonly number[]): Promise<void> {
    if (!versionIds.length) return;
    const rows = versionIds.flatMap((id) => Array.from({ length: WRAPPED_KEY_COUNT_SHARDS }, (_, shard) => ({ kek_version_id: id, shard, n: 1 })));
    await this.db(COUNTS).insert(rows).onConflict(['kek_version_id', 'shard']).merge({ n: this.db.raw('?? + 1', [`${COUNTS}.n`]) });
    await this.db(COUNTS).whereIn('kek_version_id', [...versionIds]).update({ n: this.db.raw('?? - 1', ['n']) });
  }

  /** Marks every live version of a key removed (the key is deleted). */
  async removeAllOf(keyId: number, at: Date): Promise<void> {
    await this.db('kms_kek_versions').where({ kms_key_id: keyId }).whereNull('removed').update({ removed: at.getTime() });
  }

  /** Marks one version removed: its archived KEK was destroyed in its backend. */
  async markDestroyed(id: number, at: Date): Promise<void> {
    await this.db('kms_kek_versions').where({ id }).update({ removed: at.getTime() });
  }

  /**
   * Moves versions from one state to another with one conditional UPDATE, and answers how many
   * moved: only rows still in `from` (and, for a key, still live) change. `archivedAt` stamps
   * `archived`. Callers go through `changeKekState` (src/kms/kek-states.ts), which names the states.
   */
  async transition(which: { id: number } | { liveOfKey: number }, from: KekStatus, to: KekStatus, opts: { archivedAt?: Date } = {}): Promise<number> {
    const q = 'id' in which
      ? this.db('kms_kek_versions').where({ id: which.id, status: from })
      : this.db('kms_kek_versions').where({ kms_key_id: which.liveOfKey, status: from }).whereNull('removed');
    return q.update({ status: to, ...(opts.archivedAt ? { archived: opts.archivedAt.getTime() } : {}) });
  }

  /** Ids of the versions in one of `states`; `live` leaves removed ones out. */
  async idsIn(states: readonly KekStatus[], opts: { live?: boolean } = {}): Promise<number[]> {
    const q = this.db('kms_kek_versions').whereIn('status', [...states]);
    if (opts.live) q.whereNull('removed');
    return (await q.select('id')).map((r: { id: number }) => Number(r.id));
  }

  /** Live Archived versions archived at or before `before` (epoch ms), with no live wrapped key: due for destruction. */
  async archivedDue(before: number, keyId?: number): Promise<number[]> {
    const db = this.db;
    const q = db('kms_kek_versions as v').where({ 'v.status': 'Archived' }).whereNull('v.removed').where('v.archived', '<=', before)
      .whereNotExists(function live() {
        this.select(db.raw('1')).from('kms_wrapped_key as w').whereRaw('w.kek_version_id = v.id').whereNull('w.removed');
      });
    if (keyId !== undefined) q.where({ 'v.kms_key_id': keyId });
    return (await q.select('v.id')).map((r: { id: number }) => Number(r.id));
  }

  /**
   * Whether the version is still in `status`, locking its row (FOR UPDATE on MariaDB) and writing
   * all its count shards (`fenceCounts`, which conflicts on Galera with a DEK stored on another node).
   */
  async lockIfIn(id: number, status: KekStatus): Promise<boolean> {
    const q = this.db('kms_kek_versions').where({ id, status }).first('id');
    if (!(await (isMysql(this.db) ? q.forUpdate() : q))) return false;
    await this.fenceCounts([id]);
    return true;
  }

  /**
   * Whether the version (and its key) is live and in one of `states`, locking the version row for
   * the transaction. FOR UPDATE, not SHARE: the same transaction then raises the version's
   * wrapped-key count, and two shared locks each upgrading to exclusive would deadlock. That count
   * write (one shard row) is what conflicts on Galera with a deletion or archiving on another node,
   * which writes every shard row (`fenceCounts`).
   */
  async lockIfUsable(versionId: number, states: readonly KekStatus[]): Promise<boolean> {
    const q = this.db('kms_kek_versions as v').join('kms_keys as k', 'k.id', 'v.kms_key_id')
      .where('v.id', versionId).whereNull('v.removed').whereNull('k.removed').whereIn('v.status', [...states])
      .first('v.id');
    return !!(await (isMysql(this.db) ? q.forUpdate() : q));
  }

  /** The live key's live version in `status`, with its profile, ready to wrap with. */
  async contextOfKey(keyId: number, status: KekStatus): Promise<KekVersionContext | undefined> {
    const r = await this.contextQuery().where({ 'v.kms_key_id': keyId, 'v.status': status }).whereNull('v.removed').whereNull('k.removed').first();
    return r && toContext(r);
  }

  /** A version (removed or not) with its key and profile. */
  async context(versionId: number): Promise<KekVersionContext | undefined> {
    const r = await this.contextQuery().where({ 'v.id': versionId }).first();
    return r && toContext(r);
  }

  /**
   * Keeps the live wrapped keys per version exact: every statement that adds, removes or moves
   * wrapped keys calls this in the same transaction, so progress figures never scan the wrapped
   * keys, however many there are. The delta goes to one of the version's count shards, chosen at
   * random (an upsert), never to the version row: writers on different Galera nodes then seldom
   * write the same row, and a conflict that still happens is retried with the transaction.
   */
  async adjustWrappedKeyCount(versionId: number, delta: number): Promise<void> {
    if (delta === 0) return;
    await this.db(COUNTS).insert({ kek_version_id: versionId, shard: randomInt(WRAPPED_KEY_COUNT_SHARDS), n: delta })
      .onConflict(['kek_version_id', 'shard']).merge({ n: this.db.raw('?? + ?', [`${COUNTS}.n`, delta]) });
  }

  /** Live wrapped keys per live KMS key and version state, from the per-version counts (never a scan of the wrapped keys). */
  async wrappedKeyCounts(): Promise<WrappedKeyCount[]> {
    const rows: Array<{ kms_key: string; kek_state: KekStatus; n: number | string | null }> = await this.db(`${COUNTS} as c`)
      .join('kms_kek_versions as v', 'v.id', 'c.kek_version_id')
      .join('kms_keys as k', 'k.id', 'v.kms_key_id')
      .whereNull('k.removed')
      .groupBy('k.uuid', 'v.status')
      .select({ kms_key: 'k.uuid', kek_state: 'v.status' })
      .sum({ n: 'c.n' });
    return rows.map((r) => ({ kmsKeyUuid: r.kms_key, kekState: r.kek_state, count: Number(r.n ?? 0) })).filter((r) => r.count > 0);
  }

  /** Version rows with their live wrapped-key count (`wrapped_keys`, the sum of the version's shards). */
  private versions() {
    return this.db('kms_kek_versions').select('kms_kek_versions.*', this.db(COUNTS).whereRaw('?? = ??', [`${COUNTS}.kek_version_id`, 'kms_kek_versions.id'])
      .sum('n').as('wrapped_keys'));
  }

  /** Gives a version its standby KEK (a standby added to its key). */
  async setStandby(versionId: number, standby: { hsmProfileId: number; kekLabel: string }): Promise<void> {
    await this.db('kms_kek_versions').where({ id: versionId }).update({ standby_hsm_profile_id: standby.hsmProfileId, standby_kek_label: standby.kekLabel });
  }

  private contextQuery() {
    return this.db('kms_kek_versions as v')
      .join('kms_keys as k', 'k.id', 'v.kms_key_id')
      .join('kms_hsm_profiles as p', 'p.id', 'v.hsm_profile_id')
      .leftJoin('kms_hsm_profiles as sp', 'sp.id', 'v.standby_hsm_profile_id')
      .select('v.standby_kek_label as standbyKekLabel', 'sp.id as standbyProfileId', 'sp.uuid as standbyProfileUuid', 'sp.name as standbyProfileName',
        'sp.protocol as standbyProfileProtocol', 'sp.enabled as standbyProfileEnabled')
      .select('v.id as versionId', 'v.version_number as versionNumber', 'v.status', 'v.kek_label as kekLabel', 'v.removed',
        'k.id as keyId', 'k.uuid as keyUuid', 'p.id as profileId', 'p.uuid as profileUuid', 'p.name as profileName',
        'p.protocol as profileProtocol', 'p.enabled as profileEnabled');
  }
}
