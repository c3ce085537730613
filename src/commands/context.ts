import type { Logger } from '../core/logger';
import type { Settings } from '../config/settings';
import type { Repositories } from '../db/repositories';
import type { EventLog } from '../events/event-log';
import type { Caller } from '../identity/caller';
import type { Directory } from '../identity/directory';
import type { SessionStore } from '../identity/sessions';
import type { JobSubmitter } from '../jobs/types';
import type { KmsServices } from '../kms';
import type { MasterKeyNode } from '../kms/master-key-versions';
import type { CommandSpec } from './define';

/**
 * The services a handler or a declared job may use, built once by app.ts (which satisfies this
 * type). Handlers never see the HTTP request, the knex handle or the composition root.
 */
export interface Services {
  /** Keys, profiles, rotation, rewrap, volumes, migration, disk offerings. */
  readonly kms: KmsServices;
  /** Users, accounts, domains and the one access rule. */
  readonly directory: Directory;
  readonly sessions: SessionStore;
  readonly events: EventLog;
  readonly settings: Settings;
  /** Submits async jobs (the declared job of an async command). */
  readonly jobs: JobSubmitter;
  /** Plain reads of simple tables (zones, events, jobs, settings) for list commands. */
  readonly repos: Repositories;
  /** This process as a node holding master keys. */
  readonly masterKeys: MasterKeyNode;
  /** This process's management-server id (login and job responses). */
  readonly managementServerId: string;
  readonly logger: Logger;
}

/** What a handler may use: the caller and the services (never the HTTP request). */
export interface CommandContext extends Services {
  readonly caller: Caller;
  /** The command name as declared. */
  readonly command: string;
  /** Every command this server answers (listApis reads it). */
  readonly commands: readonly CommandSpec[];
}

/** What a declared job's `run` may use: the services and the job's submitter as it is now. */
export interface JobContext extends Services {
  /** The submitting user, re-loaded: a job acts with the rights its user has when it runs (531 when gone or disabled). */
  submitter(): Promise<Caller>;
}
