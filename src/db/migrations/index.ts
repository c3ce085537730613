import type { Knex } from 'knex';
import * as m001 from './001_identity';
import * as m002 from './002_kms';
import * as m003 from './003_login_lockout';
import * as m004 from './004_master_key_versions';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/** Every migration, in order. Listed in code so tsx, ts-jest and compiled builds all find them. */
const MIGRATIONS: ReadonlyArray<[string, Migration]> = [
  ['001_identity', m001],
  ['002_kms', m002],
  ['003_login_lockout', m003],
  ['004_master_key_versions', m004],
];

export const migrationSource: Knex.MigrationSource<[string, Migration]> = {
  getMigrations: async () => [...MIGRATIONS],
  getMigrationName: ([name]) => name,
  getMigration: async ([, migration]) => migration,
};
