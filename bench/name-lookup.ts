/**
 * The cost of one rule for case (migration 012): the login lookup by username and the account
 * lookup by name compare an indexed key column (the name lower-cased), against the exact comparison
 * they replaced (`column = ?`) and against `LOWER(column) = LOWER(?)` (no index serves it: the first
 * version of this change), measured in the same run on the same rows. One domain of
 * BENCH_USERS accounts with one user each (the worst case: the domain index narrows nothing).
 * Prints µs per lookup (wall) and CPU µs per lookup of this process (the database's own CPU on
 * MariaDB is not in it), and the ratio to the exact lookup.
 *
 *   npx tsx bench/name-lookup.ts                     (SQLite in a temp dir)
 *   DATABASE_URL=mysql://root@127.0.0.1:3306/kms_bench_names npx tsx bench/name-lookup.ts
 *   BENCH_USERS=20000 BENCH_LOOKUPS=2000 (defaults)
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb } from '../src/db/knex';
import { nameKey } from '../src/db/columns';
import { createRepositories } from '../src/db/repositories';

const USERS = Number(process.env.BENCH_USERS ?? 20000);
const LOOKUPS = Number(process.env.BENCH_LOOKUPS ?? 2000);

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kms-bench-names-'));
  const db = await openDb({ databaseUrl: process.env.DATABASE_URL, dataDir });
  try {
    const repos = createRepositories(db);
    const now = Date.now();
    const [domainId] = await db('domain').insert({ uuid: randomUUID(), name: `bench-${now}`, path: `/bench-${now}/`, level: 1, created: now });
    const names = Array.from({ length: USERS }, (_, i) => `user${i}-${now}`);
    for (let i = 0; i < USERS; i += 500) {
      const batch = names.slice(i, i + 500);
      await db('account').insert(batch.map((n) => ({ uuid: randomUUID(), account_name: n, account_name_key: nameKey(n), type: 0, domain_id: domainId, created: now })));
      const accounts: Array<{ id: number; account_name: string }> = await db('account').where({ domain_id: domainId }).whereIn('account_name', batch).select('id', 'account_name');
      await db('user').insert(accounts.map((a) => ({ uuid: randomUUID(), username: a.account_name, username_key: nameKey(a.account_name), password: 'x', account_id: a.id, created: now })));
    }
    const pick = () => names[Math.floor(Math.random() * names.length)]!;
    const exactLogin = (n: string) => db('user as u').join('account as a', 'a.id', 'u.account_id')
      .where({ 'u.username': n, 'a.domain_id': domainId }).whereNull('u.removed').whereNull('a.removed').first('u.*');
    const exactAccount = (n: string) => db('account').where({ domain_id: domainId, account_name: n }).whereNull('removed').first();
    const lowerLogin = (n: string) => db('user as u').join('account as a', 'a.id', 'u.account_id')
      .where({ 'a.domain_id': domainId }).whereRaw('LOWER(u.username) = LOWER(?)', [n]).whereNull('u.removed').whereNull('a.removed').first('u.*');
    const lowerAccount = (n: string) => db('account').where({ domain_id: domainId }).whereRaw('LOWER(account_name) = LOWER(?)', [n]).whereNull('removed').first();

    const measure = async (label: string, fn: (n: string) => Promise<unknown>) => {
      for (let i = 0; i < 50; i++) await fn(pick());
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < LOOKUPS; i++) if (!(await fn(pick()))) throw new Error(`${label}: not found`);
      const wallUs = Number(process.hrtime.bigint() - t0) / 1e3 / LOOKUPS;
      const cpu = process.cpuUsage(cpu0);
      return { label, wallUs, cpuUs: (cpu.user + cpu.system) / LOOKUPS };
    };
    const rows = [
      await measure('login lookup, exact (baseline)', exactLogin),
      await measure('login lookup, key (users.forLogin)', (n) => repos.users.forLogin(n.toUpperCase(), domainId)),
      await measure('login lookup, LOWER() (no index)', (n) => lowerLogin(n.toUpperCase())),
      await measure('account by name, exact (baseline)', exactAccount),
      await measure('account by name, key (accounts.byName)', (n) => repos.accounts.byName(domainId, n.toUpperCase())),
      await measure('account by name, LOWER() (no index)', (n) => lowerAccount(n.toUpperCase())),
    ];
    console.log(`${db.client.config.client}, ${USERS} accounts and users in one domain, ${LOOKUPS} lookups each`);
    for (const [i, r] of rows.entries()) {
      const base = rows[i - (i % 3)]!;
      console.log(`${r.label.padEnd(44)} ${r.wallUs.toFixed(1).padStart(8)} µs wall  ${r.cpuUs.toFixed(1).padStart(8)} µs CPU (this process)  x${(r.wallUs / base.wallUs).toFixed(2)} wall`);
    }
  } finally {
    await db.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
