import type { Knex } from 'knex';
import * as m001 from './001_identity';
import * as m002 from './002_kms';
import * as m003 from './003_login_lockout';
import * as m004 from './004_disk_offerings';
import * as m005 from './005_wrapped_key_counts';
import * as m006 from './006_async_job_request_id';
import * as m007 from './007_master_key_versions';
import * as m008 from './008_projects';
import * as m009 from './009_login_throttle';
import * as m010 from './010_wrapped_key_count_shards';
import * as m011 from './011_kms_standby';
import * as m012 from './012_scoped_settings_and_name_case';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/** Every migration, in order. Listed in code so tsx, ts-jest and compiled builds all find them. */
const MIGRATIONS: ReadonlyArray<[string, Migration]> = [
  ['001_identity', m001],
  ['002_kms', m002],
  ['003_login_lockout', m003],
  ['004_disk_offerings', m004],
  ['005_wrapped_key_counts', m005],
  ['006_async_job_request_id', m006],
  ['007_master_key_versions', m007],
  ['008_projects', m008],
  ['009_login_throttle', m009],
  ['010_wrapped_key_count_shards', m010],
  ['011_kms_standby', m011],
  ['012_scoped_settings_and_name_case', m012],
];

/** The names of every migration, in order (a backup records those its database had run). */
export const migrationNames = (): string[] => MIGRATIONS.map(([name]) => name);

export const migrationSource: Knex.MigrationSource<[string, Migration]> = {
  getMigrations: async () => [...MIGRATIONS],
  getMigrationName: ([name]) => name,
  getMigration: async ([, migration]) => migration,
};
