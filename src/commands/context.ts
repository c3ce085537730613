import type { App } from '../app';
import type { Caller } from '../identity/caller';
import type { CommandSpec } from './define';

/** What a handler may use: the caller and the application's services (never the HTTP request). */
export interface CommandContext {
  readonly caller: Caller;
  readonly app: App;
  /** The command name as declared. */
  readonly command: string;
  /** Every command this server answers (listApis reads it). */
  readonly commands: readonly CommandSpec[];
}
