import type { Db } from '../db/knex';
import type { MasterKey } from './master-key';

const CHECK = 'kms.master.key.check';

/**
 * Stops a start with a clear message when the master key is not the one this database was set
 * up with (another KMS_MASTER_KEY, or another node's generated master.key): PINs, passphrases and
 * KEKs could not be read. The first start stores a check value encrypted under the key.
 */
export async function assertMasterKeyMatches(db: Db, masterKey: MasterKey): Promise<void> {
  let row: { value: string } | undefined = await db('configuration').where({ name: CHECK }).first('value');
  if (!row) {
    try {
      await db('configuration').insert({ name: CHECK, value: masterKey.encryptString(CHECK, CHECK), updated: Date.now() });
      return;
    } catch {
      row = await db('configuration').where({ name: CHECK }).first('value'); // another node stored it first
    }
  }
  try {
    masterKey.decryptString(row!.value, CHECK);
  } catch {
    throw new Error(
      'The master key does not match this database: it was set up with another KMS_MASTER_KEY (or master.key file). ' +
        'Every node of a deployment needs the same master key.',
    );
  }
}
