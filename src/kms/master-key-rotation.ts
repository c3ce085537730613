import { randomBytes } from 'node:crypto';
import type { MasterKey } from '../config/master-key';
import type { Repositories } from '../db/repositories';
import type { ProtectedTable, ProtectedValue } from '../db/repositories/master-key-values';
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
  readonly table: ProtectedTable;
  aad(row: ProtectedValue): string;
}

/** Every value the master key protects (the SQL of each is in ProtectedValueRepository). A new kind of secret at rest must be added here. */
export const PROTECTED_COLUMNS: readonly ProtectedColumn[] = [
  { what: 'API secret keys', table: 'user', aad: (r) => secretAad(String(r.uuid)) },
  { what: 'HSM profile PINs and passwords', table: 'kms_hsm_profile_details', aad: (r) => detailAad(String(r.profileUuid), String(r.name)) },
  { what: 'legacy volume passphrases', table: 'passphrase', aad: (r) => passphraseAad(String(r.uuid)) },
  { what: 'database-provider KEKs', table: 'kms_database_kek_objects', aad: (r) => String(r.label) },
];

/** What the rotation reads and writes. */
type RotationRepos = Pick<Repositories, 'protectedValues' | 'masterKeyVersions' | 'nodes' | 'jobs' | 'transaction'>;

/** How many protected values are not on `version`, per column. */
export async function countNotOn(repos: Pick<Repositories, 'protectedValues'>, version: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const c of PROTECTED_COLUMNS) out[c.table] = await repos.protectedValues.count(c.table, { notOn: version });
  return out;
}

async function countAll(repos: Pick<Repositories, 'protectedValues'>): Promise<number> {
  let n = 0;
  for (const c of PROTECTED_COLUMNS) n += await repos.protectedValues.count(c.table);
  return n;
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
export async function reencryptAll(repos: Pick<Repositories, 'protectedValues'>, key: MasterKey, version: number, opts: SweepOptions): Promise<number> {
  let rewritten = 0;
  for (const c of PROTECTED_COLUMNS) {
    let lastId = 0;
    for (;;) {
      if (opts.aborted?.()) throw new Error('master key rotation interrupted');
      const rows = await repos.protectedValues.batch(c.table, opts.legacyOnly ? { legacy: true } : { notOn: version }, lastId, opts.batchSize);
      if (!rows.length) break;
      lastId = rows[rows.length - 1]!.id;
      // Only the value read is replaced (the repository's conditional UPDATE): safe to run twice.
      rewritten += await repos.protectedValues.rewrite(c.table, rows.map((r) => ({ id: r.id, from: r.value, to: key.reencrypt(r.value, c.aad(r), version) })));
      await opts.onBatch?.(rewritten);
    }
  }
  return rewritten;
}

/**
 * Values written before master keys had versions (`v1:`, no version in their authenticated data)
 * are version 1: the first start that holds version 1 rewrites them in place as `mk1:`.
 */
export async function upgradeLegacyValues(repos: Pick<Repositories, 'protectedValues'>, key: MasterKey, logger: Logger): Promise<void> {
  if (!key.holds(1)) return;
  const n = await reencryptAll(repos, key, 1, { batchSize: 500, legacyOnly: true });
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
export async function beginRotation(repos: RotationRepos, node: MasterKeyNode): Promise<RotationStart> {
  const running = await repos.jobs.unfinishedOfKind(ROTATION_JOB);
  if (running) throw paramError(`A master key rotation is already running: poll job ${running} with queryAsyncJobResult`);
  let rows = await listVersions(repos);
  const active = rows.find((r) => r.state === 'Active')!;
  const previous = rows.filter((r) => r.state === 'Previous');
  if (previous.length) return { from: previous[0]!.version, to: active.version };
  let pending = rows.filter((r) => r.state === 'Pending').at(-1);
  if (!pending && node.seal) {
    const raw = randomBytes(32);
    try {
      const version = (await registerVersion(repos, raw, 'Pending', node.seal))!;
      node.hold(version, raw);
    } finally {
      raw.fill(0);
    }
    await node.refresh();
    rows = await listVersions(repos);
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
  const lacking = (await liveNodes(repos, node.staleMs)).filter((n) => !heldBy(n).includes(pending!.version));
  if (lacking.length) {
    const how = node.seal ? 'they unwrap it from the database at their next heartbeat; retry in a few seconds' : 'give them the key in KMS_MASTER_KEY_NEXT and restart them';
    throw paramError(
      `Not every node holds the new master key (version ${pending.version}) yet: ${lacking.map(describeNode).join(', ')} lack it; ${how}`,
    );
  }
  const changed = await repos.transaction(async (tx) => {
    if (!(await tx.masterKeyVersions.activatePending(pending!.version, new Date()))) return false;
    await tx.masterKeyVersions.demoteActive(active.version);
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
  repos: RotationRepos, node: MasterKeyNode, to: number,
  opts: { batchSize: number; progress(percent: number): Promise<void>; aborted(): boolean; logger: Logger },
): Promise<RotationReport> {
  if (!node.key.holds(to)) throw new Error(`This worker does not hold master key version ${to} yet`);
  await waitForWriters(repos, node, to, opts);
  const total = Math.max(1, await countAll(repos));
  let reencrypted = 0;
  for (let pass = 0; ; pass++) {
    const leftAtStart = Object.values(await countNotOn(repos, to)).reduce((a, b) => a + b, 0);
    if (!leftAtStart) break;
    if (pass === 5) throw new Error(`${leftAtStart} master-key values are still written with an older version after 5 passes`);
    const done = total - leftAtStart;
    reencrypted += await reencryptAll(repos, node.key, to, {
      batchSize: opts.batchSize,
      aborted: opts.aborted,
      onBatch: (n) => opts.progress(Math.min(99, Math.floor(((done + n) * 100) / total))),
    });
  }
  const old = (await listVersions(repos)).filter((r) => r.version < to && r.state !== 'Retired').map((r) => r.version);
  await repos.masterKeyVersions.retire(old, new Date());
  await node.refresh();
  opts.logger.info('master key rotation finished', { version: to, retired: old, reencrypted });
  return { version: to, previousversion: old.at(-1) ?? to - 1, reencrypted, retired: old };
}

/** Until every live node announces `to` as the version it writes with (a stale node is not live and writes nothing). */
async function waitForWriters(repos: Pick<Repositories, 'nodes'>, node: MasterKeyNode, to: number, opts: { progress(p: number): Promise<void>; aborted(): boolean }): Promise<void> {
  for (;;) {
    if (opts.aborted()) throw new Error('master key rotation interrupted');
    const behind = (await liveNodes(repos, node.staleMs)).filter((n) => n.writeVersion < to);
    if (!behind.length) return;
    await opts.progress(0);
    await new Promise((r) => setTimeout(r, 200));
  }
}
