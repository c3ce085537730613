import { ADMIN_ONLY, ALL_ROLES, defineCommand, listParams, param, type ResponseField } from './define';

/** InfrastructureResponse (plugins/metrics): counts of what the cloud has. */
const infrastructureFields: readonly ResponseField[] = [
  { name: 'zones', type: 'integer', description: 'Number of zones' },
  { name: 'pods', type: 'integer', description: 'Number of pods (always 0: this server manages none)' },
  { name: 'clusters', type: 'integer', description: 'Number of clusters (always 0: this server manages none)' },
  { name: 'hosts', type: 'integer', description: 'Number of hypervisor hosts (always 0: this server manages none)' },
  { name: 'storagepools', type: 'integer', description: 'Number of storage pools (always 0: this server manages none)' },
  { name: 'imagestores', type: 'integer', description: 'Number of images stores (always 0: this server manages none)' },
  { name: 'backuprepositories', type: 'integer', description: 'Number of backup repositories (always 0: this server manages none)' },
  { name: 'objectstores', type: 'integer', description: 'Number of object stores (always 0: this server manages none)' },
  { name: 'systemvms', type: 'integer', description: 'Number of systemvms (always 0: this server runs none)' },
  { name: 'routers', type: 'integer', description: 'Number of routers (always 0: this server runs none)' },
  { name: 'ilbvms', type: 'integer', description: 'Number of internal LBs (always 0: this server runs none)' },
  { name: 'cpusockets', type: 'integer', description: 'Number of cpu sockets (always 0: no hosts)' },
  { name: 'managementservers', type: 'integer', description: 'Number of CloudStack management servers (always 0: this server is none)' },
  { name: 'alerts', type: 'integer', description: 'Number of Alerts (always 0: this server raises none)' },
  { name: 'imagecachestores', type: 'integer', description: 'Number of image cache stores (always 0: this server manages none)' },
];

/**
 * What the UI's pages need to appear (it builds a page only when listApis has every command the page
 * names), answered truthfully: this server manages zones and nothing of a hypervisor cloud, so the
 * counts are zero, the lists empty, and nothing here pretends to manage hosts or VMs.
 */
export const infrastructureCommands = [
  defineCommand({
    name: 'listInfrastructure',
    since: '4.9.3',
    description: 'Lists infrastructure: how many zones this server has; every other count is 0, since it manages no pods, clusters, hosts, storage or system VMs.',
    roles: ADMIN_ONLY,
    params: {},
    response: infrastructureFields,
    async handler(_p, ctx) {
      const { count: zones } = await ctx.repos.zones.list({}, { offset: 0, limit: 1 });
      const none = Object.fromEntries(infrastructureFields.filter((f) => f.name !== 'zones').map((f) => [f.name, 0]));
      return { kind: 'object', name: 'infrastructure', value: { zones, ...none } };
    },
  }),
  defineCommand({
    name: 'listServiceOfferings',
    description: 'Lists service (compute) offerings. No compute offerings exist on this server (it runs no VMs): the list is always empty. Disk offerings are listDiskOfferings.',
    roles: ALL_ROLES,
    params: {
      ...listParams,
      id: param.uuid({ description: 'ID of the service offering', related: 'listServiceOfferings' }),
      name: param.string({ description: 'name of the service offering' }),
      domainid: param.uuid({ description: 'the ID of the domain associated with the service offering', related: 'listDomains' }),
      zoneid: param.uuid({ description: 'id of zone service offering is associated with', related: 'listZones' }),
      isrecursive: param.boolean({ description: 'Defaults to false, but if true, lists all resources from the parent specified by the domainId till leaves.' }),
      issystem: param.boolean({ description: 'is this a system vm offering' }),
      systemvmtype: param.string({ description: 'the system VM type. Possible types are "consoleproxy", "secondarystoragevm" or "domainrouter".' }),
      state: param.string({ description: 'Filter by state of the service offering. Defaults to Active' }),
      listall: param.boolean({ description: 'If set to true, list all service offerings the caller may see' }),
    },
    response: [
      { name: 'id', type: 'string', description: 'the id of the service offering' },
      { name: 'name', type: 'string', description: 'the name of the service offering' },
      { name: 'displaytext', type: 'string', description: 'an alternate display text of the service offering.' },
    ],
    async handler() {
      return { kind: 'list', name: 'serviceoffering', items: [], count: 0 };
    },
  }),
  defineCommand({
    name: 'listResourceIcon',
    since: '4.16.0.0',
    description: 'Lists the resource icon of resources; this server keeps no icons, so the list is always empty (the UI then shows its default icons).',
    roles: ALL_ROLES,
    params: {
      resourceids: param.string({ required: true, description: 'list of resources to upload the icon/image for' }),
      resourcetype: param.string({ required: true, description: 'type of the resource' }),
    },
    response: [
      { name: 'resourcetype', type: 'string', description: 'resource type' },
      { name: 'resourceid', type: 'string', description: 'id of the resource' },
      { name: 'base64image', type: 'string', description: 'base64 representation of resource icon' },
    ],
    async handler() {
      return { kind: 'list', name: 'resourceicon', items: [], count: 0 };
    },
  }),
];
