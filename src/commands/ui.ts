import { CUSTOM_DISK_SIZE_GB } from '../kms/disk-offerings';
import { ALL_ROLES, defineCommand, listParams, param } from './define';

const CLOUDSTACK_VERSION = '4.23.0.0';

/**
 * What the CloudStack UI calls around login and on its forms; answered so it renders without
 * errors or logouts. `listIdps` is deliberately absent: CloudStack without the SAML plugin enabled
 * has no such command, so an anonymous call gets 401, which the UI's request handler lets through
 * for listIdps alone (its login page then shows no SAML tab). An empty list would make the login
 * page read `idps[0].id` and throw.
 */
export const uiCommands = [
  defineCommand({
    name: 'listCapabilities',
    description: 'Lists capabilities',
    roles: ALL_ROLES,
    params: {},
    response: [
      { name: 'cloudstackversion', type: 'string', description: 'version of the cloud stack' },
      { name: 'securitygroupsenabled', type: 'boolean', description: 'true if security groups support is enabled, false otherwise' },
      { name: 'dynamicrolesenabled', type: 'boolean', description: 'true if dynamic role-based api checker is enabled, false otherwise' },
      { name: 'defaultuipagesize', type: 'long', description: 'default page size in the UI for various views' },
      { name: 'kmsenabled', type: 'boolean', description: 'true when the Key Management Service (HSM profiles, KMS keys) is available' },
      { name: 'hashsmprofiles', type: 'boolean', description: 'true when HSM profiles can be used (the UI shows Key Management)' },
    ],
    async handler() {
      return {
        kind: 'object',
        name: 'capability',
        value: {
          securitygroupsenabled: false,
          dynamicrolesenabled: true,
          cloudstackversion: CLOUDSTACK_VERSION,
          userpublictemplateenabled: false,
          supportELB: 'false',
          projectinviterequired: false,
          allowusercreateprojects: true,
          customdiskofferingminsize: CUSTOM_DISK_SIZE_GB.min,
          customdiskofferingmaxsize: CUSTOM_DISK_SIZE_GB.max,
          kubernetesserviceenabled: false,
          kubernetesclusterexperimentalfeaturesenabled: false,
          allowuserviewdestroyedvm: false,
          allowuserexpungerecovervm: false,
          allowuserexpungerecovervolume: false,
          allowuserviewalldomainaccounts: false,
          apilimitinterval: 1,
          apilimitmax: 0,
          defaultuipagesize: 20,
          instancesstatsretentiontime: 720,
          instancesstatsuseronly: false,
          instancesdisksstatsretentionenabled: false,
          sharedfsvmmincpucount: 2,
          sharedfsvmminramsize: 1024,
          kmsenabled: true,
          hashsmprofiles: true,
        },
      };
    },
  }),
  defineCommand({
    name: 'listGuiThemes',
    description: 'Lists GUI themes; this server has none, so the UI keeps its default look',
    roles: ALL_ROLES,
    auth: 'none',
    params: { ...listParams, commonname: param.string({ description: 'The common name of the theme' }) },
    response: [{ name: 'id', type: 'string', description: 'ID of the theme' }],
    async handler() {
      return { kind: 'list', name: 'guiThemes', items: [], count: 0 };
    },
  }),
  defineCommand({
    name: 'listOauthProvider',
    description: 'Lists the OAuth providers; this server has none',
    roles: ALL_ROLES,
    auth: 'none',
    params: { ...listParams, provider: param.string({ description: 'Name of the provider' }) },
    response: [{ name: 'provider', type: 'string', description: 'Name of the provider' }],
    async handler() {
      return { kind: 'list', name: 'oauthprovider', items: [], count: 0 };
    },
  }),
  defineCommand({
    name: 'forgotPassword',
    description: 'Tells whether password reset by e-mail is enabled; it is not on this server',
    roles: ALL_ROLES,
    auth: 'none',
    params: {
      username: param.string({ description: 'Username' }),
      domain: param.string({ description: 'Path of the domain that the user belongs to' }),
    },
    response: [{ name: 'enabled', type: 'boolean', description: 'whether password reset by e-mail is enabled' }],
    async handler() {
      return { kind: 'flat', value: { enabled: false } };
    },
  }),
  defineCommand({
    name: 'listLdapConfigurations',
    description: 'Lists LDAP configurations; this server has none',
    roles: ALL_ROLES,
    responseName: 'ldapconfigurationresponse',
    params: { ...listParams, hostname: param.string({ description: 'Hostname' }) },
    response: [{ name: 'hostname', type: 'string', description: 'name of the host running the ldap server' }],
    async handler() {
      return { kind: 'list', name: 'LdapConfiguration', items: [], count: 0 };
    },
  }),
  defineCommand({
    name: 'listStorageTags',
    description: 'Lists storage tags; this server has no primary storage, so none (the disk offering form asks)',
    roles: ['Admin'],
    params: { ...listParams },
    response: [{ name: 'name', type: 'string', description: 'the name of the storage tag' }],
    async handler() {
      return { kind: 'list', name: 'storagetag', items: [], count: 0 };
    },
  }),
  defineCommand({
    name: 'cloudianIsEnabled',
    description: 'Checks if the Cloudian Connector is enabled; it is not on this server',
    roles: ALL_ROLES,
    params: {},
    response: [{ name: 'enabled', type: 'boolean', description: 'the Cloudian connector enabled state' }],
    async handler() {
      return { kind: 'object', name: 'cloudianisenabled', value: { enabled: false, url: '' } };
    },
  }),
];
