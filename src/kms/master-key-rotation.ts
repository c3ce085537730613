import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { MasterKey } from '../config/master-key';
import type { Db } from '../db/knex';
import { secretAad } from '../identity/directory';
import type { Logger } from '../core/logger';
import { paramError } from '../core/errors';
import { detailAad } from './hsm-profile-details';
import { describeNode, heldBy, listVersions, liveNodes, registerVersion, type MasterKeyNode } from './master-key-versions';
import { passphraseAad } from './passphrases';

/** One column of values encrypted under the master key, and how to find each value's authenticated place. */
interface ProtectedColumn {
  /** What the values are, for reports. */
  readonly what: string;
  readonly table: string;
  readonly column: string;
  /** Rows of this column (id, value, and whatever `aad` reads), keyset-paged by id. */
  rows(db: Knex): Knex.QueryBuilder;
  aad(row: Record<string, unknown>): string;
}

/** Every value the master key protects. A new kind of secret at rest must be added here. */
export const PROTECTED_COLUMNS: readonly ProtectedColumn[] = [
  {
    what: 'API secret keys', table: 'user', column: 'secret_key',
    rows: (db) => db('user as t').whereNotNull('t.secret_key').select('t.id', 't.secret_key as value', 't.uuid'),
    aad: (r) => secretAad(String(r.uuid)),
  },
  {
    what: 'HSM profile PINs and passwords', table: 'kms_hsm_profile_details', column: 'value',
    // isSensitiveDetail in SQL: pin, password, private_key, anything with "secret".
    rows: (db) => db('kms_hsm_profile_details as t').join('kms_hsm_profiles as p', 'p.id', 't.profile_id')
      .where((q) => q.whereRaw('lower(t.name) in (?, ?, ?)', ['pin', 'password', 'private_key']).orWhereRaw('lower(t.name) like ?', ['%secret%']))
      .select('t.id', 't.value as value', 't.name', 'p.uuid as profile_uuid'),
    aad: (r) => detailAad(String(r.profile_uuid), String(r.name)),
  },
  {
    what: 'legacy volume passphrases', table: 'passphrase', column: 'passphrase',
    rows: (db) => db('passphrase as t').select('t.id', 't.passphrase as value', 't.uuid'),
    aad: (r) => passphraseAad(String(r.uuid)),
  },
  {
    what: 'database-provider KEKs', table: 'kms_database_kek_objects', column: 'key_material',
    rows: (db) => db('kms_database_kek_objects as t').whereNot('t.key_material', '').select('t.id', 't.key_material as value', 't.label'),
    aad: (r) => String(r.label),
  },
];

const valueColumn = (c: ProtectedColumn) => `t.${c.column}`;

/** Values of `c` not yet written with `version` (legacy-format values never are). */
const notOn = (db: Knex, c: ProtectedColumn, version: number): Knex.QueryBuilder =>
  c.rows(db).whereNot(valueColumn(c), 'like', `mk${version}:%`);

/** How many protected values are not on `version`, per column. */
export async function countNotOn(db: Knex, version: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const c of PROTECTED_COLUMNS) {
    const row = await notOn(db, c, version).clearSelect().count({ n: '*' }).first();
    out[c.table] = Number((row as { n?: number | string } | undefined)?.n ?? 0);
  }
  return out;
}

async function countAll(db: Knex): Promise<number> {
  let n = 0;
  for (const c of PROTECTED_COLUMNS) n += Number(((await c.rows(db).clearSelect().count({ n: '*' }).first()) as { n?: number } | undefined)?.n ?? 0);
  return n;
}

/**
 * Rewrites the values of one batch under `version` with one UPDATE whose CASE keeps any value that
 * changed since it was read (a new API key, a concurrent run): only the value read is replaced. A
 * statement commits whole or not at all, so a SIGKILL at any instant leaves each value readable,
 * on the old version or the new. Returns how many values it rewrote.
 */
async function rewriteBatch(db: Knex, c: ProtectedColumn, rows: Array<Record<string, unknown>>, key: MasterKey, version: number): Promise<number> {
  const cases: string[] = [];
  const bindings: Knex.RawBinding[] = [];
  for (const r of rows) {
    const value = String(r.value);
    cases.push('WHEN ?? = ? AND ?? = ? THEN ?');
    bindings.push('id', r.id as number, c.column, value, key.reencrypt(value, c.aad(r), version));
  }
  const sql = `UPDATE ?? SET ?? = CASE ${cases.join(' ')} ELSE ?? END WHERE ?? IN (${rows.map(() => '?').join(', ')})`;
  const result = await db.raw(sql, [c.table, c.column, ...bindings, c.column, 'id', ...rows.map((r) => r.id as number)]);
  // mysql2 answers [ResultSetHeader]; better-sqlite3 through knex answers the info object or [] for raw updates.
  const header = Array.isArray(result) ? result[0] : result;
  return Number((header as { affectedRows?: number; changes?: number } | undefined)?.affectedRows ?? (header as { changes?: number } | undefined)?.changes ?? rows.length);
}

/** Options of a sweep. */
export interface SweepOptions {
  batchSize: number;
  /** Called after each committed batch with the number of values rewritten so far. */
  onBatch?(rewritten: number): Promise<void>;
  aborted?(): boolean;
  /** Only values in the legacy format (the in-place upgrade at start). */
  legacyOnly?: boolean;
}

/**
 * Re-encrypts every protected value that is not on `version` under it, batch by batch in id order.
 * Running it again (after a crash, on another worker) finds only what is left.
 */
export async function reencryptAll(db: Knex, key: MasterKey, version: number, opts: SweepOptions): Promise<number> {
  let rewritten = 0;
  for (const c of PROTECTED_COLUMNS) {
    let lastId = 0;
    for (;;) {
      if (opts.aborted?.()) throw new Error('master key rotation interrupted');
      const q = opts.legacyOnly ? c.rows(db).where(valueColumn(c), 'like', 'v1:%') : notOn(db, c, version);
      const rows: Array<Record<string, unknown>> = await q.where('t.id', '>', lastId).orderBy('t.id').limit(opts.batchSize);
      if (!rows.length) break;
      lastId = Number(rows[rows.length - 1]!.id);
      rewritten += await rewriteBatch(db, c, rows, key, version);
      await opts.onBatch?.(rewritten);
    }
  }
  return rewritten;
}

/**
 * Values written before master keys had versions (`v1:`, no version in their authenticated data)
 * are version 1: the first start that holds version 1 rewrites them in place as `mk1:`.
 */
export async function upgradeLegacyValues(db: Db, key: MasterKey, logger: Logger): Promise<void> {
  if (!key.holds(1)) return;
  const n = await reencryptAll(db, key, 1, { batchSize: 500, legacyOnly: true });
  if (n) logger.info('master-key values upgraded in place to versioned format', { version: 1, values: n });
}

/** The job kind of a rotation (declared with rotateMasterKey in src/commands/master-key.ts). */
export const ROTATION_JOB = 'master-key.rotate';

/** What a rotation start returns. */
export interface RotationStart { from: number; to: number }

/**
 * Starts a rotation: the Pending version becomes Active and the Active one Previous. Refused (431,
 * nothing changed) when there is no new key, when this node lacks it, or while any live node does
 * not announce it. With a sealed master key and no Pending version, a new key is made and sealed
 * here first; the other nodes unwrap it at their next heartbeat, so the refusal says to retry.
 * A rotation whose job stopped (Previous still present) is resumed with the same versions.
 */
export async function beginRotation(db: Db, node: MasterKeyNode): Promise<RotationStart> {
  const running: { uuid: string } | undefined = await db('async_job').where({ job_kind: ROTATION_JOB, status: 0 }).first('uuid');
  if (running) throw paramError(`A master key rotation is already running: poll job ${running.uuid} with queryAsyncJobResult`);
  let rows = await listVersions(db);
  const active = rows.find((r) => r.state === 'Active')!;
  const previous = rows.filter((r) => r.state === 'Previous');
  if (previous.length) return { from: previous[0]!.version, to: active.version };
  let pending = rows.filter((r) => r.state === 'Pending').at(-1);
  if (!pending && node.seal) {
    const raw = randomBytes(32);
    try {
      const version = (await registerVersion(db, raw, 'Pending', node.seal))!;
      node.hold(version, raw);
    } finally {
      raw.fill(0);
    }
    await node.refresh();
    rows = await listVersions(db);
    pending = rows.filter((r) => r.state === 'Pending').at(-1);
  }
  if (!pending) {
    throw paramError(
      'There is no new master key to rotate to: give every node the new key in KMS_MASTER_KEY_NEXT (openssl rand -base64 32) ' +
        'and restart them, then start the rotation again',
    );
  }
  if (!node.key.holds(pending.version)) {
    throw paramError(`This node does not hold the new master key (version ${pending.version}): give it the key in KMS_MASTER_KEY_NEXT and restart it`);
  }
  const lacking = (await liveNodes(db, node.staleMs)).filter((n) => !heldBy(n).includes(pending!.version));
  if (lacking.length) {
    const how = node.seal ? 'they unwrap it from the database at their next heartbeat; retry in a few seconds' : 'give them the key in KMS_MASTER_KEY_NEXT and restart them';
    throw paramError(
      `Not every node holds the new master key (version ${pending.version}) yet: ${lacking.map(describeNode).join(', ')} lack it; ${how}`,
    );
  }
  const changed = await db.transaction(async (trx) => {
    const n = await trx('kms_master_key_versions').where({ version: pending!.version, state: 'Pending' }).update({ state: 'Active', activated: Date.now() });
    if (n !== 1) return false;
    await trx('kms_master_key_versions').where({ version: active.version, state: 'Active' }).update({ state: 'Previous' });
    return true;
  });
  if (!changed) throw paramError('Another master key rotation started at the same moment; poll it with queryAsyncJobResult');
  await node.refresh();
  return { from: active.version, to: pending.version };
}

/** Reports of a finished rotation (the job result). */
export interface RotationReport { version: number; previousversion: number; reencrypted: number; retired: number[] }

/**
 * The rotation job (any worker; run again from the start after a crash): waits until every live
 * node writes with the new version, re-encrypts every value in batches, checks that none is left
 * on an older version, then retires the older versions; nodes forget them at their next heartbeat.
 */
export async function runRotation(
  db: Db, node: MasterKeyNode, to: number,
  opts: { batchSize: number; progress(percent: number): Promise<void>; aborted(): boolean; logger: Logger },
): Promise<RotationReport> {
  if (!node.key.holds(to)) throw new Error(`This worker does not hold master key version ${to} yet`);
  await waitForWriters(db, node, to, opts);
  const total = Math.max(1, await countAll(db));
  let reencrypted = 0;
  for (let pass = 0; ; pass++) {
    const leftAtStart = Object.values(await countNotOn(db, to)).reduce((a, b) => a + b, 0);
    if (!leftAtStart) break;
    if (pass === 5) throw new Error(`${leftAtStart} master-key values are still written with an older version after 5 passes`);
    const done = total - leftAtStart;
    reencrypted += await reencryptAll(db, node.key, to, {
      batchSize: opts.batchSize,
      aborted: opts.aborted,
      onBatch: (n) => opts.progress(Math.min(99, Math.floor(((done + n) * 100) / total))),
    });
  }
  const old = (await listVersions(db)).filter((r) => r.version < to && r.state !== 'Retired').map((r) => r.version);
  if (old.length) {
    await db('kms_master_key_versions').whereIn('version', old).whereNot('state', 'Retired')
      .update({ state: 'Retired', retired: Date.now(), sealed_key: null, seal_key_label: null });
  }
  await node.refresh();
  opts.logger.info('master key rotation finished', { version: to, retired: old, reencrypted });
  return { version: to, previousversion: old.at(-1) ?? to - 1, reencrypted, retired: old };
}

/** Until every live node announces `to` as the version it writes with (a stale node is not live and writes nothing). */
async function waitForWriters(db: Db, node: MasterKeyNode, to: number, opts: { progress(p: number): Promise<void>; aborted(): boolean }): Promise<void> {
  for (;;) {
    if (opts.aborted()) throw new Error('master key rotation interrupted');
    const behind = (await liveNodes(db, node.staleMs)).filter((n) => n.write_version < to);
    if (!behind.length) return;
    await opts.progress(0);
    await new Promise((r) => setTimeout(r, 200));
  }
}
