/**
 * repos.transaction runs a transaction again when MariaDB rolls it back on a deadlock (1213, also
 * what a Galera certification conflict looks like), so a request never fails on one. The deadlock
 * here is real: two connections lock two rows in opposite orders. MariaDB in both test passes (it
 * is the behaviour of a MySQL server; SQLite serialises writers and never deadlocks).
 */
import { createTestDb, type TestDb } from '../support/db';
import { createRepositories } from '../../src/db/repositories';
import { transactionRetries } from '../../src/db/retry';
import { DatabaseBusyError } from '../../src/db/cluster';

const MARIADB = process.env.KMS_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';

describe('transactions retried on deadlock', () => {
  let t: TestDb;
  beforeAll(async () => { t = await createTestDb({ mysqlUrl: MARIADB }); });
  afterAll(async () => { await t.drop(); });

  const row = (name: string) => t.db('kms_lock').where({ name }).first('owner', 'expires');

  it('a transaction chosen as deadlock victim runs again and commits once; its outside work is done once', async () => {
    const repos = createRepositories(t.db);
    await t.db('kms_lock').insert([{ name: 'a', owner: 'o', expires: 1 }, { name: 'b', owner: 'o', expires: 1 }]);
    const before = transactionRetries.conflicts;
    const other = await t.db.transaction();
    let attempts = 0;
    let otherBlocked: Promise<unknown> | undefined;
    let hsmCalls = 0;
    // The "HSM result": computed once before the transaction, reused by every attempt.
    const blob = (hsmCalls++, 'wrapped-once');
    const result = await repos.transaction(async (tx) => {
      attempts++;
      await tx.locks.release('a', 'o'); // UPDATE a: this transaction holds row a
      if (attempts === 1) {
        // The other transaction writes many rows (so InnoDB picks ours as the cheaper victim),
        // takes row b, then waits for row a.
        await other('kms_lock').insert(Array.from({ length: 50 }, (_, i) => ({ name: `heavy${i}`, owner: 'x', expires: 0 })));
        await other('kms_lock').where({ name: 'b' }).update({ owner: 'other' });
        otherBlocked = other('kms_lock').where({ name: 'a' }).update({ owner: 'other' }).then(() => other.commit());
        await new Promise((r) => setTimeout(r, 200));
      }
      await tx.locks.release('b', 'other'); // UPDATE b: waits for the other, which waits for us: deadlock
      return `${blob}#${attempts}`;
    });
    await otherBlocked;
    expect(attempts).toBe(2);
    expect(result).toBe('wrapped-once#2');
    expect(hsmCalls).toBe(1);
    expect(transactionRetries.conflicts - before).toBe(1);
    // Both committed: the other's writes, and ours once (our second run saw b owned by 'other' and released it).
    expect((await row('a'))!.owner).toBe('other');
    const b = await row('b');
    expect(b!.owner).toBe('other');
    expect(Number(b!.expires)).toBeGreaterThan(1);
    expect(Number((await t.db('kms_lock').where('name', 'like', 'heavy%').count({ n: '*' }))[0]!.n)).toBe(50);
  });

  it('a transaction that conflicts every time ends as a 530 "database busy", not an internal error', async () => {
    const repos = createRepositories(t.db);
    let attempts = 0;
    const err = await repos.transaction(async () => {
      attempts++;
      throw Object.assign(new Error('Deadlock found when trying to get lock; try restarting transaction'), { errno: 1213, code: 'ER_LOCK_DEADLOCK' });
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseBusyError);
    expect((err as DatabaseBusyError).kind).toBe('unavailable');
    expect(attempts).toBe(8);
  });

  it('other errors are not retried', async () => {
    const repos = createRepositories(t.db);
    let attempts = 0;
    await expect(repos.transaction(async () => { attempts++; throw new Error('a bug'); })).rejects.toThrow('a bug');
    expect(attempts).toBe(1);
  });
});
