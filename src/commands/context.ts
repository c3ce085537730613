import type { Logger } from '../core/logger';
import type { Settings } from '../config/settings';
import type { Repositories } from '../db/repositories';
import type { EventLog } from '../events/event-log';
import type { Directory } from '../identity/directory';
import type { SessionStore } from '../identity/sessions';
import type { JobSubmitter } from '../jobs/types';
import type { KmsServices } from '../kms';
import type { MasterKeyNode } from '../kms/master-key-versions';

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
