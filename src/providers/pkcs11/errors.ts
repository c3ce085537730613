import * as pkcs11js from 'pkcs11js';
import { KmsError, type ErrorKind } from '../../core/errors';

interface Rule {
  kind: ErrorKind;
  retryable: boolean;
  /** Replaces the generic "pkcs11 <call> failed: <CKR>" text. */
  message?: (call: string, ckr: string) => string;
}

const wrongPin = (call: string, ckr: string): string => `HSM login failed: wrong PIN (${ckr}) in ${call}`;
const deviceDown = (call: string, ckr: string): string => `HSM unavailable: pkcs11 ${call} failed: ${ckr}`;
const tampered = (call: string, ckr: string): string =>
  `Wrapped key failed authentication: pkcs11 ${call} failed: ${ckr} (tampered, or another key's aad)`;

/**
 * The one table from CKR code to error kind. Codes not listed are 'provider', not retryable.
 * Retryable means "the same call may succeed later": device and session faults, a stale object
 * handle (the cache is dropped first), resource exhaustion.
 */
const RULES: Readonly<Record<string, Rule>> = {
  CKR_PIN_INCORRECT: { kind: 'auth', retryable: false, message: wrongPin },
  CKR_PIN_LEN_RANGE: { kind: 'auth', retryable: false, message: wrongPin },
  CKR_PIN_INVALID: { kind: 'auth', retryable: false, message: wrongPin },
  CKR_PIN_LOCKED: { kind: 'auth', retryable: false, message: (c, r) => `HSM login failed: the user PIN is locked (${r}) in ${c}` },
  CKR_PIN_EXPIRED: { kind: 'auth', retryable: false, message: (c, r) => `HSM login failed: the user PIN has expired (${r}) in ${c}` },
  CKR_USER_PIN_NOT_INITIALIZED: { kind: 'auth', retryable: false, message: (c, r) => `HSM login failed: the token has no user PIN (${r}) in ${c}` },
  CKR_SLOT_ID_INVALID: { kind: 'param', retryable: false },
  CKR_TOKEN_NOT_RECOGNIZED: { kind: 'param', retryable: false },
  CKR_MECHANISM_INVALID: { kind: 'provider', retryable: false, message: (c, r) => `The HSM does not support the mechanism used by pkcs11 ${c} (${r})` },
  CKR_DEVICE_ERROR: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_DEVICE_REMOVED: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_TOKEN_NOT_PRESENT: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_SESSION_HANDLE_INVALID: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_SESSION_CLOSED: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_SESSION_COUNT: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_DEVICE_MEMORY: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_HOST_MEMORY: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_CRYPTOKI_NOT_INITIALIZED: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_USER_NOT_LOGGED_IN: { kind: 'unavailable', retryable: true, message: deviceDown },
  // CloudStack retries WRAP_UNWRAP_FAILED and KEK_OPERATION_FAILED (reference/cloudstack-kms-4.23.md §1.12).
  CKR_GENERAL_ERROR: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_FUNCTION_FAILED: { kind: 'unavailable', retryable: true, message: deviceDown },
  CKR_KEY_HANDLE_INVALID: { kind: 'provider', retryable: true },
  CKR_OBJECT_HANDLE_INVALID: { kind: 'provider', retryable: true },
  CKR_SIGNATURE_INVALID: { kind: 'integrity', retryable: false, message: tampered },
  CKR_SIGNATURE_LEN_RANGE: { kind: 'integrity', retryable: false, message: tampered },
};

/**
 * Codes that mean "this blob does not authenticate" when they come from C_UnwrapKey. Not
 * CKR_GENERAL_ERROR: the blob's MAC is verified in the HSM before C_UnwrapKey runs, so a general
 * error there is the device's fault (retryable), and a blob that failed only transiently is never
 * parked as tampered.
 */
const UNWRAP_INTEGRITY = new Set(['CKR_WRAPPED_KEY_INVALID', 'CKR_WRAPPED_KEY_LEN_RANGE', 'CKR_ENCRYPTED_DATA_INVALID']);

const CKR_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(pkcs11js)
    .filter(([k, v]) => k.startsWith('CKR_') && typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);

/** The CKR name of a pkcs11js error (e.g. 'CKR_PIN_INCORRECT'), or undefined for other errors. */
export function ckrName(e: unknown): string | undefined {
  if (!(e instanceof pkcs11js.Pkcs11Error)) {
    // Some calls (C_CreateObject in pkcs11js 2.x) throw a plain Error whose text is "CKR_NAME:code".
    const m = e instanceof Error ? /^(CKR_[A-Z0-9_]+):\d+$/.exec(e.message) : null;
    return m?.[1];
  }
  if (e.message.startsWith('CKR_')) return e.message;
  return CKR_NAMES.get(e.code) ?? `CKR_0x${e.code.toString(16)}`;
}

/**
 * Turns what a pkcs11js call threw into a KmsError naming the C_ call and the CKR code. KmsErrors pass
 * through. Error texts never contain the PIN or key bytes: only the call, the code and the label.
 */
export function pkcs11Error(call: string, e: unknown): KmsError {
  if (e instanceof KmsError) return e;
  const ckr = ckrName(e);
  if (!ckr) {
    const text = e instanceof Error ? e.message : String(e);
    return new KmsError('provider', `pkcs11 ${call} failed: ${text}`, { retryable: false, cause: e });
  }
  if (call === 'C_UnwrapKey' && UNWRAP_INTEGRITY.has(ckr)) {
    return new KmsError('integrity', tampered(call, ckr), { retryable: false, cause: e });
  }
  const rule = RULES[ckr] ?? { kind: 'provider', retryable: false };
  const message = rule.message ? rule.message(call, ckr) : `pkcs11 ${call} failed: ${ckr}`;
  return new KmsError(rule.kind, message, { retryable: rule.retryable, cause: e });
}

/** True when a failure may have left the session unusable, so the pool must close it instead of reusing it. */
export function breaksSession(e: unknown): boolean {
  if (e instanceof KmsError) return e.kind !== 'integrity' && e.kind !== 'param';
  return true;
}

/** Library load failure: 'provider', not retryable, naming the path (dlopen's reason, never a PIN). */
export function libraryLoadError(path: string, e: unknown): KmsError {
  const reason = e instanceof Error ? e.message.replace(`${path}: `, '') : String(e);
  return new KmsError('provider', `Cannot load PKCS#11 library ${path}: ${reason}`, { retryable: false, cause: e });
}
