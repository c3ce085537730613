import { KmsError } from '../core/errors';
import type { Role } from './define';
import { ALL_ROLES, defineCommand, param, type CommandSpec, type ResponseField } from './define';

/** The listApis entry of one command (reference/cloudstack-api-protocol.md §5: what cmk type-asserts). */
export function describeApi(c: CommandSpec): Record<string, unknown> {
  const params = Object.entries(c.params).map(([name, p]) => {
    const entry: Record<string, unknown> = {
      name,
      description: p.description,
      type: p.type,
      length: p.length,
      required: p.required,
    };
    if (p.related) entry.related = p.related;
    if (p.since) entry.since = p.since;
    return entry;
  });
  const response = (fields: readonly ResponseField[]): Array<Record<string, unknown>> =>
    fields.map((f) => (f.response ? { name: f.name, description: f.description, type: f.type, response: response(f.response) } : { ...f }));
  const api: Record<string, unknown> = { name: c.name, description: c.description };
  if (c.since) api.since = c.since;
  api.isasync = c.isAsync === true;
  if (c.related) api.related = c.related;
  api.params = params;
  api.response = response(c.isAsync ? [...c.response, ...ASYNC_FIELDS] : c.response);
  return api;
}

const ASYNC_FIELDS: readonly ResponseField[] = [
  { name: 'jobid', type: 'string', description: 'the UUID of the latest async job acting on this object' },
  { name: 'jobstatus', type: 'integer', description: 'the current status of the latest async job acting on this object' },
];

export const availableTo = (role: Role) => (c: CommandSpec): boolean => c.auth === 'none' || c.auth === 'login' || c.roles.includes(role);

export const listApis = defineCommand({
  name: 'listApis',
  description: 'Lists all available APIs and their parameters, filtered by the role of the caller',
  since: '4.1.0',
  roles: ALL_ROLES,
  params: {
    name: param.string({ description: 'API name' }),
  },
  response: [
    { name: 'name', type: 'string', description: 'the name of the api command' },
    { name: 'description', type: 'string', description: 'description of the api' },
    { name: 'since', type: 'string', description: 'version of CloudStack the api was introduced in' },
    { name: 'isasync', type: 'boolean', description: 'true if api is asynchronous' },
    { name: 'related', type: 'string', description: 'comma separated related apis' },
    { name: 'params', type: 'set', description: 'the list params the api accepts' },
    { name: 'response', type: 'set', description: 'api response fields' },
  ],
  async handler(p, ctx) {
    const visible = ctx.commands.filter(availableTo(ctx.caller.role));
    const chosen = p.name === undefined ? visible : visible.filter((c) => c.name === p.name);
    if (chosen.length === 0) {
      // CloudStack answers 530 for an unknown name (reference §5.1).
      throw new KmsError('provider', 'Api Discovery plugin was unable to find an api by that name or process any apis');
    }
    return { kind: 'list', name: 'api', items: chosen.map(describeApi), count: chosen.length };
  },
});
