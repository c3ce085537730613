import { randomUUID } from 'node:crypto';
import { pageWindow } from './pagination';
import { pagedRows } from '../db/paging';
import { paramError } from '../core/errors';
import { ADMIN_ONLY, ALL_ROLES, defineCommand, listParams, param, type ResponseField } from './define';

interface ZoneRow { id: number; uuid: string; name: string; description: string | null; networktype: string; allocation_state: string; dns1: string | null; internal_dns1: string | null }

const zoneFields: readonly ResponseField[] = [
  { name: 'id', type: 'string', description: 'Zone id' },
  { name: 'name', type: 'string', description: 'Zone name' },
  { name: 'description', type: 'string', description: 'Zone description' },
  { name: 'networktype', type: 'string', description: 'the network type of the zone; can be Basic or Advanced' },
  { name: 'allocationstate', type: 'string', description: 'the allocation state of the cluster' },
  { name: 'dns1', type: 'string', description: 'the first DNS for the Zone' },
  { name: 'internaldns1', type: 'string', description: 'the first internal DNS for the Zone' },
  { name: 'securitygroupsenabled', type: 'boolean', description: 'true if security groups support is enabled, false otherwise' },
  { name: 'localstorageenabled', type: 'boolean', description: 'true if local storage offering enabled, false otherwise' },
];

const zoneResponse = (z: ZoneRow) => ({
  id: z.uuid, name: z.name, description: z.description ?? undefined, networktype: z.networktype, allocationstate: z.allocation_state,
  dns1: z.dns1 ?? undefined, internaldns1: z.internal_dns1 ?? undefined, securitygroupsenabled: false, localstorageenabled: false,
});

export const zoneCommands = [
  defineCommand({
    name: 'listZones',
    description: 'Lists zones',
    roles: ALL_ROLES,
    related: 'createZone',
    params: {
      ...listParams,
      id: param.uuid({ description: 'the ID of the zone', related: 'listZones' }),
      name: param.string({ description: 'the name of the zone' }),
      available: param.boolean({ description: 'true if you want to retrieve all available Zones; false to retrieve only the Zones that are enabled' }),
      showicon: param.boolean({ description: 'flag to display the resource image for the zones' }),
    },
    response: zoneFields,
    async handler(p, ctx) {
      const q = ctx.app.db('data_center').whereNull('removed').orderBy('id');
      if (p.id) q.where('uuid', p.id);
      if (p.name) q.where('name', p.name);
      if (p.keyword) q.where('name', 'like', `%${p.keyword}%`);
      if (ctx.caller.role !== 'Admin') q.where('allocation_state', 'Enabled');
      const { rows, count } = await pagedRows<ZoneRow>(q, pageWindow(p));
      return { kind: 'list', name: 'zone', items: rows.map(zoneResponse), count };
    },
  }),
  defineCommand({
    name: 'createZone',
    description: 'Creates a Zone. Zones scope KMS keys and volumes on this server.',
    roles: ADMIN_ONLY,
    related: 'listZones',
    params: {
      name: param.string({ required: true, description: 'the name of the Zone' }),
      networktype: param.string({ default: 'Advanced', allowed: ['Basic', 'Advanced'], description: 'network type of the zone, can be Basic or Advanced' }),
      dns1: param.string({ description: 'the first DNS for the Zone' }),
      internaldns1: param.string({ description: 'the first internal DNS for the Zone' }),
      allocationstate: param.string({ default: 'Enabled', allowed: ['Enabled', 'Disabled'], description: 'Allocation state of this Zone for allocation of new resources' }),
      description: param.string({ description: 'the description of the zone' }),
    },
    response: zoneFields,
    async handler(p, ctx) {
      if (await ctx.app.db('data_center').where({ name: p.name }).whereNull('removed').first()) {
        throw paramError(`A zone with name ${p.name} already exists`);
      }
      const row = {
        uuid: randomUUID(), name: p.name, description: p.description ?? null, networktype: p.networktype,
        allocation_state: p.allocationstate, dns1: p.dns1 ?? null, internal_dns1: p.internaldns1 ?? null, created: Date.now(),
      };
      const [id] = await ctx.app.db('data_center').insert(row);
      await ctx.app.events.record({ type: 'ZONE.CREATE', description: `Successfully created zone ${p.name}`, actor: { userId: ctx.caller.userId, accountId: ctx.caller.accountId, domainId: ctx.caller.domainId }, resourceType: 'Zone', resourceId: row.uuid });
      return { kind: 'object', name: 'zone', value: zoneResponse({ ...row, id: Number(id) }) };
    },
  }),
];
