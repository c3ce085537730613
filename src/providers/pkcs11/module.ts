import { createHash, timingSafeEqual } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { KmsError } from '../../core/errors';
import { ckrName, libraryLoadError, pkcs11Error } from './errors';
import { enterLibrary, leaveLibrary } from './library-users';

/**
 * One PKCS#11 library loaded on the main thread (the master-key seal and tools; the KEK provider's
 * calls run on a library thread instead), shared by every main-thread user of the same path.
 * PKCS#11 login state belongs to the (application, token) pair, not to a session, so the module also
 * tracks, per slot, how many sessions are open and which PIN logged in (as a SHA-256, compared in
 * constant time): a second profile with another PIN for the same token must fail as 'auth', not
 * ride on the first profile's login.
 */
export interface Pkcs11Module {
  readonly path: string;
  readonly lib: pkcs11js.PKCS11;
  /** Open sessions and the logged-in PIN hash per slot (slot id as hex). */
  readonly slots: Map<string, { sessions: number; pinHash?: Buffer }>;
}

interface Loaded {
  module: Pkcs11Module;
  refs: number;
}

/** Main-thread copies, per process by design: C_Initialize may run only once per library per process. */
const loaded = new Map<string, Loaded>();

/**
 * Loads and C_Initialize's `path` on the calling (main) thread, with CKF_OS_LOCKING_OK (SoftHSM
 * disables its mutexes without it, and the provider's library thread may use the library at the same
 * time), or shares the copy already loaded. For the master-key seal and tools, whose calls are rare
 * and synchronous; the KEK provider runs its calls on a library thread instead (library-thread.ts).
 * Each call must be paired with one releaseModule. Throws 'provider' (not retryable) naming the path
 * when the library cannot be loaded.
 */
export function acquireModule(path: string): Pkcs11Module {
  const hit = loaded.get(path);
  if (hit) {
    hit.refs++;
    return hit.module;
  }
  const lib = new pkcs11js.PKCS11();
  try {
    lib.load(path);
  } catch (e) {
    throw libraryLoadError(path, e);
  }
  try {
    lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrName(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      try { lib.close(); } catch { /* the init failure is the error to report */ }
      throw pkcs11Error('C_Initialize', e);
    }
  }
  const module: Pkcs11Module = { path, lib, slots: new Map() };
  loaded.set(path, { module, refs: 1 });
  enterLibrary(path);
  return module;
}

/** Drops one reference; the last one unloads the library, and C_Finalize's it when no library thread uses it. */
export function releaseModule(module: Pkcs11Module): void {
  const entry = loaded.get(module.path);
  if (!entry || entry.module !== module) return;
  if (--entry.refs > 0) return;
  loaded.delete(module.path);
  try {
    if (leaveLibrary(module.path)) module.lib.C_Finalize();
    module.lib.close();
  } catch {
    // Finalising a library that is going away anyway; nothing left to recover.
  }
}

const hashPin = (pin: string): Buffer => createHash('sha256').update(pin, 'utf8').digest();

/** CK_STATE values of a session that is not logged in (CKS_RO_PUBLIC_SESSION, CKS_RW_PUBLIC_SESSION). */
const PUBLIC_STATES = new Set([0, 2]);

/**
 * Opens an R/W session on `slot` and makes sure the token is logged in as CKU_USER with `pin`.
 * CKR_USER_ALREADY_LOGGED_IN is accepted only when the same PIN logged in. Throws KmsError
 * ('auth' for a wrong PIN, without the PIN); the half-open session is closed on failure.
 */
export function openLoggedInSession(module: Pkcs11Module, slot: Buffer, pin: string): Buffer {
  const { lib } = module;
  const key = slot.toString('hex');
  let session: Buffer;
  try {
    session = lib.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  } catch (e) {
    throw pkcs11Error('C_OpenSession', e);
  }
  const state = module.slots.get(key) ?? { sessions: 0 };
  module.slots.set(key, state);
  state.sessions++;
  try {
    const mine = hashPin(pin);
    if (PUBLIC_STATES.has(lib.C_GetSessionInfo(session).state)) {
      try {
        lib.C_Login(session, pkcs11js.CKU_USER, pin);
        state.pinHash = mine;
      } catch (e) {
        if (ckrName(e) !== 'CKR_USER_ALREADY_LOGGED_IN') throw pkcs11Error('C_Login', e);
      }
    }
    if (!state.pinHash) state.pinHash = mine; // logged in by an earlier session of this process
    if (!timingSafeEqual(state.pinHash, mine)) {
      throw new KmsError('auth', 'HSM login failed: wrong PIN (another profile is logged in to this token with a different PIN)');
    }
    return session;
  } catch (e) {
    closeSession(module, slot, session, false);
    throw pkcs11Error('C_Login', e);
  }
}

/**
 * Closes a session. When it is the last one this process has open on the slot, logs out first
 * (if `logout`) and forgets the PIN; PKCS#11 would drop the login with the last session anyway.
 */
export function closeSession(module: Pkcs11Module, slot: Buffer, session: Buffer, logout: boolean): void {
  const key = slot.toString('hex');
  const state = module.slots.get(key);
  const last = !state || state.sessions <= 1;
  try {
    if (last && logout) module.lib.C_Logout(session);
  } catch {
    // Not logged in or device gone: the session is being closed regardless.
  }
  try {
    module.lib.C_CloseSession(session);
  } catch {
    // An invalid handle is already closed.
  }
  if (state) {
    state.sessions--;
    if (state.sessions <= 0) module.slots.delete(key);
  }
}
