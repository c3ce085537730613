import type { KmsDeps } from './deps';
import type { KekRef, ProviderKind, UnwrapRequest } from '../providers/provider';
import type { CheckedWrappedKey, WrappedKeyCheckFilter } from '../db/repositories/wrapped-keys';
import { isKmsError } from '../core/errors';
import { canUnwrapUnder } from './kek-states';
import { PROTECTED_COLUMNS } from './master-key-rotation';
import { WrappedKeys, withKekContext, type KekVersionContext } from './wrapped-keys';

/** What `verify-keys` checks: every DEK, or those of one key, one profile, one zone (then only DEKs). */
export interface VerifyScope {
  keyUuid?: string;
  profileUuid?: string;
  zoneUuid?: string;
}

export interface VerifyOptions extends VerifyScope {
  /** DEKs per backend batch (one unwrapMany). @defaultValue 250 */
  batchSize?: number;
  /** At most this many DEKs a second (0: no bound), so a live deployment is not disturbed. @defaultValue 2000 */
  ratePerSec?: number;
  /** Called after each batch with the counts so far. */
  progress?(p: VerifyProgress): void;
}

export interface VerifyProgress { checked: number; total: number; failed: number }

/** One secret that cannot be opened: which (volume, key and version, or table and row) and why. */
export interface VerifyFailure {
  what: 'dek' | 'passphrase' | 'master-key value';
  volumeUuid?: string;
  volumeName?: string;
  keyUuid?: string;
  keyVersion?: number;
  wrappedKeyUuid?: string;
  /** True when the failing blob is the DEK's standby wrap (README "Standby HSM"). */
  standby?: boolean;
  /** For master-key values: what the value is (e.g. "HSM profile PINs and passwords") and its row id. */
  item?: string;
  reason: string;
}

export interface VerifyReport {
  deks: number;
  /** Standby blobs checked (each DEK of a key with a standby has one once the fill reached it). */
  standbyDeks: number;
  /** DEKs whose version has a standby KEK but which have no standby blob yet (the fill is behind). */
  standbyMissing: number;
  passphrases: number;
  masterKeyValues: number;
  failures: VerifyFailure[];
}

/** The scope named a key, profile or zone that does not exist. */
export class VerifyScopeError extends Error {}

const reasonOf = (err: unknown): string => (isKmsError(err) ? err.message : 'internal error');

/**
 * The key check (`npm run admin -- verify-keys`): opens every live wrapped DEK through the same
 * providers as the server (batches of unwrapMany, under the same retry and circuit policy), every
 * legacy passphrase and every value encrypted under the master key, and reports those it cannot
 * open with the reason. Plaintexts are disposed at once; nothing of them is returned or printed.
 * It writes nothing: DEKs are read, never claimed.
 */
export class KeyVerifier {
  private readonly wrappedKeys: WrappedKeys;

  constructor(private readonly deps: Pick<KmsDeps, 'repos' | 'providers' | 'masterKey'>) {
    this.wrappedKeys = new WrappedKeys(deps);
  }

  async run(opts: VerifyOptions = {}): Promise<VerifyReport> {
    const filter = await this.filterOf(opts);
    const scoped = opts.keyUuid !== undefined || opts.profileUuid !== undefined || opts.zoneUuid !== undefined;
    const report: VerifyReport = { deks: 0, standbyDeks: 0, standbyMissing: 0, passphrases: 0, masterKeyValues: 0, failures: [] };
    const total = (await this.deps.repos.wrappedKeys.countForCheck(filter))
      + (scoped ? 0 : await this.deps.repos.protectedValues.count('passphrase') + await this.countMasterKeyValues());
    const progress = () => opts.progress?.({ checked: report.deks + report.passphrases + report.masterKeyValues, total, failed: report.failures.length });
    await this.checkDeks(filter, opts, report, progress);
    if (!scoped) await this.checkMasterKeyValues(opts, report, progress);
    return report;
  }

  private async filterOf(s: VerifyScope): Promise<WrappedKeyCheckFilter> {
    const { repos } = this.deps;
    const f: WrappedKeyCheckFilter = {};
    if (s.keyUuid !== undefined) {
      const key = await repos.kmsKeys.byUuid(s.keyUuid);
      if (!key) throw new VerifyScopeError(`KMS key ${s.keyUuid} not found`);
      f.kmsKeyId = key.id;
    }
    if (s.profileUuid !== undefined) {
      const profile = await repos.hsmProfiles.byUuid(s.profileUuid);
      if (!profile) throw new VerifyScopeError(`HSM profile ${s.profileUuid} not found`);
      f.hsmProfileId = profile.id;
    }
    if (s.zoneUuid !== undefined) {
      const zone = await repos.zones.findLive(s.zoneUuid);
      if (!zone) throw new VerifyScopeError(`Zone ${s.zoneUuid} not found`);
      f.zoneId = zone.id;
    }
    return f;
  }

  private async countMasterKeyValues(): Promise<number> {
    let n = 0;
    for (const c of PROTECTED_COLUMNS) if (c.table !== 'passphrase') n += await this.deps.repos.protectedValues.count(c.table);
    return n;
  }

  /** Keeps the pace under `ratePerSec`: waits after a batch when it ran ahead of the bound. */
  private pacer(ratePerSec: number): (done: number) => Promise<void> {
    const started = Date.now();
    return async (done) => {
      if (ratePerSec <= 0) return;
      const ahead = (done / ratePerSec) * 1000 - (Date.now() - started);
      if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
    };
  }

  private async checkDeks(filter: WrappedKeyCheckFilter, opts: VerifyOptions, report: VerifyReport, progress: () => void): Promise<void> {
    const batchSize = opts.batchSize ?? 250;
    const pace = this.pacer(opts.ratePerSec ?? 2000);
    const versions = new Map<number, Promise<KekVersionContext | undefined>>();
    const refs = new Map<number, Promise<KekRef>>();
    const versionOf = (id: number) => versions.get(id) ?? versions.set(id, this.wrappedKeys.versionById(id)).get(id)!;
    const refOf = (v: KekVersionContext) => refs.get(v.versionId) ?? refs.set(v.versionId, this.wrappedKeys.kekRef(v)).get(v.versionId)!;
    const standbyRefs = new Map<number, Promise<KekRef | undefined>>();
    const standbyRefOf = (v: KekVersionContext) => standbyRefs.get(v.versionId) ?? standbyRefs.set(v.versionId, this.wrappedKeys.standbyRef(v)).get(v.versionId)!;
    const pageAfter = (after: number) => {
      const p = this.deps.repos.wrappedKeys.pageForCheck(filter, after, batchSize);
      p.catch(() => undefined); // awaited below; a failure is thrown there
      return p;
    };
    // The next page is read while this one is unwrapped.
    for (let next = pageAfter(0); ;) {
      const page = await next;
      if (!page.length) break;
      next = pageAfter(page[page.length - 1]!.id);
      const failedHere: VerifyFailure[] = [];
      const fail = (row: CheckedWrappedKey, v: KekVersionContext | undefined, reason: string, standby = false) => failedHere.push({
        what: 'dek', volumeUuid: row.ownerUuid, keyUuid: v?.keyUuid, keyVersion: v?.versionNumber, wrappedKeyUuid: row.uuid,
        reason: standby ? `standby wrap: ${reason}` : reason, ...(standby ? { standby } : {}),
      });
      // One unwrapMany per KEK version's profile: a batch names one profile. A DEK's standby blob is
      // checked too, in the batch of the standby's profile.
      type Item = { row: CheckedWrappedKey; v: KekVersionContext; req: UnwrapRequest; standby: boolean };
      const byProfile = new Map<string, Item[]>();
      const add = (item: Item) => {
        const group = byProfile.get(item.req.kek.profile.id) ?? [];
        group.push(item);
        byProfile.set(item.req.kek.profile.id, group);
      };
      for (const row of page) {
        const v = await versionOf(row.kekVersionId);
        if (!v) { fail(row, v, 'its KEK version no longer exists'); continue; }
        if (!canUnwrapUnder(v.status, v.destroyed)) { fail(row, v, `KEK version v${v.versionNumber} of KMS key ${v.keyUuid} was destroyed`); continue; }
        if (v.standby) {
          if (!row.standbyBlob) report.standbyMissing++;
          else {
            try {
              const kek = await standbyRefOf(v);
              if (kek) add({ row, v, req: { kek, blob: row.standbyBlob, aad: this.wrappedKeys.aad(v, row.ownerUuid) }, standby: true });
            } catch (err) {
              fail(row, v, reasonOf(err), true);
            }
          }
        }
        let kek: KekRef;
        try {
          kek = await refOf(v);
        } catch (err) {
          fail(row, v, reasonOf(err));
          continue;
        }
        add({ row, v, req: { kek, blob: row.blob, aad: this.wrappedKeys.aad(v, row.ownerUuid) }, standby: false });
      }
      for (const group of byProfile.values()) {
        const provider = this.deps.providers.get(group[0]!.req.kek.profile.protocol as ProviderKind);
        let results;
        try {
          results = await provider.unwrapMany(group.map((g) => g.req));
        } catch (err) {
          for (const g of group) fail(g.row, g.v, reasonOf(err), g.standby);
          continue;
        }
        for (const [i, r] of results.entries()) {
          const g = group[i]!;
          if (r.ok) {
            r.value.dispose();
            if (g.standby) report.standbyDeks++;
            continue;
          }
          // A 'param' failure may mean the KEK is gone from its backend: withKekContext asks and names it.
          const reason = await withKekContext(g.v, Promise.reject(r.error), { provider, ref: g.req.kek }).catch(reasonOf);
          fail(g.row, g.v, String(reason), g.standby);
        }
      }
      // Volume names only for the failures (a join on every page would cost more than the unwraps).
      const names = await this.deps.repos.wrappedKeys.volumeNames(failedHere.map((f) => f.volumeUuid!));
      for (const f of failedHere) report.failures.push({ ...f, volumeName: names.get(f.volumeUuid!) });
      report.deks += page.length;
      progress();
      await pace(report.deks);
    }
  }

  private async checkMasterKeyValues(opts: VerifyOptions, report: VerifyReport, progress: () => void): Promise<void> {
    const batchSize = opts.batchSize ?? 250;
    for (const c of PROTECTED_COLUMNS) {
      for (let after = 0; ;) {
        // Every value: none is written with the impossible version -1.
        const rows = await this.deps.repos.protectedValues.batch(c.table, { notOn: -1 }, after, batchSize);
        if (!rows.length) break;
        after = rows[rows.length - 1]!.id;
        const failed: Array<{ id: number; reason: string }> = [];
        for (const r of rows) {
          try {
            this.deps.masterKey.decrypt(r.value, c.aad(r)).fill(0);
          } catch (err) {
            failed.push({ id: r.id, reason: err instanceof Error ? err.message.split('\n')[0]! : 'cannot be decrypted' });
          }
        }
        if (c.table === 'passphrase') {
          report.passphrases += rows.length;
          const volumes = await this.deps.repos.passphrases.volumesOf(failed.map((f) => f.id));
          for (const f of failed) {
            const vol = volumes.get(f.id);
            report.failures.push({ what: 'passphrase', volumeUuid: vol?.uuid, volumeName: vol?.name, item: `passphrase ${f.id}`, reason: f.reason });
          }
        } else {
          report.masterKeyValues += rows.length;
          for (const f of failed) report.failures.push({ what: 'master-key value', item: `${c.what} (${c.table} row ${f.id})`, reason: f.reason });
        }
        progress();
      }
    }
  }
}
