import { AsyncLocalStorage } from 'node:async_hooks';
import pino from 'pino';

/**
 * JSON-line logs on stderr (pino). Fields are printed as given, except the redacted paths below:
 * still, never pass a secret. Lines logged while serving a request or running a job carry its
 * `requestId` (and `job`) without the caller passing them (see withLogContext).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Reads KMS_LOG_LEVEL; an unknown level is refused, naming the allowed ones. */
export function parseLogLevel(value: string | undefined): LogLevel {
  const level = (value || 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new Error(`KMS_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got ${value})`);
  }
  return level as LogLevel;
}

/** What follows a request into the code it runs, and a job into its handler. */
export interface LogContext {
  requestId?: string;
  job?: string;
}

const context = new AsyncLocalStorage<LogContext>();

/** Runs fn with `ctx` attached to every log line written inside it (awaited work included). */
export function withLogContext<T>(ctx: LogContext, fn: () => T): T {
  return context.run({ ...context.getStore(), ...ctx }, fn);
}

/** The request id and job of the work running now, if any. */
export function currentLogContext(): LogContext {
  return context.getStore() ?? {};
}

/**
 * Secret-bearing field names, at the top level and one level down (pino's redaction does not
 * recurse). Values are replaced by `*****`, as CloudStack shows secrets.
 */
const SECRET_FIELDS = [
  'password', 'pin', 'secretkey', 'secretKey', 'secret_key', 'signature', 'sessionkey', 'sessionKey', 'sessionKeyHash',
  'dek', 'plaintext', 'passphrase', 'masterKey', 'master_key', 'encryptionkey', 'cookie', 'authorization',
];
export const REDACT_PATHS: readonly string[] = [
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]),
  'details[*].value', '*.details[*].value', 'params.details', 'headers.cookie', 'headers.authorization',
];

/** A pino logger behind the Logger interface. `destination` defaults to stderr (synchronous, so no line is lost at exit). */
export function createLogger(opts: { level?: LogLevel; destination?: pino.DestinationStream } = {}): Logger {
  const p = pino(
    {
      level: opts.level ?? parseLogLevel(process.env.KMS_LOG_LEVEL),
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...REDACT_PATHS], censor: '*****' },
      mixin: () => ({ ...context.getStore() }),
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
  const emit = (lvl: LogLevel) => (msg: string, fields?: Record<string, unknown>) => p[lvl](fields ?? {}, msg);
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
