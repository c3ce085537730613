import { ApiError, GENERIC_INTERNAL_TEXT, KmsError, toApiError, WIRE, type ErrorKind } from '../../src/core/errors';

/**
 * The one table from error kind to CloudStack's wire codes (reference/cloudstack-api-protocol.md
 * §3.2–3.3: ApiErrorCode for the HTTP status, CSExceptionErrorCode for cserrorcode). cmk prints
 * both numbers and scripts match on them, so the table is pinned here cell by cell.
 */
const EXPECTED: Record<ErrorKind, { errorcode: number; cserrorcode?: number; retryable: boolean }> = {
  param: { errorcode: 431, cserrorcode: 4350, retryable: false },          // InvalidParameterValueException
  malformed: { errorcode: 430, cserrorcode: 9999, retryable: false },      // MALFORMED_PARAMETER_ERROR
  auth: { errorcode: 401, retryable: false },                              // servlet 401: no cserrorcode
  permission: { errorcode: 531, cserrorcode: 4365, retryable: false },     // PermissionDeniedException
  unknownCommand: { errorcode: 432, cserrorcode: 9999, retryable: false }, // UNSUPPORTED_ACTION_ERROR
  resourceInUse: { errorcode: 536, cserrorcode: 4400, retryable: false },  // RESOURCE_IN_USE_ERROR
  unavailable: { errorcode: 530, cserrorcode: 9999, retryable: true },     // KMSException → INTERNAL_ERROR
  integrity: { errorcode: 530, cserrorcode: 9999, retryable: false },
  provider: { errorcode: 530, cserrorcode: 9999, retryable: false },
  internal: { errorcode: 530, cserrorcode: 4250, retryable: false },       // CloudRuntimeException
};

describe('the error wire table', () => {
  it('maps every error kind to CloudStack\'s errorcode and cserrorcode, and nothing else', () => {
    expect(Object.keys(WIRE).sort()).toEqual(Object.keys(EXPECTED).sort());
    for (const kind of Object.keys(EXPECTED) as ErrorKind[]) {
      const { retryable, ...wire } = EXPECTED[kind];
      expect({ kind, ...WIRE[kind] }).toEqual({ kind, ...wire });
      expect({ kind, retryable: new KmsError(kind, 'x').retryable }).toEqual({ kind, retryable });
      const api = toApiError(new KmsError(kind, 'what to fix'), { isRootAdmin: true });
      expect({ kind, status: api.errorcode, cs: api.cserrorcode }).toEqual({ kind, status: wire.errorcode, cs: wire.cserrorcode });
    }
  });

  it('prefixes backend failures with the command\'s text, and only those', () => {
    const prefix = 'Failed to rotate KMS key: ';
    for (const kind of ['unavailable', 'integrity', 'provider'] as const) {
      expect(toApiError(new KmsError(kind, 'HSM is down'), { backendPrefix: prefix, isRootAdmin: false }).message).toBe(`${prefix}HSM is down`);
    }
    expect(toApiError(new KmsError('param', 'Key bits must be 128, 192, or 256'), { backendPrefix: prefix, isRootAdmin: false }).message)
      .toBe('Key bits must be 128, 192, or 256');
  });

  it('shows an internal error\'s text to a root admin only, and never the text of an unknown throwable', () => {
    const internal = new KmsError('internal', 'row 7 has no KEK version');
    expect(toApiError(internal, { isRootAdmin: true }).message).toBe('row 7 has no KEK version');
    expect(toApiError(internal, { isRootAdmin: false }).message).toBe(GENERIC_INTERNAL_TEXT);
    const bug = toApiError(new TypeError("Cannot read properties of undefined (reading 'secret')"), { isRootAdmin: true });
    expect({ status: bug.errorcode, cs: bug.cserrorcode, text: bug.message }).toEqual({ status: 530, cs: 4250, text: GENERIC_INTERNAL_TEXT });
  });

  it('answers an unknown command under errorresponse, and passes an ApiError through unchanged', () => {
    expect(toApiError(new KmsError('unknownCommand', 'Unknown API command: fooBar'), { isRootAdmin: true }).genericWrapper).toBe(true);
    expect(toApiError(new KmsError('param', 'x'), { isRootAdmin: true }).genericWrapper).toBe(false);
    const given = new ApiError(400, 'no command specified');
    expect(toApiError(given, { isRootAdmin: false })).toBe(given);
  });
});
