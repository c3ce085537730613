/**
 * The HSM thread's view of its library: the loaded module, login state per token, and per profile
 * the slot, the open sessions and the KEK handle cache. Everything here runs synchronously on the
 * library's thread that owns this Token, one operation at a time, so no call overlaps another of this
 * thread; the library's other threads (a pool) each have their own Token and share thread/shared.ts.
 */
import { createHash } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { KmsError } from '../../../core/errors';
import { breaksSession, ckrName, libraryLoadError, pkcs11Error } from '../errors';
import { macLabel, sync } from '../mechanisms';
import type { Pkcs11Profile } from '../profile';
import type { ThreadStats } from './protocol';
import type { SharedLibraryState } from './shared';

/** Object handles of one KEK and its HMAC key, valid in every session of this process. */
export interface KekHandles {
  kek: Buffer;
  mac: Buffer;
}

/** One connected profile. `slot` is resolved lazily, and again after the library is initialised again. */
export interface ProfileState {
  readonly key: string;
  readonly name: string;
  readonly fingerprint: string;
  readonly profile: Pkcs11Profile;
  slot?: Buffer;
  readonly idle: Buffer[];
  open: number;
  readonly handles: Map<string, KekHandles>;
  /** The token's login epoch the cached handles belong to (see SharedLibraryState.epoch). */
  handlesEpoch?: number;
}

/** CK_STATE values of a session that is not logged in (CKS_RO_PUBLIC_SESSION, CKS_RW_PUBLIC_SESSION). */
const PUBLIC_STATES = new Set([0, 2]);
const hashPin = (pin: string): Buffer => createHash('sha256').update(pin, 'utf8').digest();
const slotNumber = (slot: Buffer): bigint => (slot.length >= 8 ? slot.readBigUInt64LE(0) : BigInt(slot.readUInt32LE(0)));

/**
 * The library as this thread holds it. PKCS#11 login state belongs to the (process, token) pair,
 * not to a session or a thread, so the per-slot session counts and the SHA-256 of the PIN that
 * logged in are kept in memory shared by every thread of the library (shared.ts): a second profile
 * with another PIN for the same token fails as 'auth' on any thread instead of riding on the first
 * one's login, and the token is logged out only with the pool's last session.
 */
export class Token {
  readonly lib = new pkcs11js.PKCS11();
  readonly profiles = new Map<string, ProfileState>();
  /** The initialisation generation this thread's sessions belong to. */
  generation: number;

  constructor(readonly path: string, readonly shared: SharedLibraryState) {
    this.generation = shared.generation;
  }

  /** dlopen + C_Initialize (CKF_OS_LOCKING_OK: another thread of this process may use the library too). */
  load(): void {
    try {
      this.lib.load(this.path);
    } catch (e) {
      throw libraryLoadError(this.path, e);
    }
    this.initialize();
  }

  /** C_Initialize; "already initialised" (by another thread of this process) is fine. */
  initialize(): void {
    try {
      this.lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      if (ckrName(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw pkcs11Error('C_Initialize', e);
    }
  }

  /** Forgets every session, handle and login after the library lost its device (they are all dead). */
  forgetSessions(): void {
    for (const p of this.profiles.values()) {
      p.idle.length = 0;
      p.open = 0;
      p.slot = undefined;
      p.handles.clear();
    }
    this.generation = this.shared.generation;
  }

  stats(): ThreadStats {
    return Object.fromEntries([...this.profiles.values()].map((p) => [p.key, { open: p.open, idle: p.idle.length }]));
  }

  /** Runs fn on a session of the profile (see acquire and release). */
  withSession<T>(p: ProfileState, fn: (session: Buffer) => T): T {
    const session = this.acquire(p);
    let broken = false;
    try {
      return fn(session);
    } catch (e) {
      broken = breaksSession(e);
      throw e;
    } finally {
      this.release(p, session, broken);
    }
  }

  /** An idle session of the profile, or a new logged-in one. Throws KmsError ('auth' for a wrong PIN, 'param' for a missing token). */
  acquire(p: ProfileState): Buffer {
    return p.idle.pop() ?? this.#openSession(p);
  }

  /** Returns a session to the profile's idle list, or closes it when a failure may have broken it. */
  release(p: ProfileState, session: Buffer, broken: boolean): void {
    if (broken) this.closeSession(p, session, true);
    else p.idle.push(session);
  }

  /**
   * Closes one of the profile's sessions; the last one of the library's threads on the token logs
   * out first. The token's login epoch then moves on: the library may renumber private objects
   * (SoftHSM does), so cached KEK handles of that token are dropped by every thread (kekHandles).
   */
  closeSession(p: ProfileState, session: Buffer, logout: boolean): void {
    p.open--;
    // A session of an older generation died with the library's re-initialisation; it is not counted any more.
    const left = p.slot && this.generation === this.shared.generation ? this.shared.leave(p.slot) : 1;
    try {
      if (logout && left === 0) this.lib.C_Logout(session);
    } catch {
      // Not logged in, or the device is gone: the session is closed regardless.
    }
    try {
      this.lib.C_CloseSession(session);
    } catch {
      // An invalid handle is already closed.
    }
    if (left === 0) p.handles.clear();
  }

  /** Closes the profile's idle sessions and forgets it. */
  forget(key: string): void {
    const p = this.profiles.get(key);
    if (!p) return;
    this.profiles.delete(key);
    while (p.idle.length) this.closeSession(p, p.idle.pop()!, true);
  }

  /** The KEK's handles, cached after the first lookup. Throws 'param' "KEK not found: <label>". */
  kekHandles(p: ProfileState, session: Buffer, label: string): KekHandles {
    const epoch = p.slot ? this.shared.epoch(p.slot) : 0;
    if (p.handlesEpoch !== epoch) {
      p.handles.clear();
      p.handlesEpoch = epoch;
    }
    const hit = p.handles.get(label);
    if (hit) return hit;
    const [kek] = this.findByLabel(session, label);
    const [mac] = this.findByLabel(session, macLabel(label));
    if (!kek || !mac) throw new KmsError('param', `KEK not found: ${label}${kek ? ' (its HMAC key is missing)' : ''}`);
    const handles = { kek, mac };
    p.handles.set(label, handles);
    return handles;
  }

  /** Handles of every secret key labelled `label` (normally one). */
  findByLabel(session: Buffer, label: string): Buffer[] {
    const { lib } = this;
    sync('C_FindObjectsInit', () => lib.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]));
    try {
      return sync('C_FindObjects', () => lib.C_FindObjects(session, 16));
    } finally {
      sync('C_FindObjectsFinal', () => lib.C_FindObjectsFinal(session));
    }
  }

  #openSession(p: ProfileState): Buffer {
    if (p.open >= p.profile.maxSessions) {
      // Unreachable while a thread runs operations one at a time; kept so max_sessions stays a hard bound per thread.
      throw new KmsError('unavailable', `No HSM session of HSM profile ${p.name} is free (max_sessions ${p.profile.maxSessions})`);
    }
    p.slot ??= this.#resolveSlot(p);
    const slot = p.slot;
    const { lib } = this;
    let session: Buffer;
    try {
      session = lib.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    } catch (e) {
      throw pkcs11Error('C_OpenSession', e);
    }
    p.open++;
    this.shared.enter(slot);
    try {
      const mine = hashPin(p.profile.pin);
      let loggedIn = false;
      if (PUBLIC_STATES.has(lib.C_GetSessionInfo(session).state)) {
        try {
          lib.C_Login(session, pkcs11js.CKU_USER, p.profile.pin);
          loggedIn = true;
        } catch (e) {
          if (ckrName(e) !== 'CKR_USER_ALREADY_LOGGED_IN') throw pkcs11Error('C_Login', e);
        }
      }
      // Logged in already (by another thread of the library, or of this process that told us
      // nothing): the PIN must be the one recorded for the token.
      if (!this.shared.checkPin(slot, mine, loggedIn)) {
        throw new KmsError('auth', 'HSM login failed: wrong PIN (another profile is logged in to this token with a different PIN)');
      }
      return session;
    } catch (e) {
      this.closeSession(p, session, false);
      throw pkcs11Error('C_Login', e);
    }
  }

  /** Finds the profile's token; every selector given must name the same slot. Throws 'param' naming it. */
  #resolveSlot(ps: ProfileState): Buffer {
    const { lib, path } = this;
    const p = ps.profile;
    const slots = sync('C_GetSlotList', () => lib.C_GetSlotList(true));
    const found: Array<[string, Buffer]> = [];
    if (p.tokenLabel !== undefined) {
      const want = p.tokenLabel;
      const s = slots.find((slot) => sync('C_GetTokenInfo', () => lib.C_GetTokenInfo(slot)).label.trim() === want);
      if (!s) throw new KmsError('param', `HSM profile ${ps.name}: no token labelled '${want}' in ${path}`);
      found.push([`token_label '${want}'`, s]);
    }
    if (p.slot !== undefined) {
      const want = BigInt(p.slot);
      const s = slots.find((slot) => slotNumber(slot) === want);
      if (!s) throw new KmsError('param', `HSM profile ${ps.name}: slot ${p.slot} has no token in ${path}`);
      found.push([`slot ${p.slot}`, s]);
    }
    if (p.slotListIndex !== undefined) {
      const s = slots[p.slotListIndex];
      if (!s) throw new KmsError('param', `HSM profile ${ps.name}: slot_list_index ${p.slotListIndex} is out of range (${slots.length} token slots in ${path})`);
      found.push([`slot_list_index ${p.slotListIndex}`, s]);
    }
    const [first, ...rest] = found;
    for (const [what, s] of rest) {
      if (!s.equals(first[1])) throw new KmsError('param', `HSM profile ${ps.name}: ${first[0]} and ${what} name different tokens`);
    }
    return first[1];
  }
}
