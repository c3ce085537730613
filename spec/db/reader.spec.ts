import { randomUUID } from 'node:crypto';
import { createReader, type Reader } from '../../src/db/reader';
import { createRepositories, type Repositories } from '../../src/db/repositories';
import { createTestDb, type TestDb } from '../support/db';

/**
 * The API path's reads outside transactions (src/db/reader.ts: a second, read-only connection on
 * SQLite, knex on MariaDB) see every committed write at once and nothing a transaction has not
 * committed, on both databases.
 */
describe('reads outside transactions', () => {
  let t: TestDb;
  let reader: Reader;
  let repos: Repositories;
  const page = { offset: 0, limit: 500 };
  const names = async () => (await repos.zones.list({}, page)).rows.map((z) => z.name);
  const zone = (name: string) => ({
    uuid: randomUUID(), name, description: null, networkType: 'Advanced', allocationState: 'Enabled', dns1: null, internalDns1: null, created: new Date(),
  });

  beforeAll(async () => {
    t = await createTestDb();
    reader = createReader(t.db);
    repos = createRepositories(t.db, { reader });
  });
  afterAll(async () => {
    reader.close();
    await t.drop();
  });

  it('see a committed write at the next read', async () => {
    await repos.zones.insert(zone('z-now'));
    expect(await names()).toContain('z-now');
  });

  it('never see what a transaction has not committed, and see it once committed', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let inserted!: () => void;
    const wasInserted = new Promise<void>((r) => { inserted = r; });
    const trx = repos.transaction(async (tx) => {
      await tx.zones.insert(zone('z-pending'));
      expect((await tx.zones.list({}, page)).rows.map((z) => z.name)).toContain('z-pending'); // the transaction reads its own write
      inserted();
      await held;
    });
    await wasInserted;
    expect(await names()).not.toContain('z-pending');
    release();
    await trx;
    expect(await names()).toContain('z-pending');
  });

  it('count the whole list past the first page, as the page itself', async () => {
    for (let i = 0; i < 5; i++) await repos.zones.insert(zone(`z-page-${i}`));
    const all = await repos.zones.list({}, page);
    const second = await repos.zones.list({}, { offset: 2, limit: 2 });
    expect(second.count).toBe(all.count);
    expect(second.rows.map((z) => z.name)).toEqual(all.rows.slice(2, 4).map((z) => z.name));
  });
});
