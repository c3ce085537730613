import type { KeyBits } from '../core/key-bits';
import type { KmsError } from '../core/errors';
import type { SecretBytes } from '../core/secret-bytes';

/** Backend protocols, as CloudStack names them (`kms_hsm_profiles.protocol`). */
export type ProviderKind = 'database' | 'pkcs11' | 'kmip';
export const PROVIDER_KINDS: readonly ProviderKind[] = ['database', 'pkcs11', 'kmip'];

export type KekBits = KeyBits;

/** An HSM profile as a provider sees it: details are decrypted (the PIN is plain here, never logged). */
export interface HsmProfileConfig {
  readonly id: string; // the profile uuid
  readonly name: string;
  readonly protocol: ProviderKind;
  readonly details: Readonly<Record<string, string>>;
}

/** Names one KEK version inside one backend. */
export interface KekRef {
  readonly profile: HsmProfileConfig;
  readonly label: string;
}

export interface WrapRequest { readonly kek: KekRef; readonly dek: SecretBytes; readonly aad: Buffer }
export interface UnwrapRequest { readonly kek: KekRef; readonly blob: Buffer; readonly aad: Buffer }
export interface GenerateRequest { readonly kek: KekRef; readonly bytes: number; readonly aad: Buffer }
export interface RewrapRequest {
  readonly from: { readonly kek: KekRef; readonly blob: Buffer; readonly aad: Buffer };
  readonly to: { readonly kek: KekRef; readonly aad: Buffer };
}

/** One item's outcome in a batch: its value, or the KmsError of that item alone. */
export type ItemResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: KmsError };

/** Optional capabilities, asked as predicates instead of `if (kind === 'pkcs11')`. */
export interface ProviderCapabilities {
  /** Rewrap within one profile keeps the plaintext DEK inside the backend. */
  readonly inBackendRewrap: boolean;
}

/**
 * A KEK backend. KEKs never leave it. Every call may run concurrently. Errors are KmsError:
 * `integrity` for a tampered or swapped blob (never retried), `auth` for a wrong PIN, `param` for a
 * bad profile, `unavailable` for a backend that is down (retryable). The `aad` binds a blob to its
 * context (KMS key, KEK version, owner): unwrapping with another aad fails as `integrity`.
 */
export interface KekProvider {
  readonly kind: ProviderKind;
  readonly capabilities: ProviderCapabilities;
  /** Problems with a profile's details, as sentences naming the detail; [] when valid. Never throws. */
  validateProfile(details: Readonly<Record<string, string>>): string[];
  /** Connects (library loads, token found, PIN accepted); throws KmsError naming the cause. */
  probe(profile: HsmProfileConfig): Promise<void>;
  createKek(kek: KekRef, bits: KekBits): Promise<void>;
  /** Idempotent: destroying an absent KEK succeeds. */
  destroyKek(kek: KekRef): Promise<void>;
  /** False only when the backend answered that the KEK is absent; a down backend throws. */
  hasKek(kek: KekRef): Promise<boolean>;
  /** The caller keeps ownership of `dek` and disposes it. */
  wrap(req: WrapRequest): Promise<Buffer>;
  /** The caller owns the result and must dispose() it. */
  unwrap(req: UnwrapRequest): Promise<SecretBytes>;
  /** A fresh random DEK of `bytes` length, returned only wrapped. */
  generateAndWrap(req: GenerateRequest): Promise<Buffer>;
  /** Rewraps from one KEK version to another (possibly on another profile of the same kind). */
  rewrap(req: RewrapRequest): Promise<Buffer>;
  /**
   * Batches: the same operations for many DEKs at once (one HSM round trip for the PKCS#11 provider).
   * Every item of a batch names the same profile (rewrapMany: every `from` the same profile, every
   * `to` the same profile); KEK labels and aads may differ per item. Resolves with one ItemResult per
   * request, same order: an item's error ('integrity' for a tampered or swapped blob, 'param' for a
   * missing KEK or a bad size) is its own and never hides the others' results. After a retryable
   * failure (device, session) the backend stops working on the batch: the items not attempted fail
   * with a retryable error saying so, for the policy to retry. Rejects only when the batch could not
   * run at all: items of different profiles ('param'), a profile that cannot be connected (its
   * details, library, token, PIN, device), a closed provider, and under withPolicy a timeout or an
   * open circuit. An empty batch resolves to []. Ownership as in the single-item methods.
   */
  wrapMany(reqs: readonly WrapRequest[]): Promise<ItemResult<Buffer>[]>;
  /** Every successful result is the caller's to dispose(). */
  unwrapMany(reqs: readonly UnwrapRequest[]): Promise<ItemResult<SecretBytes>[]>;
  generateAndWrapMany(reqs: readonly GenerateRequest[]): Promise<ItemResult<Buffer>[]>;
  rewrapMany(reqs: readonly RewrapRequest[]): Promise<ItemResult<Buffer>[]>;
  /** Drops pooled sessions and caches of a profile (after update or delete). */
  invalidateProfile(profileId: string): Promise<void>;
  /** Pooled sessions per connected profile, for backends that pool them (metrics). */
  sessionStats?(): SessionStats[];
  close(): Promise<void>;
}

/** Sessions of one profile's pool: lent out to a running operation, and open but idle. */
export interface SessionStats {
  readonly profile: string;
  readonly inUse: number;
  readonly idle: number;
}

/** Retry and timeout policy for every backend call, read from the kms.* settings at each call. */
export interface BackendPolicy {
  /** kms.operation.timeout.sec, in ms */
  readonly timeoutMs: number;
  /** kms.retry.count */
  readonly retries: number;
  /** kms.retry.delay.ms: the first back-off, doubled each retry */
  readonly baseDelayMs: number;
}
