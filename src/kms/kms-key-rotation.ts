import { randomUUID } from 'node:crypto';
import type { Caller } from '../identity/caller';
import type { HsmProfile } from '../db/repositories/hsm-profiles';
import type { KekVersion } from '../db/repositories/kek-versions';
import type { KmsKey } from '../db/repositories/kms-keys';
import type { KekBits } from '../providers/provider';
import { kekLabel } from './aad';
import { paramError } from '../core/errors';
import { keyNotFound, requireEnabledProfile, requireUsableKey } from './guards';
import { changeKekState, NEW_VERSION_STATUS, WRAPPING_STATUS } from './kek-states';
import { assertKeyBits, KmsKeys, standbyKekLabel, type KmsKeyDeps } from './kms-keys';

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
  key: KmsKey;
  profile: HsmProfile;
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
    const key = requireUsableKey(await this.keys.requireAccessible(caller, uuid));
    const bits = req.keyBits ?? key.keyBits;
    assertKeyBits(bits);
    const profile = req.profileUuid
      ? await this.keys.profiles.requireForKey(caller, req.profileUuid, { accountId: key.accountId, domainId: key.domainId }, key.zoneId)
      : requireEnabledProfile(await this.deps.repos.hsmProfiles.byId(key.hsmProfileId), key.hsmProfileId);
    return { key, profile, bits };
  }

  /** The Active version number a rotation request starts from (stored in the job, for idempotent re-runs). */
  async currentVersion(keyId: number): Promise<number> {
    const versions = await this.deps.repos.kekVersions.liveOf(keyId);
    return versions.find((v) => v.status === WRAPPING_STATUS)?.versionNumber ?? 0;
  }

  /**
   * Rotates (the rotateKMSKey job). Safe to run again: a re-run (`resume`) whose rotation already
   * committed returns the new version, and a KEK left by a crashed attempt is destroyed first.
   */
  async rotate(caller: Caller, args: RotateJobArgs, opts: { resume?: boolean; owner?: string } = {}): Promise<KekVersion> {
    const owner = opts.owner ?? randomUUID();
    const lock = `kms.rotate:${args.id}`;
    if (!(await this.lock(lock, owner))) throw paramError(`KMS key ${args.id} is being rotated by another job; try again later`);
    try {
      return await this.rotateLocked(caller, args, !!opts.resume);
    } finally {
      await this.deps.repos.locks.release(lock, owner);
    }
  }

  /** One rotation per key at a time: a lease in kms_lock (a dead holder's lease expires; the same job may retake it). */
  private lock(name: string, owner: string): Promise<boolean> {
    return this.deps.repos.kmsKeys.takeLease(name, owner, ROTATE_LEASE_MS);
  }

  private async rotateLocked(caller: Caller, args: RotateJobArgs, resume: boolean): Promise<KekVersion> {
    const { repos } = this.deps;
    const { key, profile, bits } = await this.plan(caller, args.id, args);
    const versions = await repos.kekVersions.liveOf(key.id);
    const active = versions.find((v) => v.status === WRAPPING_STATUS);
    if (resume && active && active.versionNumber > args.fromVersion) return active;

    let next = await repos.kekVersions.nextNumber(key.id);
    const labelOf = (n: number) => kekLabel({ domainId: key.domainId, accountId: key.accountId, keyUuid: key.uuid }, n);
    let kek = await this.keys.kekRef(profile.id, labelOf(next));
    if (resume) await this.keys.destroyOrphan(kek);
    else {
      // A KEK no row names under the next label was made by a database this one does not remember
      // (restored from a backup taken before that rotation): keep it, take the next free number.
      for (let tries = 0; tries < 100 && (await this.keys.providerOf(profile.protocol).hasKek(kek)); tries++) kek = await this.keys.kekRef(profile.id, labelOf(++next));
    }
    const label = kek.label;
    // A key with a standby gets a standby KEK for the new version too (README "Standby HSM"): the
    // rewrap moves both wraps of every DEK to the new version together.
    const standbyProfile = key.standbyHsmProfileId ? requireEnabledProfile(await repos.hsmProfiles.byId(key.standbyHsmProfileId), key.standbyHsmProfileId) : undefined;
    const standbyKek = standbyProfile ? await this.keys.kekRef(standbyProfile.id, standbyKekLabel(label)) : undefined;
    if (resume && standbyKek) await this.keys.destroyOrphan(standbyKek);
    await this.keys.createKek(kek, bits);
    if (standbyKek) {
      try {
        await this.keys.createKek(standbyKek, bits);
      } catch (e) {
        await this.keys.destroyOrphan(kek);
        throw e;
      }
    }

    const now = new Date();
    const version = {
      uuid: randomUUID(), kmsKeyId: key.id, versionNumber: next, kekLabel: label, status: NEW_VERSION_STATUS, keyBits: bits,
      hsmProfileId: profile.id, standbyHsmProfileId: standbyProfile?.id ?? null, standbyKekLabel: standbyKek?.label ?? null, created: now,
    };
    try {
      const id = await repos.transaction(async (tx) => {
        const demoted = await changeKekState(tx.kekVersions, { liveOfKey: key.id }, 'rotate', now);
        if (active && demoted !== 1) throw paramError(`KMS key ${key.uuid} was rotated concurrently; try again`);
        const newId = await tx.kekVersions.insert(version);
        if (!(await tx.kmsKeys.moveToKek(key.id, { kekLabel: label, hsmProfileId: profile.id, keyBits: bits }))) throw keyNotFound(key.uuid);
        await this.deps.events.record({
          type: 'KMS.KEY.ROTATE', description: `Rotated KMS key ${key.name} (${key.uuid}) to version ${next} on HSM profile ${profile.name}`,
          actor: { userId: caller.userId, accountId: key.accountId, domainId: key.domainId }, resourceType: 'KmsKey', resourceId: key.uuid,
        }, tx);
        return newId;
      });
      return { ...version, id, archived: null, removed: null, wrappedKeys: 0 };
    } catch (e) {
      await this.keys.destroyOrphan(kek);
      if (standbyKek) await this.keys.destroyOrphan(standbyKek);
      throw e;
    }
  }
}
