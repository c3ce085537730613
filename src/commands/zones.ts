import { randomUUID } from 'node:crypto';
import { paramError } from '../core/errors';
import type { Zone } from '../db/repositories/zones';
import { ADMIN_ONLY, ALL_ROLES, defineCommand, listParams, param, type ResponseField } from './define';
import { listUnowned } from './list';

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
  { name: 'type', type: 'string', description: 'the type of the zone - core or edge' },
];

/** ZoneMetricsResponse: the zone and its host metrics; this server has no clusters or hosts, so no capacity figures. */
const zoneMetricsFields: readonly ResponseField[] = [
  ...zoneFields,
  { name: 'state', type: 'string', description: 'State of the zone (its allocation state)' },
  { name: 'clusters', type: 'string', description: 'Healthy / total clusters in the zone (0 / 0: this server manages no clusters)' },
];

const zoneResponse = (z: Zone) => ({
  id: z.uuid, name: z.name, description: z.description ?? undefined, networktype: z.networkType, allocationstate: z.allocationState,
  dns1: z.dns1 ?? undefined, internaldns1: z.internalDns1 ?? undefined, securitygroupsenabled: false, localstorageenabled: false, type: 'Core',
});

const zoneListParams = {
  ...listParams,
  id: param.uuid({ description: 'the ID of the zone', related: 'listZones' }),
  name: param.string({ description: 'the name of the zone' }),
  available: param.boolean({ description: 'true if you want to retrieve all available Zones; false to retrieve only the Zones that are enabled' }),
  showicon: param.boolean({ description: 'flag to display the resource image for the zones' }),
};

export const zoneCommands = [
  defineCommand({
    name: 'listZones',
    description: 'Lists zones',
    roles: ALL_ROLES,
    related: 'createZone',
    params: zoneListParams,
    response: zoneFields,
    async handler(p, ctx) {
      const filter = { uuid: p.id, name: p.name, keyword: p.keyword, enabledOnly: ctx.caller.role !== 'Admin' };
      return listUnowned(p, 'zone', (page) => ctx.repos.zones.list(filter, page), zoneResponse);
    },
  }),
  defineCommand({
    name: 'listZonesMetrics',
    since: '4.9.3',
    description: 'Lists zones metrics (the Zones page of the UI). This server manages no clusters or hosts: every zone shows 0 / 0 clusters and no CPU or memory figures.',
    roles: ADMIN_ONLY,
    related: 'listZones',
    params: zoneListParams,
    response: zoneMetricsFields,
    async handler(p, ctx) {
      const filter = { uuid: p.id, name: p.name, keyword: p.keyword, enabledOnly: false };
      return listUnowned(p, 'zone', (page) => ctx.repos.zones.list(filter, page), (z) => ({ ...zoneResponse(z), state: z.allocationState, clusters: '0 / 0' }));
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
      if (await ctx.repos.zones.findLiveByName(p.name)) {
        throw paramError(`A zone with name ${p.name} already exists`);
      }
      const zone = await ctx.repos.zones.insert({
        uuid: randomUUID(), name: p.name, description: p.description ?? null, networkType: p.networktype,
        allocationState: p.allocationstate, dns1: p.dns1 ?? null, internalDns1: p.internaldns1 ?? null, created: new Date(),
      });
      await ctx.events.record({ type: 'ZONE.CREATE', description: `Successfully created zone ${p.name}`, actor: { userId: ctx.caller.userId, accountId: ctx.caller.accountId, domainId: ctx.caller.domainId }, resourceType: 'Zone', resourceId: zone.uuid });
      return { kind: 'object', name: 'zone', value: zoneResponse(zone) };
    },
  }),
];
