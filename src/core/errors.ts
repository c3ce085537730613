/**
 * Errors are data: a kind decides retryability and, through the WIRE table below, the wire code.
 * Messages say what to fix and never carry a PIN, a key or a plaintext.
 */
export type ErrorKind =
  | 'param'          // bad input (also an unknown uuid): 431
  | 'malformed'      // malformed map parameter syntax: 430
  | 'auth'           // signature or session: 401
  | 'permission'     // permission denied: 531
  | 'unknownCommand' // 432
  | 'unavailable'    // HSM or database down, timeouts: retryable
  | 'integrity'      // tampered or swapped wrapped key: never retried
  | 'provider'       // other backend failure; retryable per cause
  | 'resourceInUse'  // 536
  | 'internal';      // a bug: 530

/** The one error type the domain, providers and jobs throw. */
export class KmsError extends Error {
  readonly retryable: boolean;
  constructor(
    readonly kind: ErrorKind,
    message: string,
    opts: { retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'KmsError';
    this.retryable = opts.retryable ?? (kind === 'unavailable');
  }
}

export const paramError = (message: string): KmsError => new KmsError('param', message);
export const permissionError = (message: string): KmsError => new KmsError('permission', message);
export const isKmsError = (e: unknown): e is KmsError => e instanceof KmsError;


/** An error as the wire shows it: HTTP status = errorcode; cserrorcode absent for servlet 401s. */
export class ApiError extends Error {
  constructor(
    readonly errorcode: number,
    message: string,
    readonly cserrorcode?: number,
    /** errorresponse instead of <command>response (unknown command, 432) */
    readonly genericWrapper = false,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * The one table from error kind to wire code (STYLE.md B7; reference/cloudstack-api-protocol.md §3.3).
 * Backend kinds are 530 with CloudStack's command prefix, as 4.23 wraps every KMSException.
 */
export const WIRE: Record<ErrorKind, { errorcode: number; cserrorcode?: number }> = {
  param: { errorcode: 431, cserrorcode: 4350 },
  malformed: { errorcode: 430, cserrorcode: 9999 },
  auth: { errorcode: 401 },
  permission: { errorcode: 531, cserrorcode: 4365 },
  unknownCommand: { errorcode: 432, cserrorcode: 9999 },
  resourceInUse: { errorcode: 536, cserrorcode: 4400 },
  unavailable: { errorcode: 530, cserrorcode: 9999 },
  integrity: { errorcode: 530, cserrorcode: 9999 },
  provider: { errorcode: 530, cserrorcode: 9999 },
  internal: { errorcode: 530, cserrorcode: 4250 },
};

const BACKEND_KINDS: ReadonlySet<ErrorKind> = new Set(['unavailable', 'integrity', 'provider']);

export const GENERIC_INTERNAL_TEXT = 'Internal error executing command, please contact your system administrator';
export const BAD_CREDENTIALS_TEXT = 'unable to verify user credentials and/or request signature';

/**
 * Turns any throwable into the wire error. Backend errors get the command's prefix
 * ("Failed to rotate KMS key: ...", reference §1.12); unknown throwables become a generic 530 and
 * their text is never shown (it may hold a stack or internals).
 */
export function toApiError(err: unknown, opts: { backendPrefix?: string; isRootAdmin: boolean }): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof KmsError) {
    const wire = WIRE[err.kind];
    if (err.kind === 'internal') return new ApiError(530, opts.isRootAdmin ? err.message : GENERIC_INTERNAL_TEXT, wire.cserrorcode);
    const text = BACKEND_KINDS.has(err.kind) && opts.backendPrefix ? `${opts.backendPrefix}${err.message}` : err.message;
    return new ApiError(wire.errorcode, text, wire.cserrorcode, err.kind === 'unknownCommand');
  }
  return new ApiError(530, GENERIC_INTERNAL_TEXT, WIRE.internal.cserrorcode);
}
