/**
 * Errors are data: a kind decides retryability and, through src/api/errors.ts, the wire code.
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
