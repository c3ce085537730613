/**
 * The main thread's handle on the threads of a PKCS#11 library: a pool of N worker threads per
 * library path (and size) in this process, shared by every provider and profile that names the
 * path. N is 1 unless the operator asks for more (KMS_PKCS11_THREADS, or a profile's `threads`
 * detail): SoftHSM (and most local modules) serialise calls on one mutex, so more threads would not
 * add throughput there, while a network HSM serves calls in parallel and needs N calls in flight.
 * The threads keep the event loop free of every PKCS#11 call, including open, login and find, and
 * make a hung call abandonable: its thread is terminated and replaced.
 *
 * Each request (an operation, or a whole batch) goes to the least busy thread of the pool (fewest
 * items outstanding; the lowest-numbered on a tie, so a lightly loaded pool starts a second thread
 * only when calls overlap). Each thread has its own sessions and gets each profile's configuration
 * (and PIN) once; what the library's threads share is in thread/shared.ts.
 *
 * Within a thread, requests are answered in order (it runs one at a time). A watchdog runs while any request
 * is outstanding: when the thread has made no progress (its heartbeat, bumped after every
 * operation and batch item, did not move) for the stall bound of an outstanding request - the
 * policy's operation timeout - the thread is declared hung: every outstanding request fails as
 * 'unavailable' (retryable), the thread is terminated (it ends once the hung call returns, if it
 * ever does) and a new one is started for the next request.
 */
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { KmsError } from '../../core/errors';
import type { Logger } from '../../core/logger';
import { StalledError } from '../policy';
import { enterLibrary, leaveLibrary } from './library-users';
import { zero } from './thread/packing';
import { fromWire, type Notice, type Operation, type ProfileConnect, type Reply, type Request, type ThreadData, type ThreadStats } from './thread/protocol';
import { SHARED_LIBRARY_BYTES } from './thread/shared';

/** A successful reply. */
export type OkReply = Extract<Reply, { ok: true }>;

/** Per-call options: the operation's abort signal and how long the thread may go without progress. */
export interface CallOptions {
  signal?: AbortSignal;
  stallMs?: number;
  /** Called while the request is outstanding whenever the thread finished an operation or item. */
  progress?: () => void;
}

interface Pending {
  resolve(r: OkReply): void;
  reject(e: Error): void;
  stallMs?: number;
  progress?: () => void;
  /** Items of the request (1 for a single operation): what the pool weighs a thread's load by. */
  weight: number;
  /** The caller stopped waiting (its operation timed out); a late reply is discarded and its secrets zeroed. */
  abandoned: boolean;
}

const ENTRY = join(__dirname, 'thread', `hsm-thread${extname(__filename)}`);
const WATCH_MS = 100;
const CLOSE_WAIT_MS = 5000;
/**
 * Replaced threads still stuck in a call, per library (over all its threads), beyond which no new
 * thread is started: a library that hangs every call (even C_Initialize) must not cost a thread per request.
 */
const MAX_HUNG_THREADS = 3;

/** What every thread of one library path in this process shares, for the life of the process. */
interface LibraryShared {
  /** thread/shared.ts: initialisation generation, per-token session counts and PIN hashes. */
  readonly buffer: SharedArrayBuffer;
  /** Threads of the library given up as hung that have not ended yet. */
  hung: number;
}

const libraries = new Map<string, LibraryShared>();

function sharedOf(path: string): LibraryShared {
  let s = libraries.get(path);
  if (!s) {
    s = { buffer: new SharedArrayBuffer(SHARED_LIBRARY_BYTES), hung: 0 };
    libraries.set(path, s);
  }
  return s;
}

/** Starts the thread; from TypeScript sources (tests, tsx) the thread registers tsx's loader first. */
function startWorker(data: ThreadData): Worker {
  if (ENTRY.endsWith('.ts')) {
    const boot = `require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(ENTRY)});`;
    return new Worker(boot, { eval: true, workerData: data });
  }
  return new Worker(ENTRY, { workerData: data });
}

export class LibraryThread {
  #worker?: Worker;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  /** Profiles (by key) whose configuration the current worker has, with its fingerprint. */
  readonly #known = new Map<string, string>();
  #heartbeat = new Int32Array(new SharedArrayBuffer(4));
  #lastBeat = 0;
  #lastBeatAt = 0;
  #watch?: NodeJS.Timeout;
  #stats: ThreadStats = {};
  #closed = false;
  readonly #outbox: Request[] = [];
  readonly #outTransfer: ArrayBuffer[] = [];

  constructor(readonly path: string, private readonly logger: Logger, private readonly lib: LibraryShared = sharedOf(path)) {}

  /** Items outstanding on this thread (running or queued), abandoned ones included: the thread still runs them. */
  get load(): number {
    let n = 0;
    for (const p of this.#pending.values()) n += p.weight;
    return n;
  }

  /** True while a worker runs (it initialised the library, or is about to). */
  get started(): boolean {
    return this.#worker !== undefined;
  }

  /** False when a call would be refused at once: closed, or no worker and too many hung ones. */
  get usable(): boolean {
    return !this.#closed && (this.#worker !== undefined || this.lib.hung < MAX_HUNG_THREADS);
  }

  /** Open and idle sessions of a profile, as of the thread's last reply. */
  stats(key: string): { open: number; idle: number } | undefined {
    return this.#stats[key];
  }

  /**
   * Runs one operation (or batch) of profile `key` on the thread. `connect` is sent only when the
   * thread does not hold the profile with this fingerprint yet (once per profile and thread: it
   * carries the PIN). Rejects with the thread's KmsError, as 'unavailable' when `signal` aborts.
   */
  call(key: string, connect: () => ProfileConnect, fingerprint: string, op: Operation, opts: CallOptions = {}): Promise<OkReply> {
    const transfer: ArrayBuffer[] = [];
    if ('data' in op) transfer.push(op.data.data);
    if (op.kind === 'wrap') transfer.push(op.secret.data);
    const fresh = this.#known.get(key) !== fingerprint || !this.#worker;
    const weight = 'labels' in op ? op.labels.length : 'fromLabels' in op ? op.fromLabels.length : 1;
    return this.#send((id) => ({ id, type: 'op', key, connect: fresh ? connect() : undefined, op }), transfer, { ...opts, weight }, () => {
      if (op.kind === 'wrap') zero(op.secret);
    }, () => this.#known.set(key, fingerprint));
  }

  /** Closes the profile's sessions in the thread (logging out with the last) and forgets its configuration. */
  async forget(key: string): Promise<void> {
    delete this.#stats[key];
    if (!this.#known.delete(key) || !this.#worker) return;
    await this.#send((id) => ({ id, type: 'forget', key }), [], {}, () => undefined, () => undefined).catch(() => undefined);
  }

  /** Closes every profile and ends the thread; C_Finalize's when `finalize`. A hung thread is terminated. */
  async close(finalize: boolean): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const id = this.#nextId++;
    const reply = new Promise<void>((resolve) => this.#pending.set(id, { resolve: () => resolve(), reject: () => resolve(), weight: 0, abandoned: false }));
    worker.ref();
    this.#post(worker, { id, type: 'close', finalize }, []);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), CLOSE_WAIT_MS); });
    const outcome = await Promise.race([reply.then(() => exited), exited, late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      this.logger.warn('HSM library thread did not close in time; terminating it', { library: this.path });
      worker.unref();
      void worker.terminate();
    }
    this.#worker = undefined;
    this.#stopWatch();
    for (const p of this.#pending.values()) p.reject(new KmsError('unavailable', `The HSM library thread of ${this.path} was closed`));
    this.#pending.clear();
  }

  #send(
    build: (id: number) => Request, transfer: ArrayBuffer[], opts: CallOptions & { weight?: number }, onUnsent: () => void, onSent: () => void,
  ): Promise<OkReply> {
    if (this.#closed) {
      onUnsent();
      return Promise.reject(new KmsError('unavailable', `The HSM library thread of ${this.path} is closed`));
    }
    if (opts.signal?.aborted) {
      onUnsent();
      return Promise.reject(new KmsError('unavailable', 'The operation timed out while waiting for the HSM'));
    }
    if (!this.#worker && this.lib.hung >= MAX_HUNG_THREADS) {
      onUnsent();
      return Promise.reject(new KmsError('unavailable', `HSM library ${this.path}: ${this.lib.hung} calls are still hung in it; not starting another thread for it`));
    }
    const worker = this.#worker ?? this.#spawn();
    const id = this.#nextId++;
    const msg = build(id);
    return new Promise<OkReply>((resolve, reject) => {
      const entry: Pending = { resolve, reject, stallMs: opts.stallMs, progress: opts.progress, weight: opts.weight ?? 0, abandoned: false };
      const onAbort = (): void => {
        entry.abandoned = true;
        reject(new KmsError('unavailable', 'The operation timed out while waiting for the HSM'));
        // Its timeout is about its stall bound: if the thread is stuck, replace it now, before the
        // caller's next request queues behind the hung call.
        this.#check(WATCH_MS);
      };
      entry.resolve = (r) => { opts.signal?.removeEventListener('abort', onAbort); resolve(r); };
      entry.reject = (e) => { opts.signal?.removeEventListener('abort', onAbort); reject(e); };
      this.#post(worker, msg, transfer);
      onSent();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (this.#pending.size === 0) {
        worker.ref(); // an operation in flight keeps the process alive; an idle thread does not
        this.#lastBeatAt = Date.now();
      }
      this.#pending.set(id, entry);
      if (entry.stallMs !== undefined) this.#startWatch();
    });
  }

  /**
   * Queues a request; the requests of one turn of the event loop go in one message, sent once every
   * promise continuation of the turn has run (process.nextTick runs after the microtask queue drains).
   */
  #post(worker: Worker, req: Request, transfer: ArrayBuffer[]): void {
    this.#outbox.push(req);
    this.#outTransfer.push(...transfer);
    if (this.#outbox.length > 1) return;
    process.nextTick(() => {
      const requests = this.#outbox.splice(0);
      const moved = this.#outTransfer.splice(0);
      if (worker !== this.#worker && !this.#closed) {
        this.#notSent(requests);
        return;
      }
      try {
        worker.postMessage(requests, moved);
      } catch (e) {
        this.#notSent(requests, new KmsError('internal', `Cannot send to the HSM library thread: ${(e as Error).message}`));
      }
    });
  }

  /** Requests whose worker went away before they were sent: zero their secrets and fail them (retryable). */
  #notSent(requests: Request[], error = new KmsError('unavailable', `HSM library thread of ${this.path} was replaced before this operation was sent`)): void {
    for (const r of requests) {
      if (r.type === 'op' && r.op.kind === 'wrap') zero(r.op.secret);
      const p = this.#pending.get(r.id);
      this.#pending.delete(r.id);
      p?.reject(error);
    }
  }

  #spawn(): Worker {
    this.#heartbeat = new Int32Array(new SharedArrayBuffer(4));
    this.#lastBeat = 0;
    this.#known.clear();
    this.#stats = {};
    const worker = startWorker({ library: this.path, heartbeat: this.#heartbeat.buffer as SharedArrayBuffer, shared: this.lib.buffer });
    worker.unref();
    worker.on('message', (m: Notice) => this.#onMessage(worker, m));
    worker.on('error', (e) => this.#lost(worker, new KmsError('internal', `HSM library thread of ${this.path} failed: ${e.message}`)));
    worker.on('exit', () => this.#lost(worker, new KmsError('unavailable', `HSM library thread of ${this.path} stopped`)));
    this.#worker = worker;
    return worker;
  }

  #onMessage(worker: Worker, m: Notice): void {
    if (m.type === 'log') {
      this.logger[m.level](m.msg, m.fields);
      return;
    }
    if (m.type === 'fatal') {
      if (worker === this.#worker) this.#lost(worker, fromWire(m.error));
      return;
    }
    if (worker === this.#worker) this.#stats = m.stats;
    for (const r of m.replies) this.#onReply(r);
    if (this.#pending.size === 0 && worker === this.#worker) {
      worker.unref();
      this.#stopWatch();
    }
  }

  #onReply(r: Reply): void {
    const entry = this.#pending.get(r.id);
    this.#pending.delete(r.id);
    if (!entry || entry.abandoned) {
      if (r.ok) zero(r.secret); // nobody is left to read it
      return;
    }
    if (r.ok) entry.resolve(r);
    else entry.reject(fromWire(r.error));
  }

  /**
   * The worker ended, crashed, hung or could not load the library: its outstanding requests fail;
   * the next call starts a new one. `queued` (when given) is the error of the requests behind the
   * first: they never ran, so they are safe to retry.
   */
  #lost(worker: Worker, error: KmsError, queued: KmsError = error): void {
    if (worker !== this.#worker) return;
    this.#worker = undefined;
    this.#known.clear();
    this.#stopWatch();
    worker.unref();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    pending.forEach((p, i) => p.reject(i === 0 ? error : queued));
  }

  #startWatch(): void {
    if (this.#watch) return;
    this.#watch = setInterval(() => this.#check(), WATCH_MS);
    this.#watch.unref();
  }

  #stopWatch(): void {
    clearInterval(this.#watch);
    this.#watch = undefined;
  }

  /**
   * Declares the thread hung when it made no progress for the smallest stall bound of the
   * outstanding requests (less `slackMs`: progress is only sampled every WATCH_MS). The request it
   * is running (the oldest: requests run in order) fails as stalled; those queued behind it as not run.
   */
  #check(slackMs = 0): void {
    const now = Date.now();
    const beat = Atomics.load(this.#heartbeat, 0);
    if (beat !== this.#lastBeat) {
      this.#lastBeat = beat;
      this.#lastBeatAt = now;
      for (const p of this.#pending.values()) p.progress?.();
      return;
    }
    let bound = Infinity;
    for (const p of this.#pending.values()) if (p.stallMs !== undefined) bound = Math.min(bound, p.stallMs);
    if (bound === Infinity) {
      this.#stopWatch();
      return;
    }
    if (now - this.#lastBeatAt < bound - slackMs) return;
    const worker = this.#worker;
    if (!worker) return;
    const secs = Math.round(bound / 100) / 10;
    this.logger.warn('HSM library thread made no progress; a call hung in the library. Terminating and replacing the thread', { library: this.path, seconds: secs });
    this.#lost(worker, new StalledError(`HSM call timed out: library ${this.path} made no progress for ${secs}s; its thread is replaced`),
      new KmsError('unavailable', `HSM call timed out: an earlier call hung in library ${this.path} for ${secs}s, so this one did not run; its thread is replaced`));
    this.lib.hung++;
    worker.once('exit', () => { this.lib.hung--; });
    void worker.terminate().catch(() => undefined);
  }
}

/** The N threads of one library: requests go to the least busy one. */
export class LibraryPool {
  readonly threads: LibraryThread[];

  constructor(readonly path: string, readonly size: number, logger: Logger) {
    const lib = sharedOf(path);
    this.threads = Array.from({ length: size }, () => new LibraryThread(path, logger, lib));
  }

  /** Runs one operation (or a whole batch) on the least busy thread; see LibraryThread.call. */
  call(key: string, connect: () => ProfileConnect, fingerprint: string, op: Operation, opts: CallOptions = {}): Promise<OkReply> {
    let best = this.threads[0];
    let bestLoad = Infinity;
    for (const t of this.threads) {
      if (!t.usable) continue;
      const load = t.load;
      if (load < bestLoad) {
        best = t;
        bestLoad = load;
      }
    }
    return best.call(key, connect, fingerprint, op, opts);
  }

  /** Open and idle sessions of a profile, summed over the threads, as of their last replies. */
  stats(key: string): { open: number; idle: number } | undefined {
    let sum: { open: number; idle: number } | undefined;
    for (const t of this.threads) {
      const st = t.stats(key);
      if (st) sum = { open: (sum?.open ?? 0) + st.open, idle: (sum?.idle ?? 0) + st.idle };
    }
    return sum;
  }

  /** Closes the profile's sessions on every thread and forgets its configuration there. */
  async forget(key: string): Promise<void> {
    await Promise.all(this.threads.map((t) => t.forget(key)));
  }

  /**
   * Closes every thread. C_Finalize is per process: when `finalize`, it is left to the last running
   * thread, called only after every other one has closed its sessions and ended.
   */
  async close(finalize: boolean): Promise<void> {
    const last = this.threads.filter((t) => t.started).pop();
    await Promise.all(this.threads.filter((t) => t !== last).map((t) => t.close(false)));
    await last?.close(finalize);
  }
}

const pools = new Map<string, { pool: LibraryPool; refs: number }>();

/**
 * The process's pool of `size` threads for `path`, started on first use (each thread when it is
 * first needed). Pools of another size for the same path are separate threads sharing the
 * library's state. Pair with releaseLibraryPool.
 */
export function acquireLibraryPool(path: string, size: number, logger: Logger): LibraryPool {
  const key = `${path}\n${size}`;
  const hit = pools.get(key);
  if (hit) {
    hit.refs++;
    return hit.pool;
  }
  const pool = new LibraryPool(path, size, logger);
  enterLibrary(path);
  pools.set(key, { pool, refs: 1 });
  return pool;
}

/** Drops one reference; the last one closes the pool (C_Finalize when no other user of the library is left). */
export async function releaseLibraryPool(pool: LibraryPool): Promise<void> {
  const key = `${pool.path}\n${pool.size}`;
  const entry = pools.get(key);
  if (!entry || entry.pool !== pool) return;
  if (--entry.refs > 0) return;
  pools.delete(key);
  await pool.close(leaveLibrary(pool.path));
}
