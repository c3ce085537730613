import type { Knex } from 'knex';
import { knexReader, type Reader } from '../reader';
import { retryTransaction } from '../retry';
import { JobRepository } from './jobs';
import { LockRepository } from './locks';
import { AccountRepository } from './accounts';
import { DomainRepository } from './domains';
import { ProjectRepository } from './projects';
import { SessionRepository } from './sessions';
import { UserRepository } from './users';
import { HsmProfileRepository } from './hsm-profiles';
import { KekVersionRepository } from './kek-versions';
import { KmsKeyRepository } from './kms-keys';
import { OpsStateRepository } from './ops-state';
import { WrappedKeyRepository } from './wrapped-keys';
import { BootstrapRepository } from './bootstrap';
import { ConfigurationRepository } from './configuration';
import { DatabaseKekRepository } from './database-keks';
import { DiskOfferingRepository } from './disk-offerings';
import { EventRepository } from './events';
import { ProtectedValueRepository } from './master-key-values';
import { MasterKeyVersionRepository } from './master-key-versions';
import { NodeRepository } from './nodes';
import { PassphraseRepository } from './passphrases';
import { VolumeRepository } from './volumes';
import { ZoneRepository } from './zones';
import { LoginThrottleRepository } from './login-throttle';
import { CredentialVersionRepository } from './credential-version';

/**
 * Every table of the server is reached through one of these repositories (docs/architecture.md):
 * they hold the SQL, and they return domain types (booleans are booleans, times are numbers of
 * epoch ms or Dates as each type says, never raw 0/1 columns). No file outside src/db imports knex.
 *
 * A repository is bound to a connection or to a transaction; `transaction(fn)` runs `fn` with
 * every repository bound to one transaction, committed when `fn` resolves.
 */
export interface Repositories {
  // ── jobs and locks ─────────────────────────────────────────────
  readonly jobs: JobRepository;
  readonly locks: LockRepository;

  // ── identity: domains, accounts, users, projects, sessions ─────
  readonly domains: DomainRepository;
  readonly accounts: AccountRepository;
  /** Users and their login attempts. */
  readonly users: UserRepository;
  /** Projects and their memberships. */
  readonly projects: ProjectRepository;
  readonly sessions: SessionRepository;
  /** Failed logins per user and client address (login throttling). */
  readonly loginThrottle: LoginThrottleRepository;
  /** The number every change of credentials moves (revocation on every node). */
  readonly credentialVersion: CredentialVersionRepository;

  // ── KMS keys: keys, KEK versions, HSM profiles, wrapped keys ───
  readonly kmsKeys: KmsKeyRepository;
  readonly kekVersions: KekVersionRepository;
  readonly hsmProfiles: HsmProfileRepository;
  readonly wrappedKeys: WrappedKeyRepository;
  /** Readiness and state gauges: the database itself, the job queue depth. */
  readonly opsState: OpsStateRepository;

  // ── volumes, disk offerings, zones, events, settings, master key ──
  readonly volumes: VolumeRepository;
  readonly passphrases: PassphraseRepository;
  readonly diskOfferings: DiskOfferingRepository;
  readonly zones: ZoneRepository;
  readonly events: EventRepository;
  readonly configuration: ConfigurationRepository;
  readonly masterKeyVersions: MasterKeyVersionRepository;
  readonly nodes: NodeRepository;
  /** The values under the master key (its rotation). */
  readonly protectedValues: ProtectedValueRepository;
  /** The database provider's KEKs. */
  readonly databaseKeks: DatabaseKekRepository;
  /** The first start's lock and rows. */
  readonly bootstrap: BootstrapRepository;
  /**
   * Runs `fn` in one transaction; every repository it is given is bound to that transaction. On a
   * deadlock, a Galera certification conflict, a lock-wait timeout or a lost database host, the
   * transaction is rolled back and `fn` runs again (src/db/retry.ts: back-off, at most 8 runs), so
   * `fn` must do nothing outside the database that cannot be repeated: compute HSM results before
   * and reuse them, and change in-memory state only from its return value. Inside a transaction
   * already open, `fn` joins it and the outer one is retried.
   */
  transaction<T>(fn: (tx: Repositories) => Promise<T>): Promise<T>;
  /** True on MariaDB/MySQL, false on SQLite (for the few statements that differ). */
  readonly isMysql: boolean;
}

/** The repositories over a connection (or a transaction already open). */
export function createRepositories(db: Knex | Knex.Transaction, opts: { reader?: Reader } = {}): Repositories {
  // Reads of a transaction stay on its connection; others may take the fast reader (src/db/reader.ts).
  const read = opts.reader ?? knexReader;
  const isMysql = db.client.config.client === 'mysql2';
  const lazy = <T>(make: () => T): (() => T) => {
    let v: T | undefined;
    return () => (v ??= make());
  };
  const jobs = lazy(() => new JobRepository(db));
  const locks = lazy(() => new LockRepository(db));

  const domains = lazy(() => new DomainRepository(db));
  const accounts = lazy(() => new AccountRepository(db, read));
  const users = lazy(() => new UserRepository(db));
  const projects = lazy(() => new ProjectRepository(db, isMysql));
  const sessions = lazy(() => new SessionRepository(db));
  const loginThrottle = lazy(() => new LoginThrottleRepository(db));
  const credentialVersion = lazy(() => new CredentialVersionRepository(db, read));

  // KMS keys
  const kmsKeys = lazy(() => new KmsKeyRepository(db, read));
  const kekVersions = lazy(() => new KekVersionRepository(db, read));
  const hsmProfiles = lazy(() => new HsmProfileRepository(db));
  const wrappedKeys = lazy(() => new WrappedKeyRepository(db));
  const opsState = lazy(() => new OpsStateRepository(db));

  const volumes = lazy(() => new VolumeRepository(db));
  const passphrases = lazy(() => new PassphraseRepository(db));
  const diskOfferings = lazy(() => new DiskOfferingRepository(db));
  const zones = lazy(() => new ZoneRepository(db, read));
  const events = lazy(() => new EventRepository(db));
  const configuration = lazy(() => new ConfigurationRepository(db));
  const masterKeyVersions = lazy(() => new MasterKeyVersionRepository(db));
  const nodes = lazy(() => new NodeRepository(db));
  const protectedValues = lazy(() => new ProtectedValueRepository(db));
  const databaseKeks = lazy(() => new DatabaseKekRepository(db));
  const bootstrap = lazy(() => new BootstrapRepository(db));
  return {
    get jobs() { return jobs(); },
    get locks() { return locks(); },

    // identity
    get domains() { return domains(); },
    get accounts() { return accounts(); },
    get users() { return users(); },
    get projects() { return projects(); },
    get sessions() { return sessions(); },
    get loginThrottle() { return loginThrottle(); },
    get credentialVersion() { return credentialVersion(); },

    // KMS keys
    get kmsKeys() { return kmsKeys(); },
    get kekVersions() { return kekVersions(); },
    get hsmProfiles() { return hsmProfiles(); },
    get wrappedKeys() { return wrappedKeys(); },
    get opsState() { return opsState(); },

    // volumes and the rest
    get volumes() { return volumes(); },
    get passphrases() { return passphrases(); },
    get diskOfferings() { return diskOfferings(); },
    get zones() { return zones(); },
    get events() { return events(); },
    get configuration() { return configuration(); },
    get masterKeyVersions() { return masterKeyVersions(); },
    get nodes() { return nodes(); },
    get protectedValues() { return protectedValues(); },
    get databaseKeks() { return databaseKeks(); },
    get bootstrap() { return bootstrap(); },

    transaction: (fn) => ('isTransaction' in db && db.isTransaction
      ? fn(createRepositories(db))
      : retryTransaction(db, () => db.transaction((trx) => fn(createRepositories(trx))))),
    isMysql,
  };
}
