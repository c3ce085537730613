import { listUnowned } from './list';
import type { SettingSpec } from '../config/settings';
import { ADMIN_ONLY, defineCommand, listParams, param, type ResponseField } from './define';

const configurationFields: readonly ResponseField[] = [
  { name: 'name', type: 'string', description: 'the name of the configuration' },
  { name: 'category', type: 'string', description: 'the category of the configuration' },
  { name: 'value', type: 'string', description: 'the value of the configuration' },
  { name: 'defaultvalue', type: 'string', description: 'the default value of the configuration' },
  { name: 'description', type: 'string', description: 'the description of the configuration' },
  { name: 'scope', type: 'string', description: 'scope(zone/cluster/pool/account) of the parameter that needs to be updated' },
  { name: 'isdynamic', type: 'boolean', description: 'true if the configuration is dynamic' },
  { name: 'type', type: 'string', description: 'The type of the configuration value' },
  { name: 'options', type: 'string', description: 'The possible options of the configuration value' },
  { name: 'displaytext', type: 'string', description: 'The display text of the configuration' },
  { name: 'component', type: 'string', description: 'the component of the configuration' },
];

const configurationResponse = (spec: SettingSpec, value: string) => ({
  category: spec.category, name: spec.name, value, defaultvalue: spec.defaultValue, description: spec.description,
  scope: 'global', isdynamic: true, component: spec.name.startsWith('kms.') ? 'KMSManager' : 'ApiServer', type: spec.type,
  options: spec.options?.join(','), displaytext: spec.name.split('.').map((w) => w[0]!.toUpperCase() + w.slice(1)).join(' '),
});

export const configurationCommands = [
  defineCommand({
    name: 'listConfigurations',
    description: 'Lists all configurations.',
    roles: ADMIN_ONLY,
    related: 'updateConfiguration',
    params: {
      ...listParams,
      name: param.string({ description: 'lists configurations whose name contains this text (as CloudStack, a substring match)' }),
      category: param.string({ description: 'lists configurations by category' }),
    },
    response: configurationFields,
    async handler(p, ctx) {
      return listUnowned(p, 'configuration', async ({ offset, limit }) => {
        const all = (await ctx.settings.all()).filter(({ spec }) =>
          (!p.name || spec.name.toLowerCase().includes(p.name.toLowerCase())) && (!p.category || spec.category.toLowerCase() === p.category.toLowerCase()) &&
          (!p.keyword || spec.name.toLowerCase().includes(p.keyword.toLowerCase())));
        return { rows: all.slice(offset, limit === undefined ? undefined : offset + limit), count: all.length };
      }, ({ spec, value }) => configurationResponse(spec, value));
    },
  }),
  defineCommand({
    name: 'updateConfiguration',
    description: 'Updates a configuration. The kms.* settings take effect at the next operation or rewrap tick, without a restart.',
    roles: ADMIN_ONLY,
    related: 'listConfigurations',
    params: {
      name: param.string({ required: true, description: 'the name of the configuration' }),
      value: param.string({ length: 4095, description: 'the value of the configuration' }),
    },
    response: configurationFields,
    async handler(p, ctx) {
      const spec = await ctx.settings.set(p.name, p.value ?? '');
      await ctx.events.record({
        type: 'CONFIGURATION.VALUE.EDIT', description: `Value of ${p.name} changed to ${p.value ?? ''}`,
        actor: { userId: ctx.caller.userId, accountId: ctx.caller.accountId, domainId: ctx.caller.domainId },
      });
      return { kind: 'object', name: 'configuration', value: configurationResponse(spec, p.value ?? '') };
    },
  }),
];
