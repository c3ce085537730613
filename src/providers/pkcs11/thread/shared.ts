/**
 * What the threads of one PKCS#11 library in this process share (a SharedArrayBuffer, one per
 * library path, kept for the life of the process): the library's initialisation generation and,
 * per token slot, the pool-wide count of open sessions, the SHA-256 of the PIN that logged in and
 * a login epoch. PKCS#11 login state belongs to the (process, token) pair, not to a thread, so:
 *  - a thread that finds the token already logged in (by another thread) compares its PIN with the
 *    hash kept here, and a profile with another PIN fails as 'auth' on every thread;
 *  - a thread logs out only with the last session of the whole pool on that token, and the epoch
 *    then moves on, telling every thread that its cached KEK handles of that token are stale;
 *  - after the device is lost, exactly one thread per generation calls C_Finalize.
 * A replacement thread is given the same buffer, so it inherits the logins (the token stays logged
 * in for the process). Only worker threads use this (Atomics.wait is refused on the main thread).
 */
import { KmsError } from '../../../core/errors';

const GEN = 0;
const LOCK = 1;
/** 1 from a thread's claim of the finalisation until its C_Initialize succeeded (or it closed). */
const RECOVERING = 2;
const HEADER = 3;
/** Token slots per library tracked at most. */
const ENTRIES = 32;
/** Words per entry: used, slot (2), sessions, epoch, has-hash, hash (8). */
const WORDS = 14;
const USED = 0;
const SLOT = 1;
const SESSIONS = 3;
const EPOCH = 4;
const HAS_HASH = 5;
const HASH = 6;

export const SHARED_LIBRARY_BYTES = 4 * (HEADER + ENTRIES * WORDS);

/** The slot handle (4 or 8 bytes) as two 32-bit words. */
function slotWords(slot: Buffer): [number, number] {
  const b = Buffer.alloc(8);
  slot.copy(b, 0, 0, Math.min(8, slot.length));
  return [b.readInt32LE(0), b.readInt32LE(4)];
}

export class SharedLibraryState {
  readonly #a: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#a = new Int32Array(buffer);
  }

  /** Bumped by each C_Finalize after a lost device; sessions of an older generation are dead. */
  get generation(): number {
    return Atomics.load(this.#a, GEN);
  }

  /**
   * True for exactly one caller per generation: that one finalises the library (and resets the
   * logins), initialises it again and then calls recovered(). Until then the other threads do not
   * call C_Initialize: before its C_Finalize it would be undone, and two C_Initialize calls at
   * once race inside some modules (SoftHSM checks and sets its "initialised" flag without a lock).
   */
  claimFinalize(generation: number): boolean {
    if (Atomics.compareExchange(this.#a, GEN, generation, generation + 1) !== generation) return false;
    Atomics.store(this.#a, RECOVERING, 1);
    this.#locked(() => {
      for (let e = 0; e < ENTRIES; e++) {
        const at = HEADER + e * WORDS;
        if (!this.#a[at + USED]) continue;
        this.#a[at + SESSIONS] = 0;
        this.#a[at + HAS_HASH] = 0;
        Atomics.add(this.#a, at + EPOCH, 1);
      }
    });
    return true;
  }

  recovered(): void {
    Atomics.store(this.#a, RECOVERING, 0);
  }

  /** True while the thread that claimed the finalisation has not initialised the library again. */
  get recovering(): boolean {
    return Atomics.load(this.#a, RECOVERING) === 1;
  }

  /** Counts a session opened on the slot. */
  enter(slot: Buffer): void {
    this.#locked(() => { this.#a[this.#entry(slot, true) + SESSIONS]++; });
  }

  /** Counts a session closed; returns how many the pool still has open on the slot (0: log out now). */
  leave(slot: Buffer): number {
    return this.#locked(() => {
      const at = this.#entry(slot, true);
      const left = Math.max(0, this.#a[at + SESSIONS] - 1);
      this.#a[at + SESSIONS] = left;
      if (left === 0) {
        this.#a[at + HAS_HASH] = 0;
        Atomics.add(this.#a, at + EPOCH, 1);
      }
      return left;
    });
  }

  /** The slot's login epoch: it moves on when the token logs out (KEK handles may be renumbered). */
  epoch(slot: Buffer): number {
    const at = this.#entry(slot, false);
    return at < 0 ? 0 : Atomics.load(this.#a, at + EPOCH);
  }

  /**
   * Records or checks the PIN the token is logged in with: `loggedIn` (this thread's C_Login just
   * succeeded: the PIN is right) records it; otherwise the first PIN seen is recorded and any other
   * is refused. Returns false when `hash` is not the recorded PIN.
   */
  checkPin(slot: Buffer, hash: Buffer, loggedIn: boolean): boolean {
    const words = new Int32Array(hash.buffer.slice(hash.byteOffset, hash.byteOffset + 32));
    return this.#locked(() => {
      const at = this.#entry(slot, true);
      if (loggedIn || !this.#a[at + HAS_HASH]) {
        this.#a.set(words, at + HASH);
        this.#a[at + HAS_HASH] = 1;
        return true;
      }
      let diff = 0;
      for (let i = 0; i < 8; i++) diff |= this.#a[at + HASH + i] ^ words[i];
      return diff === 0;
    });
  }

  /** The entry of the slot (its first word's index), created when `create`; -1 when absent. */
  #entry(slot: Buffer, create: boolean): number {
    const [lo, hi] = slotWords(slot);
    let free = -1;
    for (let e = 0; e < ENTRIES; e++) {
      const at = HEADER + e * WORDS;
      if (!Atomics.load(this.#a, at + USED)) {
        if (free < 0) free = at;
        continue;
      }
      if (this.#a[at + SLOT] === lo && this.#a[at + SLOT + 1] === hi) return at;
    }
    if (!create) return -1;
    if (free < 0) throw new KmsError('unavailable', `More than ${ENTRIES} tokens in use in one PKCS#11 library`);
    this.#a[free + SLOT] = lo;
    this.#a[free + SLOT + 1] = hi;
    Atomics.store(this.#a, free + USED, 1);
    return free;
  }

  /** Runs fn under the buffer's lock; it only ever guards a few memory words, never a PKCS#11 call. */
  #locked<T>(fn: () => T): T {
    while (Atomics.compareExchange(this.#a, LOCK, 0, 1) !== 0) Atomics.wait(this.#a, LOCK, 1, 1);
    try {
      return fn();
    } finally {
      Atomics.store(this.#a, LOCK, 0);
      Atomics.notify(this.#a, LOCK, 1);
    }
  }
}
