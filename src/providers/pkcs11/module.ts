import { createHash, timingSafeEqual } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { KmsError } from '../../core/errors';
import { ckrName, libraryLoadError, pkcs11Error } from './errors';

/**
 * One loaded PKCS#11 library, shared by every profile of this process that names the same path.
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
  /**
   * Bumped each time the library is finalised and initialised again: sessions and object handles of
   * an older generation are dead and must never be passed to the library again.
   */
  generation: number;
  /** Calls running on the library now (including calls abandoned at a timeout but not yet returned). */
  inFlight: number;
  /** Set while the library is being finalised and initialised again; new calls wait for it. */
  recovery?: Promise<void>;
  /** Resolved when inFlight drops to 0 (the recovery waits on these). */
  readonly idle: Array<() => void>;
}

interface Loaded {
  module: Pkcs11Module;
  refs: number;
  /** False when someone else in the process had already initialised the library. */
  ownsInit: boolean;
}

/** Per-process, by design: C_Initialize may run only once per library per process. */
const loaded = new Map<string, Loaded>();

/**
 * Loads and C_Initialize's `path` with CKF_OS_LOCKING_OK (SoftHSM disables its mutexes without it,
 * and the *Async calls run on libuv threads), or shares the copy already loaded. Each call must be
 * paired with one releaseModule. Throws 'provider' (not retryable) naming the path when the library
 * cannot be loaded.
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
  let ownsInit = true;
  try {
    lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrName(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      try { lib.close(); } catch { /* the init failure is the error to report */ }
      throw pkcs11Error('C_Initialize', e);
    }
    ownsInit = false;
  }
  const module: Pkcs11Module = { path, lib, slots: new Map(), generation: 0, inFlight: 0, idle: [] };
  loaded.set(path, { module, refs: 1, ownsInit });
  return module;
}

/** Drops one reference; the last one C_Finalize's and unloads the library. */
export function releaseModule(module: Pkcs11Module): void {
  const entry = loaded.get(module.path);
  if (!entry || entry.module !== module) return;
  if (--entry.refs > 0) return;
  loaded.delete(module.path);
  try {
    if (entry.ownsInit) module.lib.C_Finalize();
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

/**
 * Marks one call as running on the library; waits first while the library is being initialised
 * again (up to `signal`). Returns the generation the call runs on. Pair with leaveModule.
 */
export async function enterModule(module: Pkcs11Module, signal?: AbortSignal): Promise<number> {
  while (module.recovery) {
    if (signal?.aborted) throw new KmsError('unavailable', `HSM library ${module.path} is being initialised again`);
    await raceAbort(module.recovery, signal);
  }
  module.inFlight++;
  return module.generation;
}

/** Ends a call started with enterModule. */
export function leaveModule(module: Pkcs11Module): void {
  module.inFlight--;
  if (module.inFlight === 0) for (const done of module.idle.splice(0)) done();
}

/** Options of recoverModule. */
export interface RecoveryOptions {
  /** First back-off between C_Initialize attempts, doubled each time up to maxDelayMs. @defaultValue 100 */
  baseDelayMs?: number;
  /** @defaultValue 5000 */
  maxDelayMs?: number;
  /** Called once the library answers again, with the number of C_Initialize attempts. */
  onRecovered?: (attempts: number) => void;
  /** Called after each failed C_Initialize, with its error. */
  onAttemptFailed?: (error: KmsError, attempt: number) => void;
}

/**
 * Finalises and initialises the library again after the device was removed, the token vanished or
 * the HSM restarted (every session and object handle is then dead). Runs once however many calls
 * ask at the same time: a caller that saw the fault on generation `seen` joins the running recovery,
 * and one whose generation is already past does nothing. New calls wait (enterModule) and the
 * C_Finalize happens only once no call is in flight on the library. C_Initialize is retried with
 * back-off until it succeeds or the module is released.
 */
export function recoverModule(module: Pkcs11Module, seen: number, opts: RecoveryOptions = {}): Promise<void> {
  if (module.recovery) return module.recovery;
  if (module.generation !== seen) return Promise.resolve();
  const base = opts.baseDelayMs ?? 100;
  const max = opts.maxDelayMs ?? 5000;
  const run = async (): Promise<void> => {
    if (module.inFlight > 0) await new Promise<void>((resolve) => module.idle.push(resolve));
    try { module.lib.C_Finalize(); } catch { /* already finalised by the fault, or never was */ }
    module.slots.clear();
    for (let attempt = 1; ; attempt++) {
      if (loaded.get(module.path)?.module !== module) return; // released meanwhile: nothing to serve
      try {
        module.lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
        module.generation++;
        opts.onRecovered?.(attempt);
        return;
      } catch (e) {
        if (ckrName(e) === 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
          module.generation++;
          opts.onRecovered?.(attempt);
          return;
        }
        opts.onAttemptFailed?.(pkcs11Error('C_Initialize', e), attempt);
        await new Promise((r) => setTimeout(r, Math.min(max, base * 2 ** (attempt - 1))));
      }
    }
  };
  module.recovery = run().finally(() => { module.recovery = undefined; });
  return module.recovery;
}

/** Awaits `p`, or rejects as 'unavailable' when `signal` aborts first. */
export function raceAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new KmsError('unavailable', 'The operation timed out while waiting for the HSM'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Bounds the pkcs11js *Async calls running at once in this process. They run on libuv's thread pool
 * (UV_THREADPOOL_SIZE threads, 4 by default), which Node shares with file, DNS and crypto work: HSM
 * calls that hang must never take every thread. At most half the pool (at least 1) is HSM calls;
 * a call abandoned at its timeout keeps its permit until the library returns.
 */
export class ThreadGate {
  #free: number;
  readonly #waiters: Array<() => void> = [];

  constructor(readonly size: number) {
    this.#free = size;
  }

  /** Runs `start` once a permit is free (or fails as 'unavailable' when `signal` aborts first). */
  async run<T>(start: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#free > 0) this.#free--;
    else {
      let entry: (() => void) | undefined;
      try {
        await raceAbort(new Promise<void>((resolve) => { entry = resolve; this.#waiters.push(resolve); }), signal);
      } catch (e) {
        const i = entry ? this.#waiters.indexOf(entry) : -1;
        if (i >= 0) this.#waiters.splice(i, 1);
        else if (entry) this.#release(); // granted just as the signal fired: pass it on
        throw e;
      }
    }
    try {
      return await start();
    } finally {
      this.#release();
    }
  }

  #release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

const turns: Array<() => void> = [];
let turning = false;

function nextTurnTick(): void {
  turns.shift()?.();
  if (turns.length) setImmediate(nextTurnTick);
  else turning = false;
}

/**
 * Resolves in a turn of the event loop of its own. The synchronous part of an HSM call (session
 * open, login, object lookup, *Init) is short, but after a re-initialisation SoftHSM and real HSMs
 * reload their objects on first use; sixteen calls starting in one turn would then hold the loop
 * for their sum. One start per turn lets timers and sockets run in between.
 */
export function ownTurn(): Promise<void> {
  return new Promise((resolve) => {
    turns.push(resolve);
    if (!turning) {
      turning = true;
      setImmediate(nextTurnTick);
    }
  });
}

const poolSize = Number(process.env.UV_THREADPOOL_SIZE) > 0 ? Number(process.env.UV_THREADPOOL_SIZE) : 4;

/** The process's one gate for HSM calls on libuv threads. */
export const threadGate = new ThreadGate(Math.max(1, Math.floor(poolSize / 2)));
