/**
 * Messages between the main thread and a PKCS#11 library thread. Every HSM operation (a whole
 * wrap, unwrap, rewrap, ... or a whole batch of them) is one request and one reply. Requests issued
 * in the same turn of the event loop travel in one message (an array), and the thread answers the
 * requests it finds waiting in one message too: under load, one wake-up of each thread serves many
 * operations. Secrets (DEK plaintexts) travel only in the `secret` buffers, which are transferred,
 * never cloned, and zeroed by whichever side reads them.
 */
import { KmsError, type ErrorKind } from '../../../core/errors';
import type { Pkcs11Profile } from '../profile';
import type { Packed } from './packing';

/** What the thread needs to connect a profile; sent once per profile and thread of the pool (it holds the PIN). */
export interface ProfileConnect {
  readonly name: string;
  readonly fingerprint: string;
  readonly profile: Pkcs11Profile;
}

/** One operation. Batch operations name a KEK label per item. */
export type Operation =
  | { kind: 'probe' }
  | { kind: 'createKek'; label: string; bits: number }
  | { kind: 'destroyKek'; label: string }
  | { kind: 'hasKek'; label: string }
  /** data: aad per item; secret: the DEK per item. */
  | { kind: 'wrap'; labels: string[]; data: Packed; secret: Packed }
  /** data: blob, aad per item (2 parts each). */
  | { kind: 'unwrap'; labels: string[]; data: Packed }
  /** data: aad per item. */
  | { kind: 'generate'; labels: string[]; sizes: number[]; data: Packed }
  /** data: blob, from-aad, to-aad per item (3 parts each); both KEKs on this profile. */
  | { kind: 'rewrap'; fromLabels: string[]; toLabels: string[]; data: Packed };

export type Request =
  | { id: number; type: 'op'; key: string; connect?: ProfileConnect; op: Operation }
  /** Closes the profile's sessions (logs out with the last one) and forgets it. */
  | { id: number; type: 'forget'; key: string }
  /** Closes every profile; C_Finalize's when `finalize`; then the thread exits. */
  | { id: number; type: 'close'; finalize: boolean };

/** A KmsError as data (the class does not survive structured cloning). */
export interface WireError {
  kind: ErrorKind;
  message: string;
  retryable: boolean;
}

/** Open and idle sessions of each profile the thread holds, by profile key. */
export type ThreadStats = Record<string, { open: number; idle: number }>;

export type Reply =
  | {
    id: number;
    ok: true;
    /** probe, createKek, destroyKek: null; hasKek: the answer; batches: null with items. */
    value: boolean | null;
    /** Per item: null when it succeeded (its result is the item's part of data or secret), else its error. */
    errors?: Array<WireError | null>;
    /** Blobs per item (empty for failed items). */
    data?: Packed;
    /** DEK plaintexts per item (unwrap only). */
    secret?: Packed;
  }
  | { id: number; ok: false; error: WireError };

/** Messages from the thread. */
export type Notice =
  /** Replies, in request order, with the thread's session counts after them. */
  | {
    type: 'replies';
    replies: Reply[];
    stats: ThreadStats;
  }
  | { type: 'log'; level: 'info' | 'warn'; msg: string; fields: Record<string, unknown> }
  /** The library could not be loaded or initialised; the thread exits after this. */
  | { type: 'fatal'; error: WireError };

/** What the thread is started with. */
export interface ThreadData {
  readonly library: string;
  /** Int32 slot 0 is bumped after every PKCS#11 operation and message: the main thread's hang watchdog reads it. */
  readonly heartbeat: SharedArrayBuffer;
  /**
   * State shared by every thread of the library (thread/shared.ts): its initialisation generation
   * and per token the pool's session count and the hash of the PIN logged in with. A replacement
   * thread gets the same buffer, so it keeps refusing other PINs.
   */
  readonly shared: SharedArrayBuffer;
}

export function toWire(e: unknown): WireError {
  if (e instanceof KmsError) return { kind: e.kind, message: e.message, retryable: e.retryable };
  return { kind: 'internal', message: `HSM thread failed unexpectedly: ${e instanceof Error ? e.message : String(e)}`, retryable: false };
}

export function fromWire(w: WireError): KmsError {
  return new KmsError(w.kind, w.message, { retryable: w.retryable });
}
