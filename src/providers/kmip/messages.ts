/**
 * KMIP 1.x request and response messages for the operations this server uses (Create, Activate,
 * Locate, Encrypt, Decrypt, Revoke, Destroy, Query, Discover Versions), built from the tag and
 * enumeration values of the KMIP 1.4 specification (§9.1.3). Pure functions over TTLV items.
 */
import {
  byteString, childOf, childrenOf, enumeration, expectType, integer, structure, textString, TtlvError, type TtlvItem,
} from './ttlv';

/** Item tags (KMIP 1.4 §9.1.3.1). */
export const Tag = {
  Attribute: 0x420008,
  AttributeName: 0x42000a,
  AttributeValue: 0x42000b,
  Authentication: 0x42000c,
  BatchCount: 0x42000d,
  BatchErrorContinuationOption: 0x42000e,
  BatchItem: 0x42000f,
  BlockCipherMode: 0x420011,
  Credential: 0x420023,
  CredentialType: 0x420024,
  CredentialValue: 0x420025,
  CryptographicAlgorithm: 0x420028,
  CryptographicLength: 0x42002a,
  CryptographicParameters: 0x42002b,
  CryptographicUsageMask: 0x42002c,
  IvCounterNonce: 0x42003d,
  MaximumResponseSize: 0x420050,
  Name: 0x420053,
  NameType: 0x420054,
  NameValue: 0x420055,
  ObjectType: 0x420057,
  Operation: 0x42005c,
  ProtocolVersion: 0x420069,
  ProtocolVersionMajor: 0x42006a,
  ProtocolVersionMinor: 0x42006b,
  QueryFunction: 0x420074,
  RequestHeader: 0x420077,
  RequestMessage: 0x420078,
  RequestPayload: 0x420079,
  ResponseHeader: 0x42007a,
  ResponseMessage: 0x42007b,
  ResponsePayload: 0x42007c,
  ResultMessage: 0x42007d,
  ResultReason: 0x42007e,
  ResultStatus: 0x42007f,
  RevocationReason: 0x420081,
  RevocationReasonCode: 0x420082,
  TemplateAttribute: 0x420091,
  UniqueBatchItemId: 0x420093,
  UniqueIdentifier: 0x420094,
  Username: 0x420099,
  Password: 0x4200a1,
  Data: 0x4200c2,
  MacData: 0x4200c6,
  PaddingMethod: 0x42005f,
  TagLength: 0x4200ce,
  AuthenticatedEncryptionAdditionalData: 0x4200fe,
  AuthenticatedEncryptionTag: 0x4200ff,
} as const;

/** Operation enumeration (§9.1.3.2.27). */
export const Operation = {
  Create: 0x01, Locate: 0x08, Activate: 0x12, Revoke: 0x13, Destroy: 0x14, Query: 0x18,
  DiscoverVersions: 0x1e, Encrypt: 0x1f, Decrypt: 0x20, MAC: 0x23,
} as const;
export type OperationName = keyof typeof Operation;
const OPERATION_NAMES = new Map<number, OperationName>(Object.entries(Operation).map(([k, v]) => [v, k as OperationName]));

/** Result Reason enumeration (§9.1.3.2.29), by the names used in error texts. */
export const ResultReason: Readonly<Record<number, string>> = {
  0x01: 'Item Not Found', 0x02: 'Response Too Large', 0x03: 'Authentication Not Successful', 0x04: 'Invalid Message',
  0x05: 'Operation Not Supported', 0x06: 'Missing Data', 0x07: 'Invalid Field', 0x08: 'Feature Not Supported',
  0x09: 'Operation Canceled By Requester', 0x0a: 'Cryptographic Failure', 0x0b: 'Illegal Operation',
  0x0c: 'Permission Denied', 0x0d: 'Object Archived', 0x0e: 'Index Out Of Bounds', 0x18: 'Object Already Exists',
  0x100: 'General Failure',
};
export const REASON_ITEM_NOT_FOUND = 0x01;
export const REASON_AUTHENTICATION = 0x03;
export const REASON_CRYPTOGRAPHIC_FAILURE = 0x0a;
export const REASON_PERMISSION_DENIED = 0x0c;
export const REASON_GENERAL_FAILURE = 0x100;

const OBJECT_SYMMETRIC_KEY = 0x02;
const ALGORITHM_AES = 0x03;
const MODE_GCM = 0x09;
const MODE_CBC = 0x01;
const PADDING_PKCS5 = 0x03;
const USAGE_MAC_GENERATE = 0x80;
const USAGE_MAC_VERIFY = 0x100;
const USAGE_ENCRYPT = 0x04;
const USAGE_DECRYPT = 0x08;
const NAME_UNINTERPRETED_TEXT = 0x01;
const CREDENTIAL_USERNAME_PASSWORD = 0x01;
const BATCH_CONTINUE = 0x01;
const STATE_ACTIVE = 0x02;
const REVOCATION_CESSATION_OF_OPERATION = 0x06;
const QUERY_OPERATIONS = 0x01;
/** The GCM tag length this server asks for and accepts: the full 128 bits. */
export const GCM_TAG_BYTES = 16;

/** A KMIP protocol version, `1.4` as { major: 1, minor: 4 }. */
export interface ProtocolVersion { readonly major: number; readonly minor: number }
export const versionText = (v: ProtocolVersion): string => `${v.major}.${v.minor}`;

/** One operation of a request: its payload's children. */
export interface RequestItem { readonly operation: OperationName; readonly payload: readonly TtlvItem[] }

/** What goes in every request header. */
export interface RequestOptions {
  readonly version: ProtocolVersion;
  readonly credential?: { readonly username: string; readonly password?: string };
  /** Asked of the server; a larger response fails as Response Too Large. */
  readonly maximumResponseSize?: number;
}

/**
 * A Request Message with one batch item per operation. Several items carry Unique Batch Item IDs
 * (their index) and the Batch Error Continuation Option Continue, so one item's failure (a tampered
 * blob) does not stop the others.
 */
export function requestMessage(opts: RequestOptions, items: readonly RequestItem[]): TtlvItem {
  const header: TtlvItem[] = [structure(Tag.ProtocolVersion, [
    integer(Tag.ProtocolVersionMajor, opts.version.major), integer(Tag.ProtocolVersionMinor, opts.version.minor),
  ])];
  if (opts.maximumResponseSize) header.push(integer(Tag.MaximumResponseSize, opts.maximumResponseSize));
  if (opts.credential) {
    const value: TtlvItem[] = [textString(Tag.Username, opts.credential.username)];
    if (opts.credential.password !== undefined) value.push(textString(Tag.Password, opts.credential.password));
    header.push(structure(Tag.Authentication, [structure(Tag.Credential, [
      enumeration(Tag.CredentialType, CREDENTIAL_USERNAME_PASSWORD), structure(Tag.CredentialValue, value),
    ])]));
  }
  if (items.length > 1) header.push(enumeration(Tag.BatchErrorContinuationOption, BATCH_CONTINUE));
  header.push(integer(Tag.BatchCount, items.length));
  return structure(Tag.RequestMessage, [
    structure(Tag.RequestHeader, header),
    ...items.map((it, i) => structure(Tag.BatchItem, [
      enumeration(Tag.Operation, Operation[it.operation]),
      ...(items.length > 1 ? [byteString(Tag.UniqueBatchItemId, batchId(i))] : []),
      structure(Tag.RequestPayload, it.payload),
    ])),
  ]);
}

const batchId = (i: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(i);
  return b;
};

const attribute = (name: string, value: TtlvItem): TtlvItem => structure(Tag.Attribute, [textString(Tag.AttributeName, name), value]);
const nameAttribute = (name: string): TtlvItem => attribute('Name', structure(Tag.AttributeValue, [
  textString(Tag.NameValue, name), enumeration(Tag.NameType, NAME_UNINTERPRETED_TEXT),
]));

/** Create: an AES key of `bits`, usable only to Encrypt and Decrypt, named `name`. */
export const createAesKey = (name: string, bits: number): RequestItem => ({
  operation: 'Create',
  payload: [enumeration(Tag.ObjectType, OBJECT_SYMMETRIC_KEY), structure(Tag.TemplateAttribute, [
    attribute('Cryptographic Algorithm', enumeration(Tag.AttributeValue, ALGORITHM_AES)),
    attribute('Cryptographic Length', integer(Tag.AttributeValue, bits)),
    attribute('Cryptographic Usage Mask', integer(Tag.AttributeValue, USAGE_ENCRYPT | USAGE_DECRYPT)),
    nameAttribute(name),
  ])],
});

/** Create: an AES key of 256 bits usable only for MAC Generate and MAC Verify (AES-CMAC), named `name`. */
export const createCmacKey = (name: string): RequestItem => ({
  operation: 'Create',
  payload: [enumeration(Tag.ObjectType, OBJECT_SYMMETRIC_KEY), structure(Tag.TemplateAttribute, [
    attribute('Cryptographic Algorithm', enumeration(Tag.AttributeValue, ALGORITHM_AES)),
    attribute('Cryptographic Length', integer(Tag.AttributeValue, 256)),
    attribute('Cryptographic Usage Mask', integer(Tag.AttributeValue, USAGE_MAC_GENERATE | USAGE_MAC_VERIFY)),
    nameAttribute(name),
  ])],
});

/**
 * Locate: the Active symmetric keys named `name`. A destroyed key may stay on an appliance as a
 * Destroyed object with its name; only Active ones count as the KEK.
 */
export const locateByName = (name: string): RequestItem => ({
  operation: 'Locate',
  payload: [
    attribute('Object Type', enumeration(Tag.AttributeValue, OBJECT_SYMMETRIC_KEY)),
    attribute('State', enumeration(Tag.AttributeValue, STATE_ACTIVE)),
    nameAttribute(name),
  ],
});

/** The states a key passes before Destroyed (§3.22): Pre-Active, Active, Deactivated, Compromised. */
export const LIVE_STATES = { preActive: 0x01, active: STATE_ACTIVE, deactivated: 0x03, compromised: 0x04 } as const;

/** Locate: the symmetric keys named `name` in `state` (one of LIVE_STATES), to clean up after a half-done Revoke and Destroy. */
export const locateByNameIn = (name: string, state: number): RequestItem => ({
  operation: 'Locate',
  payload: [
    attribute('Object Type', enumeration(Tag.AttributeValue, OBJECT_SYMMETRIC_KEY)),
    attribute('State', enumeration(Tag.AttributeValue, state)),
    nameAttribute(name),
  ],
});

const byId = (operation: OperationName, uid: string, more: readonly TtlvItem[] = []): RequestItem => ({
  operation, payload: [textString(Tag.UniqueIdentifier, uid), ...more],
});
/** Activate; without `uid`, the key the batch's previous item created (the ID Placeholder). */
export const activate = (uid?: string): RequestItem => (uid ? byId('Activate', uid) : { operation: 'Activate', payload: [] });
/** Revoke with reason Cessation of Operation: the key is drained, not compromised. */
export const revoke = (uid: string): RequestItem => byId('Revoke', uid, [
  structure(Tag.RevocationReason, [enumeration(Tag.RevocationReasonCode, REVOCATION_CESSATION_OF_OPERATION)]),
]);
export const destroy = (uid: string): RequestItem => byId('Destroy', uid);
export const queryOperations = (): RequestItem => ({ operation: 'Query', payload: [enumeration(Tag.QueryFunction, QUERY_OPERATIONS)] });
export const discoverVersions = (versions: readonly ProtocolVersion[] = []): RequestItem => ({
  operation: 'DiscoverVersions',
  payload: versions.map((v) => structure(Tag.ProtocolVersion, [integer(Tag.ProtocolVersionMajor, v.major), integer(Tag.ProtocolVersionMinor, v.minor)])),
});

const gcmParameters = (): TtlvItem => structure(Tag.CryptographicParameters, [
  enumeration(Tag.BlockCipherMode, MODE_GCM),
  enumeration(Tag.CryptographicAlgorithm, ALGORITHM_AES),
  integer(Tag.TagLength, GCM_TAG_BYTES),
]);

/** Encrypt with AES-GCM under key `uid`, the caller's IV, and `aad` authenticated (KMIP 1.4 §4.29). */
export const encryptGcm = (uid: string, data: Buffer, iv: Buffer, aad: Buffer): RequestItem => byId('Encrypt', uid, [
  gcmParameters(), byteString(Tag.Data, data), byteString(Tag.IvCounterNonce, iv), byteString(Tag.AuthenticatedEncryptionAdditionalData, aad),
]);

/** Decrypt AES-GCM: the server checks the tag over `aad` and the ciphertext before returning anything (§4.30). */
export const decryptGcm = (uid: string, data: Buffer, iv: Buffer, aad: Buffer, tag: Buffer): RequestItem => byId('Decrypt', uid, [
  gcmParameters(), byteString(Tag.Data, data), byteString(Tag.IvCounterNonce, iv),
  byteString(Tag.AuthenticatedEncryptionAdditionalData, aad), byteString(Tag.AuthenticatedEncryptionTag, tag),
]);

const cbcParameters = (): TtlvItem => structure(Tag.CryptographicParameters, [
  enumeration(Tag.BlockCipherMode, MODE_CBC),
  enumeration(Tag.PaddingMethod, PADDING_PKCS5),
  enumeration(Tag.CryptographicAlgorithm, ALGORITHM_AES),
]);

/** Encrypt with AES-CBC (PKCS#5 padding) and the caller's IV: for KMIP 1.2 and 1.3, which have no AEAD fields. */
export const encryptCbc = (uid: string, data: Buffer, iv: Buffer): RequestItem => byId('Encrypt', uid, [
  cbcParameters(), byteString(Tag.Data, data), byteString(Tag.IvCounterNonce, iv),
]);
export const decryptCbc = (uid: string, data: Buffer, iv: Buffer): RequestItem => byId('Decrypt', uid, [
  cbcParameters(), byteString(Tag.Data, data), byteString(Tag.IvCounterNonce, iv),
]);

/** MAC (KMIP 1.2 §4.33) of `data` under the AES key `uid`: AES-CMAC. */
export const mac = (uid: string, data: Buffer): RequestItem => byId('MAC', uid, [
  structure(Tag.CryptographicParameters, [enumeration(Tag.CryptographicAlgorithm, ALGORITHM_AES)]), byteString(Tag.Data, data),
]);

/** The MAC Data of a MAC response. */
export const macResult = (payload: TtlvItem | undefined): Buffer => expectType(childOf(payload, Tag.MacData), 'byteString', 'MAC Data').value;

/** The ciphertext of a CBC Encrypt response. */
export const encryptedData = (payload: TtlvItem | undefined): Buffer => expectType(childOf(payload, Tag.Data), 'byteString', 'Encrypt Data').value;

/** One batch item of a response: its payload, or the server's reason and message. */
export type ResponseItem =
  | { readonly ok: true; readonly operation?: OperationName; readonly payload: TtlvItem | undefined }
  | {
    readonly ok: false; readonly operation?: OperationName; readonly reason: number; readonly message: string;
    /**
     * Whose failure this is: 'item' when the server answered this item itself (its own batch item,
     * echoing its Operation); 'request' when one failure for the whole request was copied to every
     * item; 'unanswered' when the server never answered the item (it stopped at an earlier failure).
     */
    readonly scope: FailureScope;
  };
export type FailureScope = 'item' | 'request' | 'unanswered';

/** A decoded Response Message: the protocol version answered and one item per request item, in request order. */
export interface Response { readonly version: ProtocolVersion; readonly items: readonly ResponseItem[] }

/**
 * Reads a Response Message. Items are put back in request order by their Unique Batch Item ID; a
 * server that answers a whole request with one failure (a bad header, a refused credential) gives
 * one failed item, which the caller applies to every item. Throws TtlvError for a malformed message.
 */
export function parseResponse(msg: TtlvItem, requested: number): Response {
  if (msg.tag !== Tag.ResponseMessage) throw new TtlvError('Not a KMIP Response Message');
  const header = expectType(childOf(msg, Tag.ResponseHeader), 'structure', 'Response Header');
  const pv = childOf(header, Tag.ProtocolVersion);
  const version = {
    major: expectType(childOf(pv, Tag.ProtocolVersionMajor), 'integer', 'Protocol Version Major').value,
    minor: expectType(childOf(pv, Tag.ProtocolVersionMinor), 'integer', 'Protocol Version Minor').value,
  };
  const raw = childrenOf(msg, Tag.BatchItem).map((b) => {
    const op = childOf(b, Tag.Operation);
    const operation = op?.type === 'enumeration' ? OPERATION_NAMES.get(op.value) : undefined;
    const idItem = childOf(b, Tag.UniqueBatchItemId);
    const id = idItem?.type === 'byteString' && idItem.value.length === 4 ? idItem.value.readUInt32BE(0) : undefined;
    const status = expectType(childOf(b, Tag.ResultStatus), 'enumeration', 'Result Status').value;
    let item: ResponseItem;
    if (status === 0) {
      item = { ok: true, operation, payload: childOf(b, Tag.ResponsePayload) };
    } else {
      const reason = childOf(b, Tag.ResultReason);
      const message = childOf(b, Tag.ResultMessage);
      item = {
        ok: false, operation,
        reason: reason?.type === 'enumeration' ? reason.value : REASON_GENERAL_FAILURE,
        message: message?.type === 'textString' ? message.value : '',
        // A failure without Operation (or, in a batch, without its batch item id) answers the request, not an item.
        scope: operation !== undefined && (requested === 1 || id !== undefined) ? 'item' : 'request',
      };
    }
    return { id, item };
  });
  if (raw.length === 1 && requested > 1 && !raw[0].item.ok && raw[0].id === undefined) {
    const whole = raw[0].item;
    return { version, items: Array.from({ length: requested }, () => ({ ...whole, scope: 'request' as const })) };
  }
  const items: ResponseItem[] = new Array(requested);
  raw.forEach((r, i) => {
    const at = requested > 1 ? r.id : i;
    if (at === undefined || at >= requested || items[at]) throw new TtlvError(`Response batch item ${i} has no matching request`);
    items[at] = r.item;
  });
  for (let i = 0; i < requested; i++) {
    // A server that stopped at a failed item (Batch Error Continuation Stop) leaves the rest unanswered.
    items[i] ??= { ok: false, reason: REASON_GENERAL_FAILURE, message: 'not processed by the server', scope: 'unanswered' };
  }
  return { version, items };
}

/** The payload of a successful item (undefined for a failed one). */
export const payloadOf = (item: ResponseItem | undefined): TtlvItem | undefined => (item?.ok ? item.payload : undefined);

/** The Unique Identifier of a payload (Create, Activate, Revoke, Destroy, Encrypt, Decrypt). */
export const uniqueIdOf = (payload: TtlvItem | undefined): string =>
  expectType(childOf(payload, Tag.UniqueIdentifier), 'textString', 'Unique Identifier').value;

/** Every Unique Identifier in a Locate response payload. */
export const locatedIds = (payload: TtlvItem | undefined): string[] =>
  childrenOf(payload, Tag.UniqueIdentifier).map((u) => expectType(u, 'textString', 'Unique Identifier').value);

/** The ciphertext and tag of an Encrypt response. */
export function encryptResult(payload: TtlvItem | undefined): { data: Buffer; tag: Buffer } {
  return {
    data: expectType(childOf(payload, Tag.Data), 'byteString', 'Encrypt Data').value,
    tag: expectType(childOf(payload, Tag.AuthenticatedEncryptionTag), 'byteString', 'Authenticated Encryption Tag').value,
  };
}

/** The plaintext of a Decrypt response (the caller zeroes it). */
export const decryptResult = (payload: TtlvItem | undefined): Buffer => expectType(childOf(payload, Tag.Data), 'byteString', 'Decrypt Data').value;

/** The versions a Discover Versions response lists, the server's preferred first. */
export const discoveredVersions = (payload: TtlvItem | undefined): ProtocolVersion[] =>
  childrenOf(payload, Tag.ProtocolVersion).map((pv) => ({
    major: expectType(childOf(pv, Tag.ProtocolVersionMajor), 'integer', 'Protocol Version Major').value,
    minor: expectType(childOf(pv, Tag.ProtocolVersionMinor), 'integer', 'Protocol Version Minor').value,
  }));

/** The operations a Query Operations response lists. */
export const queriedOperations = (payload: TtlvItem | undefined): OperationName[] =>
  childrenOf(payload, Tag.Operation).flatMap((o) => (o.type === 'enumeration' && OPERATION_NAMES.has(o.value) ? [OPERATION_NAMES.get(o.value)!] : []));
