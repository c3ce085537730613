import { ThreadGate } from '../../src/providers/pkcs11/module';
import { rejection } from './kek-provider-contract';

describe('ThreadGate (HSM calls on the libuv thread pool)', () => {
  it('never runs more calls at once than its size, and a call abandoned while waiting takes no permit', async () => {
    const gate = new ThreadGate(2);
    let running = 0;
    let peak = 0;
    const finishers: Array<() => void> = [];
    const call = () => gate.run(() => new Promise<void>((resolve) => {
      running++;
      peak = Math.max(peak, running);
      finishers.push(() => { running--; resolve(); });
    }));
    const first = [call(), call()];
    const abort = new AbortController();
    const abandoned = rejection(gate.run(async () => 'never', abort.signal));
    const third = call();
    abort.abort();
    expect((await abandoned).kind).toBe('unavailable');
    await new Promise((r) => setImmediate(r));
    expect(running).toBe(2);
    finishers.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(running).toBe(2); // the third call got the freed permit, the abandoned one did not
    while (finishers.length) finishers.shift()!();
    await Promise.all([...first, third]);
    expect(peak).toBe(2);
  });
});
