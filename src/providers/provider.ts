import type { KeyBits } from '../core/key-bits';
import type { SecretBytes } from '../core/secret-bytes';

/** Backend protocols, as CloudStack names them (`kms_hsm_profiles.protocol`). */
export type ProviderKind = 'database' | 'pkcs11';
export const PROVIDER_KINDS: readonly ProviderKind[] = ['database', 'pkcs11'];

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
  wrap(req: { kek: KekRef; dek: SecretBytes; aad: Buffer }): Promise<Buffer>;
  /** The caller owns the result and must dispose() it. */
  unwrap(req: { kek: KekRef; blob: Buffer; aad: Buffer }): Promise<SecretBytes>;
  /** A fresh random DEK of `bytes` length, returned only wrapped. */
  generateAndWrap(req: { kek: KekRef; bytes: number; aad: Buffer }): Promise<Buffer>;
  /** Rewraps from one KEK version to another (possibly on another profile of the same kind). */
  rewrap(req: { from: { kek: KekRef; blob: Buffer; aad: Buffer }; to: { kek: KekRef; aad: Buffer } }): Promise<Buffer>;
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
