import type { CommandSpec } from './define';
import { identityCommands } from './identity';
import { identityStateCommands } from './identity-states';
import { domainCommands } from './domains';
import { zoneCommands } from './zones';
import { configurationCommands } from './configurations';
import { roleCommands } from './roles';
import { infrastructureCommands } from './infrastructure';
import { eventCommands } from './events';
import { uiCommands } from './ui';
import { sessionCommands } from './session';
import { listApis } from './list-apis';
import { volumeCommands } from './volumes';
import { diskOfferingCommands } from './disk-offerings';
import { kmsMigrationCommands } from './kms-migration';
import { hsmProfileCommands } from './hsm-profiles';
import { kmsKeyCommands } from './kms-keys';
import { asyncJobCommands } from './async-jobs';
import { masterKeyCommands } from './master-key';
import { projectCommands } from './projects';

/** Every command the server answers, declared once; listApis and apidocs read only this list. */
export const ALL_COMMANDS: readonly CommandSpec[] = [
  ...sessionCommands,
  listApis,
  ...uiCommands,
  ...zoneCommands,
  ...identityCommands,
  ...identityStateCommands,
  ...projectCommands,
  ...domainCommands,
  ...eventCommands,
  ...configurationCommands,
  ...roleCommands,
  ...infrastructureCommands,
  ...asyncJobCommands,
  ...hsmProfileCommands,
  ...kmsKeyCommands,
  ...diskOfferingCommands,
  ...volumeCommands,
  ...kmsMigrationCommands,
  ...masterKeyCommands,
] as readonly CommandSpec[];

export interface Registry {
  readonly commands: readonly CommandSpec[];
  /** Exact (case-sensitive) lookup, as CloudStack's getCmdClass. */
  find(name: string): CommandSpec | undefined;
}

export function createRegistry(commands: readonly CommandSpec[] = ALL_COMMANDS): Registry {
  const byName = new Map<string, CommandSpec>();
  const lower = new Set<string>();
  for (const c of commands) {
    if (lower.has(c.name.toLowerCase())) throw new Error(`Command ${c.name} is declared twice`);
    lower.add(c.name.toLowerCase());
    byName.set(c.name, c);
  }
  return { commands, find: (name) => byName.get(name) };
}

export const registry: Registry = createRegistry();
