import { createHash } from 'node:crypto';
import { KmsError } from '../../core/errors';
import type { HsmProfileConfig } from '../provider';

/** The detail keys a PKCS#11 profile accepts; anything else is reported as a problem. */
export const PKCS11_DETAIL_KEYS = ['library', 'slot', 'slot_list_index', 'token_label', 'pin', 'max_sessions', 'threads'] as const;

/** The most threads a profile's `threads` detail may ask for per library. */
export const MAX_THREADS = 16;

/** @defaultValue of max_sessions, as in CloudStack. */
export const DEFAULT_MAX_SESSIONS = 10;

/** A validated PKCS#11 profile. `pin` is a secret: never log or print this object whole. */
export interface Pkcs11Profile {
  readonly library: string;
  readonly slot?: number;
  readonly slotListIndex?: number;
  readonly tokenLabel?: string;
  readonly pin: string;
  readonly maxSessions: number;
  /** Threads for the library (the `threads` detail); undefined: the server's default (KMS_PKCS11_THREADS). */
  readonly threads?: number;
}

const INT = /^(0|[1-9][0-9]*)$/;

/**
 * Problems with PKCS#11 profile details, as sentences naming the detail; [] when valid. `library`
 * (an absolute path) and `pin` are required, and at least one of `slot` (an integer), `slot_list_index`
 * (an integer >= 0) or `token_label` (1–32 characters); when several are given they must all name the
 * same token. `max_sessions` is an integer > 0 (default 10); `threads` an integer from 1 to 16 (the
 * library's threads in this process; default KMS_PKCS11_THREADS). Never throws; never echoes the PIN.
 */
export function pkcs11ProfileProblems(details: Readonly<Record<string, string>>): string[] {
  const problems: string[] = [];
  const allowed = new Set<string>(PKCS11_DETAIL_KEYS);
  for (const k of Object.keys(details)) {
    if (!allowed.has(k)) problems.push(`Unknown detail '${k}' (allowed: ${PKCS11_DETAIL_KEYS.join(', ')})`);
  }
  const library = details.library?.trim();
  if (!library) problems.push("Detail 'library' is required: the path of the PKCS#11 library (.so)");
  else if (!library.startsWith('/')) problems.push("Detail 'library' must be an absolute path");
  const { slot, slot_list_index: index, token_label: label, pin, max_sessions: max, threads } = details;
  if (slot === undefined && index === undefined && label === undefined) {
    problems.push("One of the details 'slot', 'slot_list_index' or 'token_label' is required to find the token");
  }
  if (slot !== undefined && !INT.test(slot.trim())) problems.push("Detail 'slot' must be an integer slot id");
  if (index !== undefined && !INT.test(index.trim())) problems.push("Detail 'slot_list_index' must be an integer >= 0");
  if (label !== undefined && (label.trim() === '' || label.trim().length > 32)) {
    problems.push("Detail 'token_label' must be 1 to 32 characters");
  }
  if (pin === undefined || pin === '') problems.push("Detail 'pin' is required: the token's user PIN");
  if (max !== undefined && (!INT.test(max.trim()) || Number(max) < 1)) problems.push("Detail 'max_sessions' must be an integer > 0");
  if (threads !== undefined && (!INT.test(threads.trim()) || Number(threads) < 1 || Number(threads) > MAX_THREADS)) {
    problems.push(`Detail 'threads' must be an integer from 1 to ${MAX_THREADS}`);
  }
  return problems;
}

/** The typed profile; throws KmsError('param') listing every problem when the details are invalid. */
export function parsePkcs11Profile(profileName: string, details: Readonly<Record<string, string>>): Pkcs11Profile {
  const problems = pkcs11ProfileProblems(details);
  if (problems.length) throw new KmsError('param', `HSM profile ${profileName} is invalid: ${problems.join('; ')}`);
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v.trim()));
  return {
    library: details.library.trim(),
    slot: num(details.slot),
    slotListIndex: num(details.slot_list_index),
    tokenLabel: details.token_label?.trim(),
    pin: details.pin,
    maxSessions: num(details.max_sessions) ?? DEFAULT_MAX_SESSIONS,
    threads: num(details.threads),
  };
}

/** A digest of the details, used only to notice a change; it is never logged or stored. */
export function fingerprintOf(profile: HsmProfileConfig): string {
  const sorted = Object.keys(profile.details).sort().map((k) => [k, profile.details[k]]);
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex');
}
