import { KmsError } from '../../src/core/errors';
import { SessionPool } from '../../src/providers/pkcs11/session-pool';
import { rejection } from './kek-provider-contract';

/** Fake sessions: numbers, with a log of opens and closes. */
function fakePool(max: number, acquireTimeoutMs = 1000) {
  let next = 0;
  const closed: Array<[number, boolean]> = [];
  const pool = new SessionPool<number>('test', { open: () => ++next, close: (s, last) => { closed.push([s, last]); } }, max, acquireTimeoutMs,
    (e) => !(e instanceof KmsError && e.kind === 'integrity'));
  return { pool, closed, opened: () => next };
}

describe('SessionPool', () => {
  it('never opens more than max sessions and never lends one session twice at once', async () => {
    const { pool, opened } = fakePool(3);
    const inUse = new Set<number>();
    let peak = 0;
    await Promise.all(Array.from({ length: 50 }, () => pool.withSession(async (s) => {
      expect(inUse.has(s)).toBe(false);
      inUse.add(s);
      peak = Math.max(peak, inUse.size);
      await new Promise((r) => setTimeout(r, 2));
      inUse.delete(s);
    })));
    expect(opened()).toBe(3);
    expect(peak).toBe(3);
  });

  it('fails a caller that waits longer than the acquire timeout as unavailable', async () => {
    const { pool } = fakePool(1, 50);
    let release!: () => void;
    const holder = pool.withSession(() => new Promise<void>((r) => { release = r; }));
    const err = await rejection(pool.withSession(async () => undefined));
    expect(err.kind).toBe('unavailable');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('within 50 ms (max_sessions 1)');
    release();
    await holder;
  });

  it('closes a session whose call failed in a way that may break it, and keeps one after an integrity failure', async () => {
    const { pool, closed } = fakePool(2);
    await rejection(pool.withSession(async () => { throw new KmsError('integrity', 'bad MAC'); }));
    expect(closed).toEqual([]);
    await rejection(pool.withSession(async () => { throw new KmsError('unavailable', 'CKR_DEVICE_ERROR'); }));
    expect(closed).toEqual([[1, true]]);
    await pool.withSession(async (s) => expect(s).toBe(2));
  });

  it('drain waits for lent sessions, closes everything and refuses later callers', async () => {
    const { pool, closed } = fakePool(2);
    let release!: () => void;
    const holder = pool.withSession(() => new Promise<void>((r) => { release = r; }));
    await pool.withSession(async () => undefined);
    let drained = false;
    const d = pool.drain().then(() => { drained = true; });
    await new Promise((r) => setTimeout(r, 10));
    expect(drained).toBe(false);
    release();
    await holder;
    await d;
    expect(closed.map(([, last]) => last)).toEqual([false, true]);
    expect(pool.size).toBe(0);
    expect((await rejection(pool.withSession(async () => undefined))).kind).toBe('unavailable');
  });
});

describe('SessionPool when the operation is abandoned (its signal aborts)', () => {
  it('closes the session of a call that was still running when its operation timed out, instead of reusing it', async () => {
    const { pool, closed } = fakePool(2);
    const abort = new AbortController();
    let finish!: () => void;
    let used = 0;
    const hung = pool.withSession((s) => { used = s; return new Promise<void>((r) => { finish = r; }); }, abort.signal);
    await new Promise((r) => setImmediate(r));
    abort.abort();
    finish();
    await hung;
    expect(closed.map(([s]) => s)).toEqual([used]);
    const next = await pool.withSession(async (s) => s);
    expect(next).not.toBe(used);
  });

  it('stops waiting for a session when the signal aborts, and the waiter does not take the next free one', async () => {
    const { pool } = fakePool(1, 60_000);
    let release!: () => void;
    const holder = pool.withSession(() => new Promise<void>((r) => { release = r; }));
    const abort = new AbortController();
    const waiting = rejection(pool.withSession(async () => 'never', abort.signal));
    abort.abort();
    const err = await waiting;
    expect(err.kind).toBe('unavailable');
    expect(err.message).toContain('Timed out waiting for an HSM session of test');
    release();
    await holder;
    await expect(pool.withSession(async () => 'served')).resolves.toBe('served');
  });
});
