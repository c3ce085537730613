/** The answer ordering of a fresh UI login (src/api/session-order.ts), driven by hand. */
import { SessionOrder } from '../../src/api/session-order';

describe('SessionOrder', () => {
  it('holds only the first listApis of a burst, until listUsers and listCapabilities are answered, then holds nothing', async () => {
    const order = new SessionOrder();
    const zones = order.begin('s1', 'listZones');
    const apis1 = order.begin('s1', 'listApis');
    let firstDone = false;
    const first = order.after('s1', undefined, 'listApis', Date.now()).then(() => { firstDone = true; });
    const apis2 = order.begin('s1', 'listApis');
    await order.after('s1', undefined, 'listApis', Date.now());
    expect(firstDone).toBe(false);
    apis2();
    zones();
    const users = order.begin('s1', 'listUsers');
    const caps = order.begin('s1', 'listCapabilities');
    users();
    expect(firstDone).toBe(false);
    caps();
    await first;
    apis1();
    expect(order.size).toBe(0);
  });

  it("keeps a burst's record no longer than maxWaitMs after its requests are answered", async () => {
    const order = new SessionOrder({ maxWaitMs: 50 });
    for (let i = 0; i < 1000; i++) order.begin(`s${i}`, 'listZones')();
    console.log(`entries right after 1000 answered bursts: ${order.size}`);
    await new Promise((r) => setTimeout(r, 100));
    expect(order.size).toBe(0);
  });
});
