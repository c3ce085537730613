import { paramError } from '../core/errors';
import type { ScopeKind, ScopeTarget, SettingContext, SettingSpec } from '../config/settings';
import { listUnowned } from './list';
import { ADMIN_ONLY, defineCommand, listParams, param, type CommandContext, type ResponseField } from './define';

const configurationFields: readonly ResponseField[] = [
  { name: 'name', type: 'string', description: 'the name of the configuration' },
  { name: 'category', type: 'string', description: 'the category of the configuration' },
  { name: 'value', type: 'string', description: 'the value of the configuration (in the zone, domain or account asked for, the value that applies there)' },
  { name: 'defaultvalue', type: 'string', description: 'the default value of the configuration' },
  { name: 'description', type: 'string', description: 'the description of the configuration' },
  { name: 'scope', type: 'string', description: 'scope (global, zone, domain or account) of the value shown' },
  { name: 'isdynamic', type: 'boolean', description: 'true if the configuration is dynamic' },
  { name: 'type', type: 'string', description: 'The type of the configuration value' },
  { name: 'options', type: 'string', description: 'The possible options of the configuration value' },
  { name: 'displaytext', type: 'string', description: 'The display text of the configuration' },
  { name: 'component', type: 'string', description: 'the component of the configuration' },
];

const configurationResponse = (spec: SettingSpec, value: string, scope: ScopeKind | 'global' = 'global') => ({
  category: spec.category, name: spec.name, value, defaultvalue: spec.defaultValue, description: spec.description,
  scope, isdynamic: true, component: spec.name.startsWith('kms.') ? 'KMSManager' : 'ApiServer', type: spec.type,
  options: spec.options?.join(','), displaytext: spec.name.split('.').map((w) => w[0]!.toUpperCase() + w.slice(1)).join(' '),
});

/** zoneid, domainid and accountid, as UpdateCfgCmd/ListCfgsByCmd/ResetCfgCmd declare them. */
const scopeParams = {
  zoneid: param.uuid({ description: 'the ID of the Zone to update the parameter value for corresponding zone', related: 'listZones' }),
  domainid: param.uuid({ description: 'the ID of the Domain to update the parameter value for corresponding domain', related: 'listDomains' }),
  accountid: param.uuid({ description: 'the ID of the Account to update the parameter value for corresponding account', related: 'listAccounts' }),
};

interface ScopeRequest { zoneid?: string; domainid?: string; accountid?: string }

/**
 * The one zone, domain or account a request names, with the context a read there has (an account's
 * value falls back to its domain's). None: the global value. More than one: CloudStack's 431.
 */
async function scopeOf(ctx: CommandContext, p: ScopeRequest): Promise<{ target: ScopeTarget; context: SettingContext } | undefined> {
  const named = [p.zoneid, p.domainid, p.accountid].filter((v) => v !== undefined);
  if (named.length > 1) throw paramError('cannot handle multiple IDs, provide only one ID corresponding to the scope');
  if (p.zoneid) {
    const zone = await ctx.repos.zones.findLive(p.zoneid);
    if (!zone) throw paramError(`unable to find zone by id ${p.zoneid}`);
    return { target: { scope: 'zone', id: zone.id }, context: { zoneId: zone.id } };
  }
  if (p.domainid) {
    const domain = await ctx.repos.domains.byUuid(p.domainid);
    if (!domain) throw paramError(`unable to find domain by id ${p.domainid}`);
    return { target: { scope: 'domain', id: domain.id }, context: { domainId: domain.id } };
  }
  if (p.accountid) {
    const account = await ctx.repos.accounts.byUuid(p.accountid);
    if (!account) throw paramError(`unable to find account by id ${p.accountid}`);
    return { target: { scope: 'account', id: account.id }, context: { accountId: account.id, domainId: account.domainId } };
  }
  return undefined;
}

const actorOf = (ctx: CommandContext) => ({ userId: ctx.caller.userId, accountId: ctx.caller.accountId, domainId: ctx.caller.domainId });

export const configurationCommands = [
  defineCommand({
    name: 'listConfigurations',
    description: 'Lists all configurations. With zoneid, domainid or accountid: only the settings that have that scope, each with the value that applies there.',
    roles: ADMIN_ONLY,
    related: 'updateConfiguration',
    params: {
      ...listParams,
      name: param.string({ description: 'lists configurations whose name contains this text (as CloudStack, a substring match)' }),
      category: param.string({ description: 'lists configurations by category' }),
      ...scopeParams,
    },
    response: configurationFields,
    async handler(p, ctx) {
      const scoped = await scopeOf(ctx, p);
      return listUnowned(p, 'configuration', async ({ offset, limit }) => {
        const values = scoped ? await ctx.settings.inScope(scoped.target.scope, scoped.context) : await ctx.settings.all();
        const all = values.filter(({ spec }) =>
          (!p.name || spec.name.toLowerCase().includes(p.name.toLowerCase())) && (!p.category || spec.category.toLowerCase() === p.category.toLowerCase()) &&
          (!p.keyword || spec.name.toLowerCase().includes(p.keyword.toLowerCase())));
        return { rows: all.slice(offset, limit === undefined ? undefined : offset + limit), count: all.length };
      }, ({ spec, value }) => configurationResponse(spec, value, scoped?.target.scope));
    },
  }),
  defineCommand({
    name: 'updateConfiguration',
    description: 'Updates a configuration, globally or (zoneid, domainid, accountid) for one zone, domain or account when the setting has that scope; a scope it lacks is refused and nothing changes. The kms.* settings take effect at the next operation or rewrap tick, without a restart.',
    roles: ADMIN_ONLY,
    related: 'listConfigurations',
    params: {
      name: param.string({ required: true, description: 'the name of the configuration' }),
      value: param.string({ length: 4095, description: 'the value of the configuration' }),
      ...scopeParams,
    },
    response: configurationFields,
    async handler(p, ctx) {
      const scoped = await scopeOf(ctx, p);
      const value = p.value ?? '';
      const spec = await ctx.settings.set(p.name, value, scoped?.target);
      const where = scoped ? `${scoped.target.scope} ${p.zoneid ?? p.domainid ?? p.accountid}` : 'global';
      await ctx.events.record({ type: 'CONFIGURATION.VALUE.EDIT', description: `Value of ${p.name} changed to ${value} (scope: ${where})`, actor: actorOf(ctx) });
      return { kind: 'object', name: 'configuration', value: configurationResponse(spec, value, scoped?.target.scope) };
    },
  }),
  defineCommand({
    name: 'resetConfiguration',
    since: '4.16.0',
    description: 'Resets a configuration: the global value back to its default, or the value of one zone, domain or account removed (what it inherits applies again).',
    roles: ADMIN_ONLY,
    related: 'listConfigurations,updateConfiguration',
    params: {
      name: param.string({ required: true, description: 'the name of the configuration' }),
      ...scopeParams,
    },
    response: configurationFields,
    async handler(p, ctx) {
      const scoped = await scopeOf(ctx, p);
      const spec = await ctx.settings.reset(p.name, scoped?.target);
      const value = scoped ? await ctx.settings.get(spec.name as Parameters<typeof ctx.settings.get>[0], scoped.context) : spec.defaultValue;
      const where = scoped ? `${scoped.target.scope} ${p.zoneid ?? p.domainid ?? p.accountid}` : 'global';
      await ctx.events.record({ type: 'CONFIGURATION.VALUE.EDIT', description: `Value of ${p.name} reset to ${value} (scope: ${where})`, actor: actorOf(ctx) });
      return { kind: 'object', name: 'configuration', value: configurationResponse(spec, value, scoped?.target.scope) };
    },
  }),
];
