import type { Clock } from '../core/clock';
import type { Logger } from '../core/logger';
import type { MasterKey } from '../config/master-key';
import type { Settings } from '../config/settings';
import type { Repositories } from '../db/repositories';
import type { EventLog } from '../events/event-log';
import type { Directory } from '../identity/directory';
import type { ProviderRegistry } from '../providers/registry';

/**
 * What the KMS services need, and all they may use (docs/architecture.md): the repositories, the
 * KEK backends, the settings, the event log, the identity directory (access and owners), the
 * master key (profile PINs, passphrases), a clock and a logger. app.ts builds it once.
 */
export interface KmsDeps {
  readonly repos: Repositories;
  readonly providers: ProviderRegistry;
  readonly settings: Settings;
  readonly events: EventLog;
  readonly directory: Directory;
  readonly masterKey: MasterKey;
  readonly clock: Clock;
  readonly logger: Logger;
}
