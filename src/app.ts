import { randomUUID } from 'node:crypto';
import type { Env } from './config/env';
import type { MasterKey } from './config/master-key';
import { MasterKeyNode, openMasterKey } from './kms/master-key-versions';
import { upgradeLegacyValues } from './kms/master-key-rotation';
import { Settings } from './config/settings';
import { openDb, type Db } from './db/knex';
import { EventLog } from './events/event-log';
import { Directory } from './identity/directory';
import { LoginThrottle } from './identity/login-throttle';
import { SessionStore } from './identity/sessions';
import { createLogger, type Logger } from './core/logger';
import { createProviderRegistry, type ProviderRegistry } from './providers/registry';
import { createJobService, type JobService } from './jobs/job-service';
import { REWRAP_INTERVAL_SETTING, REWRAP_SCHEDULE, runRewrapTick } from './kms/rewrap-schedule';
import { ensureDefaultHsmProfile, recordHealthChange } from './kms/hsm-profiles';
import { resolveWorkerOptions } from './config/worker-options';
import { ALL_COMMANDS } from './commands/registry';
import { registerDeclaredJobs } from './commands/jobs';
import type { Services } from './commands/context';
import { createRepositories, type Repositories } from './db/repositories';
import { createReader } from './db/reader';
import { systemClock, type Clock } from './core/clock';
import { createKmsServices, type KmsDeps, type KmsServices } from './kms';
import { Metrics } from './ops/metrics';
import { checkPaths } from './ops/preflight';
import { Health } from './ops/health';
import { StateMetrics } from './ops/state-metrics';
import { bootstrapDeployment } from './kms/bootstrap';

/** The application's services, built once per process and shared by the API and the workers. */
export interface App extends Services, KmsDeps {
  readonly env: Env;
  readonly db: Db;
  readonly logger: Logger;
  readonly repos: Repositories;
  readonly clock: Clock;
  readonly kms: KmsServices;
  /** The master-key versions this process holds; new values use the active one. */
  readonly masterKey: MasterKey;
  /** This process as a node holding master keys: heartbeat, version changes, the seal. */
  readonly masterKeys: MasterKeyNode;
  readonly settings: Settings;
  readonly directory: Directory;
  readonly events: EventLog;
  readonly sessions: SessionStore;
  /** KEK backends, every call under the kms.* retry and timeout policy. */
  readonly providers: ProviderRegistry;
  /** Async jobs: submit from commands, handlers registered per kind. */
  readonly jobs: JobService;
  /** This process's management-server id (login and job responses). */
  readonly managementServerId: string;
  /** This process's Prometheus metrics (served at /metrics). */
  readonly metrics: Metrics;
  /** Liveness and readiness (/healthz, /readyz). */
  readonly health: Health;
  /** Login throttling per user and client address, shared by every node through the database. */
  readonly loginThrottle: LoginThrottle;
  close(): Promise<void>;
}

/** What handlers and declared jobs may use of the app: the services, never the database handle or the process. */
export function servicesOf(app: App): Services {
  return {
    kms: app.kms, directory: app.directory, sessions: app.sessions, events: app.events, settings: app.settings, jobs: app.jobs,
    repos: app.repos, masterKeys: app.masterKeys, managementServerId: app.managementServerId, logger: app.logger,
  };
}

export interface StartedApp {
  app: App;
  /** API keys generated on this first start, to print once. */
  generatedKeys?: { apiKey: string; secretKey: string };
  masterKeyGenerated: boolean;
}

/** Options of createApp. */
export interface CreateAppOptions {
  logger?: Logger;
  /** false for the admin CLI: it holds the keys but is no node of the deployment (no heartbeat). @defaultValue true */
  announce?: boolean;
  /** The login throttle's clock (tests move it instead of waiting). @defaultValue systemClock */
  throttleClock?: Clock;
}

/** Opens the database (migrating it), loads the master key and bootstraps the identity tables. */
export async function createApp(env: Env, opts: CreateAppOptions = {}): Promise<StartedApp> {
  const logger = opts.logger ?? createLogger({ level: env.logLevel });
  checkPaths(env);
  // The database first: a wrong password or an unreachable server is refused before any file is written.
  const db = await openDb({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, lockWaitSec: env.startupLockWaitSec, logger });
  const managementServerId = randomUUID();
  const reader = createReader(db);
  const repos = createRepositories(db, { reader });
  let masterKeys: MasterKeyNode | undefined;
  let masterKeyGenerated = false;
  let generatedKeys: StartedApp['generatedKeys'];
  try {
    // The master key and the first-start setup run under the deployment-wide bootstrap lock, so
    // processes started at the same instant make one version 1, one ROOT and one admin.
    ({ generatedKeys } = await bootstrapDeployment(repos, env, {
      logger,
      directory: (key) => new Directory({ repos, masterKey: key, events: new EventLog(repos), clock: systemClock }),
      ensureDefaultProfile: () => ensureDefaultHsmProfile(repos),
      openKey: async () => {
        const opened = await openMasterKey(repos, env);
        for (const w of opened.warnings) logger.warn(w);
        masterKeyGenerated = opened.generated;
        masterKeys = new MasterKeyNode(repos, opened.key, {
          identity: opts.announce === false ? undefined : { id: managementServerId, role: env.role },
          seal: opened.seal, spare: opened.spare, heartbeatMs: env.nodeHeartbeatMs, staleMs: env.nodeStaleMs, logger, rotationBatch: env.masterKeyRotationBatch,
        });
        await upgradeLegacyValues(repos, masterKeys.key, logger);
        return masterKeys.key;
      },
    }));
    await masterKeys!.start();
  } catch (e) {
    await masterKeys?.stop().catch(() => undefined);
    reader.close();
    await db.destroy();
    throw e;
  }
  const node = masterKeys!;
  const masterKey = node.key;
  const settings = new Settings(repos.configuration);
  const metrics = new Metrics();
  const events = new EventLog(repos);
  const providers = createProviderRegistry({
    databaseKeks: repos.databaseKeks, masterKey, logger, policy: () => settings.backendPolicy(), pkcs11: { threads: env.pkcs11Threads },
    observer: {
      operation: ({ profile, operation, outcome, seconds }) => metrics.backendOperation({ profile, operation, outcome }, seconds),
      retry: (labels) => metrics.backendRetry(labels),
    },
    circuit: { onChange: (h) => void recordHealthChange({ repos, events }, h).catch((e) => logger.warn('could not record an HSM profile health event', { error: String(e) })) },
  });
  const backendPrefixes = new Map(ALL_COMMANDS.map((c) => [c.name, c.backendErrorPrefix]));
  const jobs = createJobService({
    db, logger, settings, redisUrl: env.redisUrl, redis: env.redis, queuePrefix: env.queuePrefix, runWorkers: env.role !== 'api', options: env.jobOptions,
    errorPrefixOf: (cmd) => backendPrefixes.get(cmd),
    onJobEnded: ({ kind, status, seconds }) => {
      metrics.jobs.inc({ kind, status });
      metrics.jobDuration.observe({ kind }, seconds);
    },
  });
  const directory = new Directory({ repos, masterKey, events, clock: systemClock });
  const sessions = new SessionStore(repos, env.sessionTimeoutSec, systemClock);
  const kmsDeps: KmsDeps = { repos, providers, settings, events, directory, masterKey, clock: systemClock, logger };
  const kms = createKmsServices(kmsDeps);
  const health = new Health({ repos, providers, profiles: kms.profiles, redisUrl: env.redisUrl, redis: env.redis, logger }, env.readyTimeoutMs);
  const stateMetrics = new StateMetrics({ metrics, repos, providers, logger, refreshMs: env.metricsRefreshSec * 1000 });
  const closers: Array<() => Promise<void>> = [() => db.destroy(), () => stateMetrics.stop(), async () => reader.close(), () => node.stop(), () => providers.close(), () => health.close(), () => jobs.close()];
  const app: App = {
    env,
    db,
    repos,
    clock: systemClock,
    kms,
    logger,
    masterKey,
    settings,
    providers,
    jobs,
    directory,
    events,
    sessions,
    managementServerId,
    masterKeys: node,
    metrics,
    health,
    loginThrottle: new LoginThrottle(repos, opts.throttleClock ?? systemClock),
    async close() {
      for (const close of closers.reverse()) await close();
    },
  };
  registerDeclaredJobs(jobs, servicesOf(app), ALL_COMMANDS);
  // Row claims last as long as the schedule lock (see RewrapTick.claimMs).
  const rewrapClaimMs = resolveWorkerOptions(env.jobOptions).leaseMs;
  jobs.schedule(REWRAP_SCHEDULE, {
    intervalSetting: REWRAP_INTERVAL_SETTING,
    run: (tick) => runRewrapTick(kms.rewrap, { settings, logger }, { workerId: jobs.owner, claimMs: rewrapClaimMs, signal: tick.signal }),
  });
  stateMetrics.start();
  return { app, generatedKeys, masterKeyGenerated };
}
