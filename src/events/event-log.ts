import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex';

/** CloudStack event types this server records. */
export type EventType =
  | 'USER.LOGIN' | 'USER.LOGOUT' | 'USER.CREATE' | 'REGISTER.USER.KEY' | 'ACCOUNT.CREATE' | 'DOMAIN.CREATE' | 'ZONE.CREATE'
  | 'USER.DISABLE' | 'USER.ENABLE' | 'USER.LOCK' | 'ACCOUNT.DISABLE' | 'ACCOUNT.ENABLE'
  | 'CONFIGURATION.VALUE.EDIT'
  | 'HSM.PROFILE.CREATE' | 'HSM.PROFILE.UPDATE' | 'HSM.PROFILE.DELETE' | 'HSM.PROFILE.HEALTH'
  | 'KMS.KEY.CREATE' | 'KMS.KEY.UPDATE' | 'KMS.KEY.ROTATE' | 'KMS.KEY.DELETE' | 'KMS.KEY.WRAP' | 'KMS.KEY.UNWRAP'
  | 'VOLUME.CREATE' | 'VOLUME.DELETE' | 'VOLUME.MIGRATE.TO.KMS'
  | 'DISK.OFFERING.CREATE' | 'DISK.OFFERING.EDIT' | 'DISK.OFFERING.DELETE'
  | 'PROJECT.CREATE' | 'PROJECT.UPDATE' | 'PROJECT.DELETE' | 'PROJECT.ACCOUNT.ADD' | 'PROJECT.ACCOUNT.REMOVE';

/** Who the event is recorded for: the acting user and the owner account/domain. */
export interface EventActor { userId?: number | null; accountId?: number | null; domainId?: number | null }

export interface EventInput {
  type: EventType;
  description: string;
  level?: 'INFO' | 'WARN' | 'ERROR';
  actor: EventActor;
  resourceType?: string;
  resourceId?: string;
}

/** Appends events (never secrets: descriptions name objects by uuid and name only). */
export class EventLog {
  constructor(private readonly db: Db) {}

  async record(e: EventInput, trx: Knex = this.db): Promise<void> {
    await trx('event').insert(toRow(e));
  }

  async recordMany(events: EventInput[], trx: Knex = this.db): Promise<void> {
    if (events.length) await trx.batchInsert('event', events.map(toRow), 500);
  }
}

function toRow(e: EventInput) {
  return {
    uuid: randomUUID(), type: e.type, state: 'Completed', level: e.level ?? 'INFO', description: e.description.slice(0, 1024),
    user_id: e.actor.userId ?? null, account_id: e.actor.accountId ?? null, domain_id: e.actor.domainId ?? null,
    resource_type: e.resourceType ?? null, resource_id: e.resourceId ?? null, created: Date.now(),
  };
}
