import type { Knex } from 'knex';
import { dateOrNull } from '../columns';

/**
 * Pending: introduced, held by the nodes given it, not yet written with. Active: new values use it.
 * Previous: a rotation is moving values off it. Retired: no value uses it; nodes forget it.
 */
export type MasterKeyState = 'Pending' | 'Active' | 'Previous' | 'Retired';

/** One master-key version (`kms_master_key_versions`); never the key itself, only its check value or sealed form. */
export interface MasterKeyVersion {
  version: number;
  state: MasterKeyState;
  /** A known text encrypted with the version: tells whether a key is this version's. */
  checkValue: string;
  /** The key wrapped by the HSM seal (base64), when sealed. */
  sealedKey: string | null;
  sealKeyLabel: string | null;
  created: Date;
  activated: Date | null;
  retired: Date | null;
}

export type NewMasterKeyVersion = Omit<MasterKeyVersion, 'retired'>;

const TABLE = 'kms_master_key_versions';

/** The master-key version table. Every state change is conditional on the state read, so two nodes racing change it once. */
export class MasterKeyVersionRepository {
  constructor(private readonly db: Knex) {}

  /** Every version, ascending. */
  async list(): Promise<MasterKeyVersion[]> {
    const rows: Array<Record<string, any>> = await this.db(TABLE).orderBy('version').select();
    return rows.map((r) => ({
      version: Number(r.version), state: r.state, checkValue: r.check_value, sealedKey: r.sealed_key ?? null, sealKeyLabel: r.seal_key_label ?? null,
      created: new Date(Number(r.created)), activated: dateOrNull(r.activated), retired: dateOrNull(r.retired),
    }));
  }

  /** Inserts a version; fails (unique key) when another node took the number. */
  async insert(v: NewMasterKeyVersion): Promise<void> {
    await this.db(TABLE).insert({
      version: v.version, state: v.state, check_value: v.checkValue, sealed_key: v.sealedKey, seal_key_label: v.sealKeyLabel,
      created: v.created.getTime(), activated: v.activated ? v.activated.getTime() : null,
    });
  }

  /** Pending → Active (activated at `at`); false when the version is no longer Pending. */
  async activatePending(version: number, at: Date): Promise<boolean> {
    return (await this.db(TABLE).where({ version, state: 'Pending' }).update({ state: 'Active', activated: at.getTime() })) === 1;
  }

  /** Active → Previous (a rotation starts moving values off it). */
  async demoteActive(version: number): Promise<void> {
    await this.db(TABLE).where({ version, state: 'Active' }).update({ state: 'Previous' });
  }

  /** Retires the versions that are not yet Retired: their sealed forms go too. */
  async retire(versions: readonly number[], at: Date): Promise<void> {
    if (!versions.length) return;
    await this.db(TABLE).whereIn('version', [...versions]).whereNot('state', 'Retired')
      .update({ state: 'Retired', retired: at.getTime(), sealed_key: null, seal_key_label: null });
  }

  /** Stores a version's sealed form. */
  async seal(version: number, sealedKey: string, keyLabel: string): Promise<void> {
    await this.db(TABLE).where({ version }).update({ sealed_key: sealedKey, seal_key_label: keyLabel });
  }

  /** Drops the sealed forms of the versions. */
  async unseal(versions: readonly number[]): Promise<void> {
    await this.db(TABLE).whereIn('version', [...versions]).update({ sealed_key: null, seal_key_label: null });
  }

  /** Deletes the versions that are still Pending. */
  async discardPending(versions: readonly number[]): Promise<void> {
    await this.db(TABLE).whereIn('version', [...versions]).where({ state: 'Pending' }).delete();
  }
}
