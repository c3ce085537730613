import { Scheduler } from '../../src/jobs/scheduler';
import { LockRepository } from '../../src/db/repositories/locks';
import { Settings } from '../../src/config/settings';
import { ConfigurationRepository } from '../../src/db/repositories/configuration';
import { silentLogger } from '../../src/core/logger';
import { createTestDb, type TestDb } from '../support/db';
import { waitFor } from '../support/wait';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the scheduler', () => {
  let t: TestDb;
  const schedulers: Scheduler[] = [];

  /** A scheduler as one worker process has it: its own settings cache and lease owner. */
  const scheduler = (owner: string): Scheduler => {
    const s = new Scheduler({ locks: new LockRepository(t.db), settings: new Settings(new ConfigurationRepository(t.db), 0), logger: silentLogger, owner, leaseMs: 1000, pollMs: 20 });
    schedulers.push(s);
    return s;
  };

  beforeEach(async () => {
    t = await createTestDb();
  });
  afterEach(async () => {
    for (const s of schedulers.splice(0)) await s.close();
    await t.drop();
  });

  it('runs a tick every kms.rewrap.interval.ms, counted from the end of the previous tick', async () => {
    await new Settings(new ConfigurationRepository(t.db)).set('kms.rewrap.interval.ms', '200');
    const ticks: number[] = [];
    const s = scheduler('w1');
    s.add('test.tick', { intervalSetting: 'kms.rewrap.interval.ms', run: async () => { ticks.push(Date.now()); } });
    await s.start();
    await waitFor(async () => ticks.length >= 4, 5000, '4 ticks');
    const gaps = ticks.slice(1).map((at, i) => at - ticks[i]!);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(195);
      expect(gap).toBeLessThan(2500); // far below the next setting used (60 s); loose for loaded CI machines
    }
  });

  it('picks up a changed interval without a restart, and stops when it is set to 0', async () => {
    const settings = new Settings(new ConfigurationRepository(t.db));
    await settings.set('kms.rewrap.interval.ms', '60000');
    let ticks = 0;
    const s = scheduler('w1');
    s.add('test.tick', { intervalSetting: 'kms.rewrap.interval.ms', run: async () => { ticks++; } });
    await s.start();
    await waitFor(async () => ticks === 1, 5000, 'the first tick');
    await sleep(300);
    expect(ticks).toBe(1);
    await settings.set('kms.rewrap.interval.ms', '50');
    await waitFor(async () => ticks >= 4, 5000, 'ticks at the new interval');
    await settings.set('kms.rewrap.interval.ms', '0');
    await sleep(150);
    const stopped = ticks;
    await sleep(400);
    expect(ticks).toBe(stopped);
  });

  it('never runs one schedule in two workers at once, and shares the ticks between them', async () => {
    await new Settings(new ConfigurationRepository(t.db)).set('kms.rewrap.interval.ms', '30');
    let inTick = 0;
    let overlaps = 0;
    const byOwner = new Map<string, number>();
    for (const owner of ['w1', 'w2', 'w3']) {
      const s = scheduler(owner);
      s.add('test.tick', {
        intervalSetting: 'kms.rewrap.interval.ms',
        run: async () => {
          if (++inTick > 1) overlaps++;
          byOwner.set(owner, (byOwner.get(owner) ?? 0) + 1);
          await sleep(40);
          inTick--;
        },
      });
      await s.start();
    }
    await waitFor(async () => [...byOwner.values()].reduce((a, b) => a + b, 0) >= 15, 10_000, '15 ticks');
    expect(overlaps).toBe(0);
    expect(byOwner.size).toBeGreaterThan(1);
  });

  it('lets another worker take the schedule when the worker running a tick died (its lease expired)', async () => {
    await new Settings(new ConfigurationRepository(t.db)).set('kms.rewrap.interval.ms', '50');
    const locks = new LockRepository(t.db);
    expect(await locks.acquireIfDue('test.tick', 'dead-worker', 50, 300)).toBe(true);
    let ticks = 0;
    const s = scheduler('w2');
    s.add('test.tick', { intervalSetting: 'kms.rewrap.interval.ms', run: async () => { ticks++; } });
    const started = Date.now();
    await s.start();
    await waitFor(async () => ticks >= 1, 5000, 'the takeover tick');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });
});
