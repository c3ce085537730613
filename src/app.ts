import { randomUUID } from 'node:crypto';
import type { Env } from './config/env';
import { MasterKey } from './config/master-key';
import { assertMasterKeyMatches } from './config/master-key-check';
import { Settings } from './config/settings';
import { openDb, type Db } from './db/knex';
import { EventLog } from './events/event-log';
import { Directory } from './identity/directory';
import { bootstrapIdentity } from './identity/bootstrap';
import { SessionStore } from './api/session-store';
import { createLogger, type Logger } from './logger';
import { createProviderRegistry, type ProviderRegistry } from './providers/registry';
import { createJobService, type JobService } from './jobs/job-service';
import { volumeJobHandlers } from './commands/volumes';
import { migrationJobHandlers } from './commands/kms-migration';
import { registerRewrapSchedule } from './kms/rewrap-schedule';
import { ensureDefaultHsmProfile, recordHealthChange } from './kms/hsm-profiles';
import { registerKmsKeyJobs } from './kms/kms-key-jobs';
import { ALL_COMMANDS } from './commands/registry';

/** The application's services, built once per process and shared by the API and the workers. */
export interface App {
  readonly env: Env;
  readonly db: Db;
  readonly logger: Logger;
  readonly masterKey: MasterKey;
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
  close(): Promise<void>;
}

export interface StartedApp {
  app: App;
  /** API keys generated on this first start, to print once. */
  generatedKeys?: { apiKey: string; secretKey: string };
  masterKeyGenerated: boolean;
}

/** Opens the database (migrating it), loads the master key and bootstraps the identity tables. */
export async function createApp(env: Env, opts: { logger?: Logger } = {}): Promise<StartedApp> {
  const logger = opts.logger ?? createLogger();
  const { key: masterKey, generated: masterKeyGenerated } = MasterKey.load({ fromEnv: env.masterKey, file: env.masterKeyFile });
  const db = await openDb({ databaseUrl: env.databaseUrl, dataDir: env.dataDir });
  await assertMasterKeyMatches(db, masterKey).catch(async (e) => {
    await db.destroy();
    throw e;
  });
  const directory = new Directory(db, masterKey);
  const { generatedKeys } = await bootstrapIdentity(db, directory, env);
  await ensureDefaultHsmProfile(db, directory);
  const settings = new Settings(db);
  const events = new EventLog(db);
  const providers = createProviderRegistry({
    db, masterKey, logger, policy: () => settings.backendPolicy(),
    circuit: { onChange: (h) => void recordHealthChange(db, events, h).catch((e) => logger.warn('could not record an HSM profile health event', { error: String(e) })) },
  });
  const backendPrefixes = new Map(ALL_COMMANDS.map((c) => [c.name, c.backendErrorPrefix]));
  const jobs = createJobService({
    db, logger, settings, redisUrl: env.redisUrl, queuePrefix: env.queuePrefix, runWorkers: env.role !== 'api', options: env.jobOptions,
    errorPrefixOf: (cmd) => backendPrefixes.get(cmd),
  });
  const closers: Array<() => Promise<void>> = [() => db.destroy(), () => providers.close(), () => jobs.close()];
  const app: App = {
    env,
    db,
    logger,
    masterKey,
    settings,
    providers,
    jobs,
    directory,
    events,
    sessions: new SessionStore(db, env.sessionTimeoutSec),
    managementServerId: randomUUID(),
    async close() {
      for (const close of closers.reverse()) await close();
    },
  };
  for (const [kind, make] of Object.entries({ ...volumeJobHandlers, ...migrationJobHandlers })) jobs.register(kind, make(app));
  registerKmsKeyJobs(app);
  registerRewrapSchedule(app);
  return { app, generatedKeys, masterKeyGenerated };
}
