/**
 * While no database host answers, an API node answers every request with a clear 530 "database
 * unavailable" (never "Internal error"), logs it once (not a stack per request), and /readyz says
 * 503 with the database down; when the server is back, the node serves again by itself. The
 * database is a private MariaDB on its own port (killed and restarted here), so this runs the same
 * in both passes of the suite.
 */
import { ensureBuilt } from '../support/dist';
import { PrivateMariaDb } from '../support/galera';
import { deploymentEnv, HaDeployment, seedKeys } from '../support/ha-load';
import { ADMIN_KEYS } from '../support/server';
import { waitFor } from '../support/wait';

jest.setTimeout(180_000);

describe('every database host down', () => {
  let db: PrivateMariaDb;
  let d: HaDeployment;
  beforeAll(async () => {
    ensureBuilt();
    db = await PrivateMariaDb.start();
    d = await HaDeployment.create(deploymentEnv({}), [db.url], []);
    await d.start();
  });
  afterAll(async () => {
    await d?.destroy();
    await db?.destroy();
  });

  it('answers 530 "database unavailable" with one log line and /readyz 503, then serves again when the database is back', async () => {
    const api = d.apis[0]!;
    const { zone, keys } = await seedKeys(api, 1);
    await db.kill();
    const answers = [];
    for (let i = 0; i < 20; i++) {
      answers.push(await api.client.signed(ADMIN_KEYS, i % 2 ? { command: 'listZones' } : { command: 'createVolume', name: `o${i}`, zoneid: zone, kmskeyid: keys[0]! }));
    }
    for (const a of answers) {
      expect(a.status).toBe(530);
      expect(a.body.errortext).toMatch(/database unavailable; try again shortly/);
      expect(a.raw).not.toMatch(/Internal error/);
    }
    const ready = await waitFor(async () => { const r = await api.readyz(); return r.status === 503 && r; }, 20_000, '/readyz 503');
    expect(ready.body.down).toContain('database');
    const lines = api.proc!.lines();
    expect(lines.filter((l) => l.msg.startsWith('no database host answers'))).toHaveLength(1);
    expect(lines.filter((l) => /unhandled error/.test(l.msg) || /\n\s+at /.test(JSON.stringify(l)))).toEqual([]);

    await db.start();
    let last: unknown;
    await waitFor(async () => { const r = await api.readyz(); last = r.body; return r.status === 200; }, 30_000, '/readyz 200 again')
      .catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(last)} ${JSON.stringify(api.proc!.lines().slice(-6))}`); });
    const again = await api.client.signed(ADMIN_KEYS, { command: 'createVolume', name: 'back', zoneid: zone, kmskeyid: keys[0]! });
    expect(again.status).toBe(200);
    process.stderr.write(`[db outage] log lines: ${JSON.stringify(api.proc!.lines().filter((l) => /database host|no database host/.test(l.msg)).map((l) => l.msg))}\n`);
  });
});
