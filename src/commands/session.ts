import { ALL_ROLES, defineCommand, param } from './define';

const never = async (): Promise<never> => {
  throw new Error('login and logout are answered by the session layer');
};

/** Declarations only: src/api/login.ts answers these before any authentication. */
export const sessionCommands = [
  defineCommand({
    name: 'login',
    description: 'Logs a user into the CloudStack. A successful login attempt will generate a JSESSIONID cookie value that can be passed in subsequent Query command calls until the "logout" command has been issued or the session has expired.',
    roles: ALL_ROLES,
    auth: 'login',
    params: {
      username: param.string({ required: true, description: 'Username' }),
      password: param.string({ required: true, description: 'Plain-text password; send it only by POST over TLS' }),
      domain: param.string({ description: 'Path of the domain that the user belongs to, e.g. domain=/ or domain=/sub/; defaults to ROOT' }),
      domainid: param.uuid({ description: 'The id of the domain that the user belongs to; takes precedence over domain', related: 'listDomains' }),
    },
    response: [
      { name: 'username', type: 'string', description: 'Username' },
      { name: 'userid', type: 'string', description: 'User ID' },
      { name: 'domainid', type: 'string', description: 'Domain ID that the user belongs to' },
      { name: 'timeout', type: 'int', description: 'the time period before the session has expired' },
      { name: 'account', type: 'string', description: 'the account name the user belongs to' },
      { name: 'firstname', type: 'string', description: 'first name of the user' },
      { name: 'lastname', type: 'string', description: 'last name of the user' },
      { name: 'type', type: 'string', description: 'the account type (admin, domain-admin, read-only-admin, user)' },
      { name: 'timezone', type: 'string', description: 'the time zone of the user, when the user has one' },
      { name: 'timezoneoffset', type: 'string', description: "the user's offset from UTC in hours (0.0 when the user has no time zone)" },
      { name: 'issuerfor2fa', type: 'string', description: 'the issuer name shown by two-factor authenticator apps' },
      { name: 'managementserverid', type: 'string', description: 'the ID of the management server (root admin only)' },
      { name: 'sessionkey', type: 'string', description: 'Session key that can be passed in subsequent Query command calls' },
      { name: 'registered', type: 'string', description: 'Is user registered' },
      { name: 'is2faenabled', type: 'string', description: 'Is two factor authentication enabled' },
      { name: 'is2faverified', type: 'string', description: 'Is two factor authentication verified' },
    ],
    handler: never,
  }),
  defineCommand({
    name: 'logout',
    description: 'Logs out the user',
    roles: ALL_ROLES,
    auth: 'login',
    params: {},
    response: [{ name: 'description', type: 'string', description: 'success if the logout action succeeded' }],
    handler: never,
  }),
];
