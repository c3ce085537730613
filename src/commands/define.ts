import { isUuid } from '../core/ids';
import type { Caller, Role } from '../identity/caller';
import type { JobOutcome, RunningJob } from '../jobs/types';
import type { Services } from './context';
import type { ApiResult } from './result';

export type { Role } from '../identity/caller';
export { isUuid } from '../core/ids';

export const ALL_ROLES: readonly Role[] = ['Admin', 'DomainAdmin', 'User'];
export const ADMIN_ONLY: readonly Role[] = ['Admin'];

/** BaseCmd.CommandType names, lower-case as listApis shows them. */
export type ParamType = 'string' | 'uuid' | 'integer' | 'long' | 'boolean' | 'map' | 'list' | 'date';

/** A raw value: a string, or for map parameters the `name[i].field=value` groups by index. */
export type RawValue = string | Map<number, Record<string, string>>;

/** Thrown by a parser: the dispatcher turns it into CloudStack's invalid-value 431. */
export class InvalidValue extends Error {}

export interface ParamSpec<T = unknown, Present extends boolean = boolean> {
  readonly type: ParamType;
  readonly description: string;
  readonly required: boolean;
  readonly length: number;
  /** Comma-separated list commands that return this parameter's entity (cmk/UI completion). */
  readonly related?: string;
  readonly since?: string;
  readonly default?: T;
  readonly allowed?: readonly T[];
  parse(raw: RawValue): T;
  /** Type-level only: whether the handler always sees a value. */
  readonly __present?: Present;
}

interface ParamOpts<T> {
  description: string;
  required?: boolean;
  default?: T;
  allowed?: readonly T[];
  length?: number;
  related?: string;
  since?: string;
}

type PresentOf<O> = O extends { required: true } ? true : O extends { default: unknown } ? true : false;

function builder<T>(type: ParamType, parse: (raw: RawValue) => T) {
  return <const O extends ParamOpts<T>>(o: O): ParamSpec<T, PresentOf<O>> => ({
    type,
    description: o.description,
    required: o.required ?? false,
    length: o.length ?? 255,
    related: o.related,
    since: o.since,
    default: o.default,
    allowed: o.allowed,
    parse,
  });
}

const asString = (raw: RawValue): string => {
  if (typeof raw !== 'string') throw new InvalidValue('expected a single value');
  return raw;
};


const parseInteger = (raw: RawValue): number => {
  const s = asString(raw).trim();
  if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new InvalidValue('expected an integer');
  return Number(s);
};

/** Parameter builders; the option object is the only place a default or an allowed list lives. */
export const param = {
  string: builder<string>('string', asString),
  uuid: builder<string>('uuid', (raw) => {
    const s = asString(raw).trim();
    if (!isUuid(s)) throw new InvalidValue('expected a UUID');
    return s.toLowerCase();
  }),
  integer: builder<number>('integer', parseInteger),
  long: builder<number>('long', parseInteger),
  boolean: builder<boolean>('boolean', (raw) => {
    const s = asString(raw).trim().toLowerCase();
    if (s !== 'true' && s !== 'false') throw new InvalidValue('expected true or false');
    return s === 'true';
  }),
  /** `details[0].key=value` (or `details[0].key=k&details[0].value=v`) merged into one record. */
  map: builder<Record<string, string>>('map', (raw) => {
    if (typeof raw === 'string') throw new InvalidValue('expected name[0].key=value pairs');
    const out: Record<string, string> = {};
    for (const index of [...raw.keys()].sort((a, b) => a - b)) {
      const group = raw.get(index)!;
      const keys = Object.keys(group);
      if (keys.length === 2 && 'key' in group && 'value' in group) out[group.key] = group.value;
      else Object.assign(out, group);
    }
    return out;
  }),
  uuidList: builder<string[]>('list', (raw) => {
    const items = asString(raw).split(',').map((s) => s.trim()).filter(Boolean);
    if (!items.length || !items.every(isUuid)) throw new InvalidValue('expected a comma-separated list of UUIDs');
    return items.map((s) => s.toLowerCase());
  }),
  date: builder<string>('date', asString),
};

export type Params = Record<string, ParamSpec>;

/** The handler's view of the parameters: present ones typed, optional ones possibly undefined. */
export type Infer<P extends Params> = {
  [K in keyof P]: P[K] extends ParamSpec<infer T, infer Present> ? (Present extends true ? T : T | undefined) : never;
};

/** A response field as listApis shows it. */
export interface ResponseField {
  readonly name: string;
  readonly type: string;
  readonly description: string;
  readonly response?: readonly ResponseField[];
}

export interface CommandSpec<P extends Params = Params> {
  readonly name: string;
  readonly description: string;
  readonly since?: string;
  readonly isAsync?: boolean;
  readonly roles: readonly Role[];
  /** 'none': answered without credentials (what the UI calls before login). 'login': handled by the session layer. */
  readonly auth?: 'none' | 'login';
  readonly params: P;
  readonly response: readonly ResponseField[];
  /** Other APIs returning the same object (listApis `related`). */
  readonly related?: string;
  /** A legacy wrapper name where CloudStack overrides `<command>response` (e.g. ldapconfigurationresponse). */
  readonly responseName?: string;
  /** Prefix of backend errors ("Failed to rotate KMS key: "), reference/cloudstack-kms-4.23.md §1.12. */
  readonly backendErrorPrefix?: string;
  /** The async half of an async command: its job kind, argument shape and handler (src/commands/jobs.ts). */
  readonly job?: JobSpec<never>;
  readonly handler: (p: Infer<P>, ctx: CommandContext) => Promise<ApiResult>;
}

/** Declares a command once: validation, listApis, apidocs and dispatch all read this. */
export function defineCommand<const P extends Params>(spec: CommandSpec<P>): CommandSpec<P> {
  return spec;
}

/** The response of a command that answers CloudStack's SuccessResponse. */
export const SUCCESS_FIELDS: readonly ResponseField[] = [{ name: 'success', type: 'boolean', description: 'true if operation is executed successfully' }];

/** CloudStack's list parameters (BaseListProjectAndAccountResourcesCmd), as composition. */
export const listParams = {
  keyword: param.string({ description: 'List by keyword' }),
  page: param.integer({ description: 'The page number of the result set (1-based); requires pagesize' }),
  pagesize: param.integer({ description: 'The number of items per page; requires page; -1 for all' }),
};

export const ownerListParams = {
  ...listParams,
  account: param.string({ description: 'List resources by account. Must be used with the domainid parameter.' }),
  domainid: param.uuid({ description: 'List only resources belonging to the domain specified', related: 'listDomains' }),
  isrecursive: param.boolean({ default: false, description: 'Defaults to false, but if true, lists all resources from the parent specified by the domainid till leaves.' }),
  listall: param.boolean({ default: false, description: "If set to false, list only resources belonging to the command's caller; if set to true - list resources that the caller is authorized to see. Default value is false" }),
  projectid: param.string({ description: 'List objects by project; if projectid=-1 lists all resources from all projects the caller may see. Without it no project-owned object is listed', related: 'listProjects' }),
};

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

/** A declared job: `handle` reads its arguments back by the shape and runs it. */
export interface JobSpec<A> {
  readonly kind: string;
  /** Checks arguments before they are stored (the same reading a worker does). */
  readonly check: (args: A) => void;
  readonly handle: (job: RunningJob, ctx: JobContext) => Promise<JobOutcome>;
}
