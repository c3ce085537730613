import { randomUUID } from 'node:crypto';
import { bool } from '../db/paging';
import type { Caller } from '../identity/caller';
import type { KekBits } from '../providers/provider';
import { kekLabel } from './aad';
import { paramError } from '../core/errors';
import { assertKeyBits, backendCall, KmsKeys, versionsOf, type KmsKeyDeps } from './kms-keys';
import type { HsmProfileRow, KekVersionRow, KmsKeyRow } from './types';

/** rotateKMSKey options: another size or another profile for the new version (default: the key's). */
export interface RotateRequest {
  keyBits?: number;
  profileUuid?: string;
}

/** What a rotation job carries: the request plus the Active version it rotates from. */
export interface RotateJobArgs extends RotateRequest {
  id: string;
  fromVersion: number;
}

/** How long one rotation may hold its key's lock (backend calls are bounded by the kms.* timeouts). */
const ROTATE_LEASE_MS = 5 * 60_000;

/** A checked rotation: the key, its target profile and size. */
interface RotationPlan {
  key: KmsKeyRow;
  profile: HsmProfileRow;
  bits: KekBits;
}

/**
 * Key rotation: a new KEK version is made in the backend, then, in ONE transaction, the Active
 * version becomes Previous and the new one Active. DEKs are rewrapped later by the rewrap worker.
 */
export class KeyRotation {
  private readonly keys: KmsKeys;

  constructor(private readonly deps: KmsKeyDeps) {
    this.keys = new KmsKeys(deps);
  }

  /**
   * The checks of rotateKMSKey, run before its job is submitted and again in the job: access (431/531),
   * key enabled ("KMS key is not enabled: <id>"), bits, and for the target profile the same access,
   * scope and enabled checks as createKMSKey.
   */
  async plan(caller: Caller, uuid: string, req: RotateRequest): Promise<RotationPlan> {
    const key = await this.keys.requireAccessible(caller, uuid);
    if (!bool(key.enabled)) throw paramError(`KMS key is not enabled: ${key.uuid}`);
    const bits = req.keyBits ?? key.key_bits;
    assertKeyBits(bits);
    let profile: HsmProfileRow;
    if (req.profileUuid) {
      profile = await this.keys.profiles.requireForKey(caller, req.profileUuid, { accountId: key.account_id, domainId: key.domain_id }, key.zone_id);
    } else {
      profile = (await this.deps.db('kms_hsm_profiles').where({ id: key.hsm_profile_id }).first()) as HsmProfileRow;
      if (!bool(profile.enabled) || profile.removed !== null) throw paramError(`HSM profile is not enabled: ${profile.name}`);
    }
    return { key, profile, bits };
  }

  /** The Active version number a rotation request starts from (stored in the job, for idempotent re-runs). */
  async currentVersion(keyId: number): Promise<number> {
    const versions = await versionsOf(this.deps.db, keyId);
    return versions.find((v) => v.status === 'Active')?.version_number ?? 0;
  }

  /**
   * Rotates (the rotateKMSKey job). Safe to run again: a re-run (`resume`) whose rotation already
   * committed returns the new version, and a KEK left by a crashed attempt is destroyed first.
   */
  async rotate(caller: Caller, args: RotateJobArgs, opts: { resume?: boolean; owner?: string } = {}): Promise<KekVersionRow> {
    const owner = opts.owner ?? randomUUID();
    const lock = `kms.rotate:${args.id}`;
    if (!(await this.lock(lock, owner))) throw paramError(`KMS key ${args.id} is being rotated by another job; try again later`);
    try {
      return await this.rotateLocked(caller, args, !!opts.resume);
    } finally {
      await this.deps.db('kms_lock').where({ name: lock, owner }).update({ expires: Date.now() });
    }
  }

  /** One rotation per key at a time: a lease in kms_lock (a dead holder's lease expires; the same job may retake it). */
  private async lock(name: string, owner: string): Promise<boolean> {
    const { db } = this.deps;
    await db('kms_lock').insert({ name, owner: '', expires: 0 }).onConflict('name').ignore();
    const now = Date.now();
    const n = await db('kms_lock').where({ name }).where((b) => b.where('expires', '<=', now).orWhere('owner', owner))
      .update({ owner, expires: now + ROTATE_LEASE_MS });
    return n === 1;
  }

  private async rotateLocked(caller: Caller, args: RotateJobArgs, resume: boolean): Promise<KekVersionRow> {
    const { db } = this.deps;
    const { key, profile, bits } = await this.plan(caller, args.id, args);
    const versions = await versionsOf(db, key.id);
    const active = versions.find((v) => v.status === 'Active');
    if (resume && active && active.version_number > args.fromVersion) return active;

    const top = await db('kms_kek_versions').where({ kms_key_id: key.id }).max({ n: 'version_number' }).first();
    const next = Number((top as { n: number | null } | undefined)?.n ?? 0) + 1;
    const label = kekLabel({ domainId: key.domain_id, accountId: key.account_id, keyUuid: key.uuid }, next);
    const provider = this.keys.providerOf(profile.protocol);
    const kek = await this.keys.kekRef(profile.id, label);
    if (resume) await this.keys.destroyOrphan(provider, kek);
    await backendCall(() => provider.createKek(kek, bits));

    const now = Date.now();
    const row = {
      uuid: randomUUID(), kms_key_id: key.id, version_number: next, kek_label: label, status: 'Active' as const, key_bits: bits,
      hsm_profile_id: profile.id, created: now, archived: null, removed: null,
    };
    try {
      const id = await db.transaction(async (trx) => {
        const demoted = await trx('kms_kek_versions').where({ kms_key_id: key.id, status: 'Active' }).whereNull('removed').update({ status: 'Previous' });
        if (active && demoted !== 1) throw paramError(`KMS key ${key.uuid} was rotated concurrently; try again`);
        const [newId] = await trx('kms_kek_versions').insert(row);
        const changed = await trx('kms_keys').where({ id: key.id }).whereNull('removed')
          .update({ kek_label: label, hsm_profile_id: profile.id, key_bits: bits });
        if (changed !== 1) throw paramError(`KMS key not found: ${key.uuid}`);
        await this.deps.events.record({
          type: 'KMS.KEY.ROTATE', description: `Rotated KMS key ${key.name} (${key.uuid}) to version ${next} on HSM profile ${profile.name}`,
          actor: { userId: caller.userId, accountId: key.account_id, domainId: key.domain_id }, resourceType: 'KmsKey', resourceId: key.uuid,
        }, trx);
        return Number(newId);
      });
      return { ...row, id };
    } catch (e) {
      await this.keys.destroyOrphan(provider, kek);
      throw e;
    }
  }
}
