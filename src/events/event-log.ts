import { randomUUID } from 'node:crypto';
import type { Repositories } from '../db/repositories';
import type { NewEvent } from '../db/repositories/events';

/** CloudStack event types this server records. */
export type EventType =
  | 'USER.LOGIN' | 'USER.LOGOUT' | 'USER.LOGIN.THROTTLED' | 'USER.CREATE' | 'REGISTER.USER.KEY' | 'ACCOUNT.CREATE' | 'DOMAIN.CREATE' | 'ZONE.CREATE'
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
  constructor(private readonly repos: Repositories) {}

  /** Records one event; with `tx`, in that transaction. */
  async record(e: EventInput, tx: Repositories = this.repos): Promise<void> {
    await tx.events.insert(toNewEvent(e));
  }

  async recordMany(events: EventInput[], tx: Repositories = this.repos): Promise<void> {
    await tx.events.insertMany(events.map(toNewEvent));
  }
}

function toNewEvent(e: EventInput): NewEvent {
  return {
    uuid: randomUUID(), type: e.type, state: 'Completed', level: e.level ?? 'INFO', description: e.description.slice(0, 1024),
    userId: e.actor.userId ?? null, accountId: e.actor.accountId ?? null, domainId: e.actor.domainId ?? null,
    resourceType: e.resourceType ?? null, resourceId: e.resourceId ?? null, created: new Date(),
  };
}
