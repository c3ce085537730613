import type { Knex } from 'knex';
import type { OwnerScope } from '../../core/owner-scope';
import { applyOwnerScope } from '../owner-scope';
import { type Page, type PageWindow } from '../paging';
import { pagedRows } from '../reader';
import { bool, dateOrNull } from '../columns';

/** An HSM profile: the connection settings of a KEK backend. `accountId` null with a `domainId` is a domain-scoped profile. */
export interface HsmProfile {
  id: number;
  uuid: string;
  name: string;
  protocol: string;
  accountId: number | null;
  domainId: number | null;
  zoneId: number | null;
  vendorName: string | null;
  enabled: boolean;
  isPublic: boolean;
  created: Date;
  removed: Date | null;
}

/** A profile with the names responses show. */
export interface HsmProfileView extends HsmProfile {
  accountName: string | null;
  accountUuid: string | null;
  /** The project owning the profile through its account, or null. */
  projectUuid: string | null;
  projectName: string | null;
  domainUuid: string | null;
  domainName: string | null;
  domainPath: string | null;
  zoneUuid: string | null;
  zoneName: string | null;
}

/** One detail of a profile; a sensitive value is ciphertext under the master key. */
export interface HsmProfileDetail {
  profileId: number;
  name: string;
  value: string;
}

/** A new profile row. */
export type NewHsmProfile = Omit<HsmProfile, 'id' | 'removed'>;

/** listHSMProfiles filters. `shared` adds the profiles every caller of a domain may use besides the scope's own. */
export interface HsmProfileListFilter {
  uuid?: string;
  /** Profiles of this zone or of every zone. */
  zoneId?: number;
  protocol?: string;
  enabled?: boolean;
  isPublic?: boolean;
  keyword?: string;
  shared?: { domainId: number; withPublic: boolean };
}

const idOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function toProfile(r: Record<string, any>): HsmProfile {
  return {
    id: Number(r.id), uuid: r.uuid, name: r.name, protocol: r.protocol, accountId: idOrNull(r.account_id), domainId: idOrNull(r.domain_id),
    zoneId: idOrNull(r.zone_id), vendorName: r.vendor_name ?? null, enabled: bool(r.enabled), isPublic: bool(r.is_public),
    created: new Date(Number(r.created)), removed: dateOrNull(r.removed),
  };
}

function toView(r: Record<string, any>): HsmProfileView {
  return {
    ...toProfile(r), accountName: r.account_name ?? null, accountUuid: r.account_uuid ?? null, domainUuid: r.domain_uuid ?? null,
    domainName: r.domain_name ?? null, domainPath: r.domain_path ?? null, zoneUuid: r.zone_uuid ?? null, zoneName: r.zone_name ?? null,
    projectUuid: r.project_uuid ?? null, projectName: r.project_name ?? null,
  };
}

const count = async (q: Knex.QueryBuilder): Promise<number> => Number(((await q.count({ n: '*' }).first()) as { n: number | string } | undefined)?.n ?? 0);

/** `kms_hsm_profiles` and `kms_hsm_profile_details`. */
export class HsmProfileRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  /** A live profile by uuid. */
  async byUuid(uuid: string): Promise<HsmProfile | undefined> {
    const r = await this.db('kms_hsm_profiles').where({ uuid }).whereNull('removed').first();
    return r && toProfile(r);
  }

  /** A profile by uuid, removed or not. */
  async anyByUuid(uuid: string): Promise<HsmProfile | undefined> {
    const r = await this.db('kms_hsm_profiles').where({ uuid }).first();
    return r && toProfile(r);
  }

  /** A profile by id, removed or not. */
  async byId(id: number): Promise<HsmProfile | undefined> {
    const r = await this.db('kms_hsm_profiles').where({ id }).first();
    return r && toProfile(r);
  }

  /** Every live enabled profile, by id (readiness probes them). */
  async enabled(): Promise<HsmProfile[]> {
    return (await this.db('kms_hsm_profiles').whereNull('removed').where({ enabled: true }).orderBy('id')).map(toProfile);
  }

  /** The response view of one live profile. */
  async view(id: number): Promise<HsmProfileView | undefined> {
    const r = await this.viewQuery().where('p.id', id).first();
    return r && toView(r);
  }

  /** One page of the live profiles in `scope` (plus the shared ones) matching the filter, by id, and the total. */
  async list(scope: OwnerScope, f: HsmProfileListFilter, page: PageWindow): Promise<Page<HsmProfileView>> {
    const cols = { accountCol: 'p.account_id', domainCol: 'p.domain_id' };
    const q = this.viewQuery().orderBy('p.id');
    if (scope.kind === 'all' || !f.shared) applyOwnerScope(q, scope, cols);
    else {
      const shared = f.shared;
      q.where((b) => {
        b.where((s) => { applyOwnerScope(s, scope, cols); });
        b.orWhere((s) => s.whereNull('p.account_id').where('p.domain_id', shared.domainId));
        if (shared.withPublic) b.orWhere('p.is_public', true);
      });
    }
    if (f.uuid) q.where('p.uuid', f.uuid);
    if (f.zoneId !== undefined) q.where((b) => b.where('p.zone_id', f.zoneId!).orWhereNull('p.zone_id'));
    if (f.protocol) q.where('p.protocol', f.protocol);
    if (f.enabled !== undefined) q.where('p.enabled', f.enabled);
    if (f.isPublic !== undefined) q.where('p.is_public', f.isPublic);
    if (f.keyword) q.where('p.name', 'like', `%${f.keyword}%`);
    const { rows, count: n } = await pagedRows<Record<string, any>>(q, page);
    return { rows: rows.map(toView), count: n };
  }

  /** The details of several profiles by profile id, by name (values as stored: mask before showing). */
  async detailsOf(profileIds: readonly number[]): Promise<Map<number, HsmProfileDetail[]>> {
    const out = new Map<number, HsmProfileDetail[]>();
    if (!profileIds.length) return out;
    const rows: Array<{ profile_id: number; name: string; value: string }> = await this.db('kms_hsm_profile_details').whereIn('profile_id', [...profileIds]).orderBy('name');
    for (const r of rows) {
      const id = Number(r.profile_id);
      out.set(id, [...(out.get(id) ?? []), { profileId: id, name: r.name, value: r.value }]);
    }
    return out;
  }

  /** The stored details of one profile (unordered). */
  async details(profileId: number): Promise<Array<{ name: string; value: string }>> {
    return this.db('kms_hsm_profile_details').where({ profile_id: profileId }).select('name', 'value');
  }

  /** Whether a live profile of this owner (an account, or a domain alone) has this name. */
  async nameTaken(name: string, owner: { accountId: number | null; domainId: number | null }): Promise<boolean> {
    const q = this.db('kms_hsm_profiles').where({ name }).whereNull('removed');
    if (owner.accountId === null) q.whereNull('account_id').where('domain_id', owner.domainId ?? 0);
    else q.where('account_id', owner.accountId);
    return !!(await q.first('id'));
  }

  /** Inserts a profile and its details (values as they are to be stored). */
  async insert(p: NewHsmProfile, details: ReadonlyArray<{ name: string; value: string }> = []): Promise<number> {
    const [newId] = await this.db('kms_hsm_profiles').insert({
      uuid: p.uuid, name: p.name, protocol: p.protocol, account_id: p.accountId, domain_id: p.domainId, zone_id: p.zoneId,
      vendor_name: p.vendorName, enabled: p.enabled, is_public: p.isPublic, created: p.created.getTime(), removed: null,
    });
    const id = Number(newId);
    if (details.length) await this.db('kms_hsm_profile_details').insert(details.map((d) => ({ profile_id: id, name: d.name, value: d.value })));
    return id;
  }

  /** Renames, enables or disables a profile. */
  async update(id: number, patch: { name?: string; enabled?: boolean }): Promise<void> {
    const row = { ...(patch.name !== undefined ? { name: patch.name } : {}), ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}) };
    if (Object.keys(row).length) await this.db('kms_hsm_profiles').where({ id }).update(row);
  }

  /** Deletes a profile's details and marks it removed. */
  async remove(id: number, at: Date): Promise<void> {
    await this.db('kms_hsm_profile_details').where({ profile_id: id }).delete();
    await this.db('kms_hsm_profiles').where({ id }).update({ removed: at.getTime() });
  }

  /** What still uses a profile: live keys on it, and live wrapped keys under its KEK versions. */
  async usage(profileId: number): Promise<{ keys: number; wrappedKeys: number }> {
    return {
      keys: await count(this.db('kms_keys').where({ hsm_profile_id: profileId }).whereNull('removed')),
      wrappedKeys: await count(this.db('kms_wrapped_key as w').join('kms_kek_versions as v', 'v.id', 'w.kek_version_id')
        .where('v.hsm_profile_id', profileId).whereNull('w.removed')),
    };
  }

  private viewQuery(): Knex.QueryBuilder {
    return this.db('kms_hsm_profiles as p')
      .leftJoin('account as a', 'a.id', 'p.account_id')
      .leftJoin('projects as pr', 'pr.project_account_id', 'p.account_id')
      .leftJoin('domain as d', 'd.id', 'p.domain_id')
      .leftJoin('data_center as z', 'z.id', 'p.zone_id')
      .whereNull('p.removed')
      .select('p.*', 'a.account_name', 'a.uuid as account_uuid', 'd.uuid as domain_uuid', 'd.name as domain_name', 'd.path as domain_path',
        'z.uuid as zone_uuid', 'z.name as zone_name', 'pr.uuid as project_uuid', 'pr.name as project_name');
  }
}
