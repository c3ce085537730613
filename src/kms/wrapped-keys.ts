import type { KmsDeps } from './deps';
import type { ItemResult, KekProvider, KekRef, ProviderKind } from '../providers/provider';
import { dekAad } from './aad';
import { isKmsError, KmsError, paramError } from '../core/errors';
import type { Repositories } from '../db/repositories';
import type { KekVersionContext } from '../db/repositories/kek-versions';
import type { WrappedKeyInput } from '../db/repositories/wrapped-keys';
import { loadProfileConfig } from './hsm-profile-details';
import { requireEnabledProfile } from './guards';
import { canUnwrapUnder, USABLE_STATUSES, WRAPPING_STATUS } from './kek-states';
import type { SecretBytes } from '../core/secret-bytes';

export type { KekVersionContext } from '../db/repositories/kek-versions';
export type { WrappedKeyInput } from '../db/repositories/wrapped-keys';

/** The KEK of a version is missing from its backend: the key material is gone (530, never retried), named by key and version, not label. */
const kekMissing = (v: Pick<KekVersionContext, 'keyUuid' | 'versionNumber'>) =>
  new KmsError('provider', `The KEK of KMS key ${v.keyUuid} version v${v.versionNumber} is missing from its backend`, { retryable: false });

/**
 * Runs a backend call on the KEK of version `v`. A backend answers an unknown KEK label as 'param'
 * (the provider contract); here that means the key material is gone, not that the request was
 * wrong. So on a 'param' failure the backend is asked whether the KEK exists: when it does not, the
 * call fails as `kekMissing`; otherwise (or when the backend cannot say) the original error stands.
 */
export async function withKekContext<T>(
  v: Pick<KekVersionContext, 'keyUuid' | 'versionNumber'>, call: Promise<T>, kek?: { provider: Pick<KekProvider, 'hasKek'>; ref: KekRef },
): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (kek && isKmsError(err) && err.kind === 'param' && (await kekGone(kek.provider, kek.ref))) throw kekMissing(v);
    throw err;
  }
}

/** True only when the backend answered that the KEK is absent (a backend that cannot say counts as present). */
const kekGone = async (provider: Pick<KekProvider, 'hasKek'>, ref: KekRef): Promise<boolean> => !(await provider.hasKek(ref).catch(() => true));

/** The version a blob was made with was archived before the blob could be stored: make it again. */
export class VersionArchivedError extends KmsError {
  constructor(message: string) {
    super('unavailable', message);
  }
}

/**
 * DEKs wrapped by KEK versions: generation, wrapping of an existing secret (migration), unwrap and
 * destruction. Every blob is bound to (KMS key, KEK version, owning volume) through its AAD.
 */
export class WrappedKeys {
  constructor(private readonly deps: Pick<KmsDeps, 'repos' | 'providers' | 'masterKey'>) {}

  /** The Active version of a key, ready to wrap with. */
  async activeVersion(keyId: number, repos: Repositories = this.deps.repos): Promise<KekVersionContext> {
    const v = await repos.kekVersions.contextOfKey(keyId, WRAPPING_STATUS);
    if (!v) throw paramError('The KMS key was deleted meanwhile');
    return v;
  }

  versionById(versionId: number, repos: Repositories = this.deps.repos): Promise<KekVersionContext | undefined> {
    return repos.kekVersions.context(versionId);
  }

  /** The KEK reference of a version (profile details decrypted; never log it); 431 when the profile is disabled. */
  async kekRef(v: KekVersionContext): Promise<KekRef> {
    const profile = requireEnabledProfile(v.profile);
    return { profile: await loadProfileConfig(this.deps.repos, this.deps.masterKey, profile), label: v.kekLabel };
  }

  /** The standby KEK reference of a version (README "Standby HSM"); undefined when it has none. 431 when the standby profile is disabled. */
  async standbyRef(v: KekVersionContext): Promise<KekRef | undefined> {
    if (!v.standby) return undefined;
    const profile = requireEnabledProfile(v.standby.profile);
    return { profile: await loadProfileConfig(this.deps.repos, this.deps.masterKey, profile), label: v.standby.kekLabel };
  }

  /**
   * The standby blob of a DEK stored as `blob` under version `v`: the DEK is unwrapped by the
   * primary and wrapped by the standby KEK of the same version, with the same AAD; the plaintext is
   * zeroed at once. Undefined when the version has no standby.
   */
  async standbyFromPrimary(v: KekVersionContext, ownerUuid: string, blob: Buffer): Promise<Buffer | undefined> {
    const standby = await this.standbyRef(v);
    if (!standby) return undefined;
    const kek = await this.kekRef(v);
    const provider = this.providerOf(kek);
    const dek = await withKekContext(v, provider.unwrap({ kek, blob, aad: this.aad(v, ownerUuid) }), { provider, ref: kek });
    try {
      const sp = this.providerOf(standby);
      return await withKekContext(v, sp.wrap({ kek: standby, dek, aad: this.aad(v, ownerUuid) }), { provider: sp, ref: standby });
    } finally {
      dek.dispose();
    }
  }

  /** A fresh DEK of `bytes`, generated and wrapped by the backend; returns the blob only. */
  async generate(v: KekVersionContext, ownerUuid: string, bytes: number): Promise<Buffer> {
    const kek = await this.kekRef(v);
    const provider = this.providerOf(kek);
    return withKekContext(v, provider.generateAndWrap({ kek, bytes, aad: this.aad(v, ownerUuid) }), { provider, ref: kek });
  }

  /** Wraps an existing secret (the caller keeps and disposes it); `kek` saves a lookup when known. */
  async wrap(v: KekVersionContext, ownerUuid: string, dek: SecretBytes, kek?: KekRef): Promise<Buffer> {
    const ref = kek ?? (await this.kekRef(v));
    const provider = this.providerOf(ref);
    return withKekContext(v, provider.wrap({ kek: ref, dek, aad: this.aad(v, ownerUuid) }), { provider, ref });
  }

  /**
   * Wraps many secrets under one version in one backend batch (one hop to the HSM's thread); the
   * caller keeps and disposes the secrets. One result per item, same order: an item's failure is
   * its own (a KEK missing from the backend is named by key and version, as `wrap` names it).
   */
  async wrapMany(v: KekVersionContext, items: ReadonlyArray<{ ownerUuid: string; dek: SecretBytes }>, kek?: KekRef): Promise<ItemResult<Buffer>[]> {
    if (!items.length) return [];
    const ref = kek ?? (await this.kekRef(v));
    const provider = this.providerOf(ref);
    const results = await provider.wrapMany(items.map((i) => ({ kek: ref, dek: i.dek, aad: this.aad(v, i.ownerUuid) })));
    if (results.some((r) => !r.ok && r.error.kind === 'param') && (await kekGone(provider, ref))) {
      return results.map((r): ItemResult<Buffer> => (r.ok || r.error.kind !== 'param' ? r : { ok: false, error: kekMissing(v) }));
    }
    return results;
  }

  /**
   * The standby wraps of secrets the caller also wrapped under `v` (README "Standby HSM"): one
   * backend batch on the standby profile; one blob per item, or null for an item (or a batch) the
   * standby could not wrap now, which the rewrap worker's standby fill wraps later. All nulls when
   * the version has no standby.
   */
  async wrapManyStandby(v: KekVersionContext, items: ReadonlyArray<{ ownerUuid: string; dek: SecretBytes }>): Promise<Array<Buffer | null>> {
    if (!v.standby || !items.length) return items.map(() => null);
    try {
      const ref = (await this.standbyRef(v))!;
      const results = await this.providerOf(ref).wrapMany(items.map((i) => ({ kek: ref, dek: i.dek, aad: this.aad(v, i.ownerUuid) })));
      return results.map((r) => (r.ok ? r.value : null));
    } catch {
      return items.map(() => null);
    }
  }

  /**
   * Reads the version row under a lock: a version archived since a blob was made with it (its KEK
   * destroyed) fails as retryable, so no DEK is ever stored under a destroyed KEK. Call it in the
   * transaction that stores the blobs.
   */
  async assertVersionUsable(tx: Repositories, v: KekVersionContext): Promise<void> {
    if (!(await tx.kekVersions.lockIfUsable(v.versionId, USABLE_STATUSES))) {
      throw new VersionArchivedError(`KEK version v${v.versionNumber} of KMS key ${v.keyUuid} was archived or deleted meanwhile; retry`);
    }
  }

  /** Inserts the wrapped-key row after assertVersionUsable; returns its id. */
  async insert(tx: Repositories, v: KekVersionContext, row: WrappedKeyInput, opts: { versionChecked?: boolean } = {}): Promise<number> {
    if (!opts.versionChecked) await this.assertVersionUsable(tx, v);
    return (await this.insertMany(tx, v, [row])).get(row.ownerUuid)!;
  }

  /**
   * Inserts several wrapped-key rows with one statement, after the caller's assertVersionUsable in
   * the same transaction; returns each owner's new row id.
   */
  insertMany(tx: Repositories, v: KekVersionContext, rows: readonly WrappedKeyInput[]): Promise<Map<string, number>> {
    return tx.wrappedKeys.insertMany(v.keyId, v.versionId, rows, new Date());
  }

  /**
   * The plaintext DEK of `wrappedKeyId` for the volume `ownerUuid`. The caller owns the result and
   * must dispose() it. A blob that belongs to another volume or was altered fails as `integrity`.
   */
  async unwrap(wrappedKeyId: number, ownerUuid: string): Promise<SecretBytes> {
    return (await this.unwrapWithSource(wrappedKeyId, ownerUuid)).dek;
  }

  /**
   * As `unwrap`, saying which backend answered. When the primary fails (its circuit open, its
   * device gone, its KEK missing) and the row has a standby blob, the standby KEK of the same
   * version unwraps it: `via` is 'standby' and `primaryError` says why. A tampered or swapped blob
   * ('integrity') never falls back.
   */
  async unwrapWithSource(wrappedKeyId: number, ownerUuid: string): Promise<{ dek: SecretBytes; via: 'primary' | 'standby'; primaryError?: string }> {
    const wk = await this.deps.repos.wrappedKeys.liveById(wrappedKeyId);
    if (!wk) throw paramError('The wrapped key of this volume no longer exists');
    if (wk.ownerUuid !== ownerUuid) {
      throw new KmsError('integrity', `Wrapped key ${wk.uuid} does not belong to volume ${ownerUuid}`);
    }
    const v = await this.versionById(wk.kekVersionId);
    if (!v || !canUnwrapUnder(v.status, v.destroyed)) throw new KmsError('integrity', `KEK version of wrapped key ${wk.uuid} is not available for decryption`);
    try {
      const kek = await this.kekRef(v);
      const provider = this.providerOf(kek);
      return { dek: await withKekContext(v, provider.unwrap({ kek, blob: wk.blob, aad: this.aad(v, ownerUuid) }), { provider, ref: kek }), via: 'primary' };
    } catch (err) {
      const standby = wk.standbyBlob && v.standby && !(isKmsError(err) && err.kind === 'integrity') ? await this.standbyRef(v).catch(() => undefined) : undefined;
      if (!standby || !wk.standbyBlob) throw err;
      const sp = this.providerOf(standby);
      const dek = await withKekContext(v, sp.unwrap({ kek: standby, blob: wk.standbyBlob, aad: this.aad(v, ownerUuid) }), { provider: sp, ref: standby });
      return { dek, via: 'standby', primaryError: isKmsError(err) ? err.message : 'internal error' };
    }
  }

  /** Crypto-shreds a wrapped key: the blob is overwritten and the row marked removed. */
  destroy(tx: Repositories, wrappedKeyId: number): Promise<void> {
    return tx.wrappedKeys.destroy(wrappedKeyId, new Date());
  }

  /** Deletes wrapped keys no volume took (a migration's leftovers), keeping the version counts exact. */
  deleteUnused(tx: Repositories, ids: readonly number[]): Promise<void> {
    return tx.wrappedKeys.deleteUnused(ids);
  }

  aad(v: Pick<KekVersionContext, 'keyUuid' | 'versionNumber'>, ownerUuid: string): Buffer {
    return dekAad({ purpose: 'volume', kmsKeyUuid: v.keyUuid, kekVersion: v.versionNumber, ownerUuid });
  }

  private providerOf(kek: KekRef): KekProvider {
    return this.deps.providers.get(kek.profile.protocol as ProviderKind);
  }
}
