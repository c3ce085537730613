/**
 * The body of a PKCS#11 library thread (node:worker_threads). It loads the library with its own
 * pkcs11js instance and runs each request - one whole operation or one whole batch - synchronously,
 * then replies once. Nothing here blocks the main event loop; a call that hangs in the library hangs
 * only this thread, which the main thread then terminates and replaces (see library-thread.ts).
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { KmsError } from '../../../core/errors';
import { breaksSession } from '../errors';
import { causeCkr, createKek, destroyKek, generateAndWrap, hasKek, probe, rewrap, unwrapBytes, wrapBytes } from './operations';
import { pack, unpack, zero, type Packed } from './packing';
import { toWire, type Notice, type Operation, type Reply, type Request, type ThreadData, type WireError } from './protocol';
import { SharedLibraryState } from './shared';
import { Token, type ProfileState } from './token';

/** Codes after which only C_Finalize and C_Initialize bring the library back (device gone, HSM restarted). */
const NEEDS_REINIT = new Set(['CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT', 'CKR_CRYPTOKI_NOT_INITIALIZED']);
const RECOVERY_BASE_MS = 100;
const RECOVERY_MAX_MS = 5000;
/** How long a thread waits for another one's recovery before initialising the library itself (that one may hang). */
const OWNER_WAIT_MS = 30_000;

if (!parentPort) throw new Error('hsm-thread runs only as a worker thread (see library-thread.ts)');
const port = parentPort;
const data = workerData as ThreadData;
const heartbeat = new Int32Array(data.heartbeat);
const beat = (): void => { Atomics.add(heartbeat, 0, 1); };
const shared = new SharedLibraryState(data.shared);
const token = new Token(data.library, shared);
let recovering = false;
/** This thread claimed the current recovery (it finalised the library and initialises it again). */
let recoveryOwner = false;
let closed = false;
/** The next C_Initialize attempt of a recovery; cleared on close so the thread can end at once. */
let retryTimer: NodeJS.Timeout | undefined;

const notice = (n: Notice): void => port.postMessage(n);
const log = (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>): void => notice({ type: 'log', level, msg, fields });

/** The outcome of one operation: a value, per-item results and the buffers to transfer with them. */
interface Done {
  value: boolean | null;
  errors?: Array<WireError | null>;
  data?: Packed;
  secret?: Packed;
  /** Set when an error means the library must be initialised again. */
  reinit: boolean;
}

/**
 * Runs `each` for every item of a batch on one pooled session. Stops at the first failure that a
 * retry may cure (device, session): the HSM is in trouble, so the remaining items are not attempted
 * and carry a retryable error saying so, for the caller's policy to retry. Other failures (a tampered
 * blob, a missing KEK) belong to their item only; the batch goes on (on a fresh session when the
 * failure may have broken this one). A session that cannot be opened or logged in to fails the whole
 * batch when no item ran yet, else the rest of it: a wrong PIN is never tried once per item.
 */
function runItems(p: ProfileState, n: number, each: (session: Buffer, i: number) => Buffer): { results: Buffer[]; errors: Array<WireError | null>; reinit: boolean } {
  const results: Buffer[] = [];
  const errors: Array<WireError | null> = [];
  let stop: WireError | undefined;
  let reinit = false;
  let session: Buffer | undefined;
  const fail = (e: unknown): WireError => {
    if (NEEDS_REINIT.has(causeCkr(e))) reinit = true;
    return toWire(e);
  };
  try {
    for (let i = 0; i < n; i++) {
      if (!stop && !session) {
        try {
          session = token.acquire(p);
        } catch (e) {
          if (i === 0) throw e;
          stop = fail(e);
        }
      }
      if (stop || !session) {
        results.push(Buffer.alloc(0));
        errors.push(stop!);
        continue;
      }
      try {
        results.push(each(session, i));
        errors.push(null);
      } catch (e) {
        const w = fail(e);
        results.push(Buffer.alloc(0));
        errors.push(w);
        if (breaksSession(e)) {
          token.release(p, session, true);
          session = undefined;
        }
        if (w.retryable) stop = { ...w, message: `Not attempted: an earlier item of the batch failed with a retryable error (${w.message})` };
      }
      beat();
    }
  } finally {
    if (session) token.release(p, session, false);
  }
  return { results, errors, reinit };
}

function run(p: ProfileState, op: Operation): Done {
  switch (op.kind) {
    case 'probe':
      token.withSession(p, (s) => probe(token, s));
      return { value: null, reinit: false };
    case 'createKek':
      token.withSession(p, (s) => createKek(token, s, op.label, op.bits));
      return { value: null, reinit: false };
    case 'destroyKek':
      token.withSession(p, (s) => destroyKek(token, p, s, op.label));
      return { value: null, reinit: false };
    case 'hasKek':
      return { value: token.withSession(p, (s) => hasKek(token, s, op.label)), reinit: false };
    case 'wrap': {
      const aads = unpack(op.data);
      const deks = unpack(op.secret);
      try {
        const r = runItems(p, op.labels.length, (s, i) => wrapBytes(token, p, s, op.labels[i], deks[i], aads[i]));
        return { value: null, errors: r.errors, data: pack(r.results), reinit: r.reinit };
      } finally {
        zero(op.secret);
      }
    }
    case 'unwrap': {
      const parts = unpack(op.data);
      const r = runItems(p, op.labels.length, (s, i) => unwrapBytes(token, p, s, op.labels[i], parts[2 * i], parts[2 * i + 1]));
      try {
        return { value: null, errors: r.errors, secret: pack(r.results), reinit: r.reinit };
      } finally {
        for (const plain of r.results) plain.fill(0); // the library's copies; the packed one goes to the main thread
      }
    }
    case 'generate': {
      const aads = unpack(op.data);
      const r = runItems(p, op.labels.length, (s, i) => generateAndWrap(token, p, s, op.labels[i], op.sizes[i], aads[i]));
      return { value: null, errors: r.errors, data: pack(r.results), reinit: r.reinit };
    }
    case 'rewrap': {
      const parts = unpack(op.data);
      const r = runItems(p, op.fromLabels.length, (s, i) =>
        rewrap(token, p, s, op.fromLabels[i], op.toLabels[i], parts[3 * i], parts[3 * i + 1], parts[3 * i + 2]));
      return { value: null, errors: r.errors, data: pack(r.results), reinit: r.reinit };
    }
  }
}

/** The profile's state, (re)built when the request carries its configuration. */
function profileFor(req: Extract<Request, { type: 'op' }>): ProfileState {
  const existing = token.profiles.get(req.key);
  if (req.connect && existing?.fingerprint !== req.connect.fingerprint) {
    if (existing) token.forget(req.key);
    const { name, fingerprint, profile } = req.connect;
    const state: ProfileState = { key: req.key, name, fingerprint, profile, idle: [], open: 0, handles: new Map() };
    token.profiles.set(req.key, state);
    return state;
  }
  if (!existing) throw new KmsError('internal', 'HSM thread: profile not connected');
  return existing;
}

/**
 * Finalises and initialises the library again after the device was removed, the token vanished or
 * the HSM restarted (every session and handle is then dead). Runs once however many operations saw
 * the fault; until it succeeds, operations fail at once as 'unavailable' (retryable), so callers
 * back off instead of queueing here. C_Initialize is retried with back-off until it succeeds.
 * Of the library's threads, only the first to see the fault in a generation calls C_Finalize (it
 * is per process); the others only forget their sessions and initialise too ("already initialised"
 * once the first has).
 */
function recover(): void {
  if (recovering) return;
  recovering = true;
  recoveryOwner = shared.claimFinalize(token.generation);
  if (recoveryOwner) {
    log('warn', 'HSM library lost its device or sessions; finalising and initialising it again', { library: data.library });
    try { token.lib.C_Finalize(); } catch { /* already finalised by the fault, or never was */ }
  }
  token.forgetSessions();
  const since = Date.now();
  const attempt = (n: number): void => {
    if (closed) return;
    if (!recoveryOwner && shared.recovering && Date.now() - since < OWNER_WAIT_MS) {
      // Another thread of the library finalised it and initialises it again; wait for it.
      retryTimer = setTimeout(() => attempt(n), RECOVERY_BASE_MS / 2);
      return;
    }
    try {
      token.initialize();
      recovering = false;
      if (recoveryOwner) shared.recovered();
      recoveryOwner = false;
      log('info', 'HSM library initialised again', { library: data.library, attempts: n });
    } catch (e) {
      log('warn', 'HSM library did not initialise yet', { library: data.library, attempt: n, error: toWire(e).message });
      retryTimer = setTimeout(() => attempt(n + 1), Math.min(RECOVERY_MAX_MS, RECOVERY_BASE_MS * 2 ** (n - 1)));
    }
  };
  attempt(1);
}

/** Replies not sent yet, and the buffers they move to the main thread. */
const outbox: Reply[] = [];
const outTransfer: ArrayBuffer[] = [];

function reply(r: Reply): void {
  outbox.push(r);
  if (r.ok && r.data) outTransfer.push(r.data.data);
  if (r.ok && r.secret) outTransfer.push(r.secret.data);
}

/** Sends every reply gathered so far in one message. */
function flush(): void {
  if (outbox.length === 0) return;
  const msg: Notice = { type: 'replies', replies: outbox.splice(0), stats: token.stats() };
  port.postMessage(msg, outTransfer.splice(0));
}

function closeAll(finalize: boolean): void {
  closed = true;
  clearTimeout(retryTimer);
  if (recoveryOwner) shared.recovered();
  for (const key of [...token.profiles.keys()]) token.forget(key);
  try {
    if (finalize) token.lib.C_Finalize();
  } catch {
    // Finalising a library that is going away anyway; nothing left to recover.
  }
  try { token.lib.close(); } catch { /* unloading anyway */ }
}

/** Runs one request and queues its reply. */
function handle(req: Request): void {
  beat();
  if (req.type === 'close') {
    closeAll(req.finalize);
    reply({ id: req.id, ok: true, value: null });
    flush();
    port.close();
    return;
  }
  if (req.type === 'forget') {
    token.forget(req.key);
    reply({ id: req.id, ok: true, value: null });
    return;
  }
  if (recovering) {
    if (req.op.kind === 'wrap') zero(req.op.secret);
    reply({ id: req.id, ok: false, error: toWire(new KmsError('unavailable', `HSM library ${data.library} is being initialised again`)) });
    return;
  }
  let reinit = false;
  try {
    const done = run(profileFor(req), req.op);
    reinit = done.reinit;
    reply({ id: req.id, ok: true, value: done.value, errors: done.errors, data: done.data, secret: done.secret });
  } catch (e) {
    if (req.op.kind === 'wrap') zero(req.op.secret);
    reinit = NEEDS_REINIT.has(causeCkr(e));
    reply({ id: req.id, ok: false, error: toWire(e) });
  }
  if (reinit) recover();
}

/** How long the thread keeps taking requests that arrived meanwhile before its event loop turns again. */
const GATHER_MS = 5;
/** Replies sent together at most: the main thread starts on them while this thread goes on. */
const REPLIES_PER_MESSAGE = 8;

/**
 * Runs the requests of a message, then those that arrived while they ran (read directly off the
 * port), and answers them a few at a time: each message costs both threads a wake-up, which under
 * load costs more than an operation, while answering everything at the end would leave this
 * thread idle as the main thread works through the answers and sends the next requests.
 */
port.on('message', (first: Request[]) => {
  const until = performance.now() + GATHER_MS;
  let batch: Request[] | undefined = first;
  while (batch) {
    for (const req of batch) {
      if (closed) return;
      handle(req);
      if (outbox.length >= REPLIES_PER_MESSAGE) flush();
    }
    batch = performance.now() < until ? (receiveMessageOnPort(port)?.message as Request[] | undefined) : undefined;
  }
  flush();
});

try {
  token.load();
} catch (e) {
  notice({ type: 'fatal', error: toWire(e) });
  port.close();
}
