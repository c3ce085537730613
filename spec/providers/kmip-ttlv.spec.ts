import {
  bigInteger, boolean, byteString, dateTime, decodeTtlv, encodeTtlv, enumeration, integer, interval, longInteger, messageLength,
  structure, textString, TtlvError, type TtlvItem,
} from '../../src/providers/kmip/ttlv';
import {
  decryptGcm, encryptGcm, Operation, parseResponse, requestMessage, Tag,
} from '../../src/providers/kmip/messages';
import { itemError } from '../../src/providers/kmip/kmip-provider';
import { transportError } from '../../src/providers/kmip/connection';

/** Bytes written as the KMIP specification prints them: "42 00 20 | 02 | 00 00 00 04 | …". */
const spec = (text: string): Buffer => Buffer.from(text.replace(/[|\s]/g, ''), 'hex');

// The TTLV encoding examples of the KMIP 1.x specification, §9.1.2 (tag 0x420020 is Compromise Date).
const VECTORS: Array<[string, TtlvItem, string]> = [
  ['an Integer of 8', integer(0x420020, 8), '42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00'],
  ['a Long Integer of 123456789000000000', longInteger(0x420020, 123456789000000000n), '42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00'],
  ['a Big Integer of 1234567890000000000000000000', bigInteger(0x420020, 1234567890000000000000000000n),
    '42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00'],
  ['an Enumeration of 255', enumeration(0x420020, 255), '42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00'],
  ['a Boolean True', boolean(0x420020, true), '42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01'],
  ['a Text String "Hello World"', textString(0x420020, 'Hello World'), '42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00'],
  ['a Byte String 01 02 03', byteString(0x420020, Buffer.from([1, 2, 3])), '42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00'],
  ['a Date-Time of Friday, March 14, 2008, 11:56:40 GMT', dateTime(0x420020, BigInt(Date.UTC(2008, 2, 14, 11, 56, 40) / 1000)),
    '42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8'],
  ['an Interval of 10 days', interval(0x420020, 10 * 86400), '42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00'],
  ['a Structure of an Enumeration 254 and an Integer 255', structure(0x420020, [enumeration(0x420004, 254), integer(0x420005, 255)]),
    '42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00'],
];

describe('TTLV codec', () => {
  describe.each(VECTORS)('the specification example of %s', (_what, item, bytes) => {
    it('encodes to the specification bytes', () => {
      expect(encodeTtlv(item).toString('hex')).toBe(spec(bytes).toString('hex'));
    });
    it('decodes the specification bytes back to the same item', () => {
      expect(decodeTtlv(spec(bytes))).toEqual(item);
    });
  });

  it('round-trips negative and boundary numbers', () => {
    const item = structure(0x420001, [
      integer(0x420002, -1), integer(0x420002, 0x7fffffff), enumeration(0x420003, 0xffffffff), longInteger(0x420004, -(2n ** 63n)),
      bigInteger(0x420005, -1n), bigInteger(0x420005, 2n ** 63n), textString(0x420006, ''), byteString(0x420007, Buffer.alloc(0)),
      textString(0x420006, 'ünïcode ✓'), boolean(0x420008, false),
    ]);
    expect(decodeTtlv(encodeTtlv(item))).toEqual(item);
  });

  it('gives a message length from its first 8 bytes, for framing', () => {
    const bytes = encodeTtlv(structure(0x42007b, [textString(0x420094, 'abc')]));
    expect(messageLength(bytes.subarray(0, 7))).toBeUndefined();
    expect(messageLength(bytes.subarray(0, 8))).toBe(bytes.length);
  });

  it.each([
    ['a truncated item', '42 00 20 | 02 | 00 00 00 04 | 00 00 00 08'],
    ['an unknown type', '42 00 20 | 0B | 00 00 00 04 | 00 00 00 08 00 00 00 00'],
    ['an Integer of length 8', '42 00 20 | 02 | 00 00 00 08 | 00 00 00 08 00 00 00 00'],
    ['non-zero padding', '42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 01'],
    ['a Boolean of 2', '42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 02'],
    ['a child overrunning its structure', '42 00 20 | 01 | 00 00 00 08 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00'],
    ['bytes after the message', '42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00 | 00'],
    ['invalid UTF-8 text', '42 00 20 | 07 | 00 00 00 02 | C3 28 00 00 00 00 00 00'],
  ])('refuses %s', (_what, bytes) => {
    expect(() => decodeTtlv(spec(bytes))).toThrow(TtlvError);
  });

  /** A structure holding one child header that claims `len` bytes, and nothing after it. */
  const claiming = (type: number, len: number, outer = 8): Buffer => {
    const b = Buffer.alloc(16);
    b.writeUIntBE(0x42007b, 0, 3); b[3] = 0x01; b.writeUInt32BE(outer, 4);
    b.writeUIntBE(0x4200c2, 8, 3); b[11] = type; b.writeUInt32BE(len >>> 0, 12);
    return b;
  };

  describe('hostile input', () => {
    it.each([
      ['a byte string claiming 0xFFFFFFF1 bytes (32-bit padding made it -8)', claiming(0x08, 0xfffffff1)],
      ['a byte string claiming 0xFFFFFFF8 bytes', claiming(0x08, 0xfffffff8)],
      ['a byte string claiming 0xFFFFFFFF bytes', claiming(0x08, 0xffffffff)],
      ['a structure claiming 0xFFFFFFF8 bytes', claiming(0x01, 0xfffffff8)],
      ['a byte string claiming 2^31 bytes', claiming(0x08, 0x80000000)],
      ['a child overrunning its structure by one pad block', claiming(0x08, 9)],
      ['an outer structure claiming more than it holds', claiming(0x08, 0, 0x7ffffff8)],
    ])('refuses %s with a TtlvError, not a hang', (_what, bytes) => {
      expect(() => decodeTtlv(bytes)).toThrow(TtlvError);
    });

    it('refuses non-zero padding after a text string', () => {
      expect(() => decodeTtlv(spec('42 00 20 | 07 | 00 00 00 01 | 41 00 00 00 00 00 80 00'))).toThrow(TtlvError);
    });

    it('refuses structures nested deeper than any KMIP message', () => {
      const depth = 40;
      const b = Buffer.alloc(8 * depth);
      for (let i = 0; i < depth; i++) {
        b.writeUIntBE(0x420001, i * 8, 3); b[i * 8 + 3] = 0x01; b.writeUInt32BE(8 * (depth - i - 1), i * 8 + 4);
      }
      expect(() => decodeTtlv(b)).toThrow(/nested too deeply/);
    });

    it('refuses trailing bytes after a well-formed message', () => {
      const good = encodeTtlv(structure(0x42007b, [integer(0x420020, 1)]));
      expect(() => decodeTtlv(Buffer.concat([good, Buffer.alloc(8)]))).toThrow(/after the message/);
    });

    it('gives a positive, padded message length for lengths near 2^32 (the framer then refuses it as too large)', () => {
      const head = Buffer.alloc(8);
      for (const [len, total] of [[0xfffffff0, 0xfffffff8], [0xfffffff1, 0x100000000], [0xfffffff8, 0x100000000], [0xffffffff, 0x100000008]]) {
        head.writeUInt32BE(len, 4);
        expect(messageLength(head)).toBe(total);
      }
    });
  });

  it('refuses to encode an Integer out of 32-bit range', () => {
    expect(() => encodeTtlv(integer(0x420020, 2 ** 31))).toThrow(TtlvError);
  });
});

describe('KMIP messages', () => {
  it('puts several operations in one request with batch item ids and Continue on error', () => {
    const msg = decodeTtlv(encodeTtlv(requestMessage({ version: { major: 1, minor: 4 } }, [
      encryptGcm('7', Buffer.alloc(32), Buffer.alloc(12), Buffer.from('aad')),
      decryptGcm('7', Buffer.alloc(32), Buffer.alloc(12), Buffer.from('aad'), Buffer.alloc(16)),
    ])));
    if (msg.type !== 'structure') throw new Error('not a structure');
    const header = msg.value[0];
    expect(header.tag).toBe(Tag.RequestHeader);
    if (header.type !== 'structure') throw new Error('no header');
    expect(header.value.find((c) => c.tag === Tag.BatchCount)).toEqual(integer(Tag.BatchCount, 2));
    expect(header.value.find((c) => c.tag === Tag.BatchErrorContinuationOption)).toEqual(enumeration(Tag.BatchErrorContinuationOption, 1));
    const items = msg.value.filter((c) => c.tag === Tag.BatchItem);
    expect(items).toHaveLength(2);
    const payload = items[0].type === 'structure' ? items[0].value.find((c) => c.tag === Tag.RequestPayload) : undefined;
    const tags = payload?.type === 'structure' ? payload.value.map((c) => c.tag) : [];
    expect(tags).toEqual([Tag.UniqueIdentifier, Tag.CryptographicParameters, Tag.Data, Tag.IvCounterNonce, Tag.AuthenticatedEncryptionAdditionalData]);
  });

  it('puts response items back in request order by batch item id and keeps each failure its own', () => {
    const id = (i: number): TtlvItem => { const b = Buffer.alloc(4); b.writeUInt32BE(i); return byteString(Tag.UniqueBatchItemId, b); };
    const response = structure(Tag.ResponseMessage, [
      structure(Tag.ResponseHeader, [structure(Tag.ProtocolVersion, [integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 4)]), integer(Tag.BatchCount, 2)]),
      structure(Tag.BatchItem, [enumeration(Tag.Operation, 0x20), id(1), enumeration(Tag.ResultStatus, 1), enumeration(Tag.ResultReason, 0x0a), textString(Tag.ResultMessage, 'bad tag')]),
      structure(Tag.BatchItem, [enumeration(Tag.Operation, 0x20), id(0), enumeration(Tag.ResultStatus, 0), structure(Tag.ResponsePayload, [textString(Tag.UniqueIdentifier, '7')])]),
    ]);
    const parsed = parseResponse(decodeTtlv(encodeTtlv(response)), 2);
    expect(parsed.version).toEqual({ major: 1, minor: 4 });
    expect(parsed.items[0].ok).toBe(true);
    expect(parsed.items[1]).toEqual({ ok: false, operation: 'Decrypt', reason: 0x0a, message: 'bad tag', scope: 'item' });
  });

  it('applies a whole-request refusal (one item, no id) to every item', () => {
    const response = structure(Tag.ResponseMessage, [
      structure(Tag.ResponseHeader, [structure(Tag.ProtocolVersion, [integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 0)]), integer(Tag.BatchCount, 1)]),
      structure(Tag.BatchItem, [enumeration(Tag.ResultStatus, 1), enumeration(Tag.ResultReason, 0x03), textString(Tag.ResultMessage, 'who are you')]),
    ]);
    const parsed = parseResponse(response, 3);
    expect(parsed.items.map((i) => (i.ok ? 'ok' : i.reason))).toEqual([3, 3, 3]);
    expect(parsed.items.map((i) => (i.ok ? 'ok' : i.scope))).toEqual(['request', 'request', 'request']);
  });
});

describe('KMIP failure classification', () => {
  const header = structure(Tag.ResponseHeader, [structure(Tag.ProtocolVersion, [integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 4)]), integer(Tag.BatchCount, 1)]);
  const id = (i: number): TtlvItem => { const b = Buffer.alloc(4); b.writeUInt32BE(i); return byteString(Tag.UniqueBatchItemId, b); };
  const failure = (reason: number | undefined, message: string, extra: TtlvItem[] = []): TtlvItem => structure(Tag.BatchItem, [
    ...extra, enumeration(Tag.ResultStatus, 1), ...(reason === undefined ? [] : [enumeration(Tag.ResultReason, reason)]), textString(Tag.ResultMessage, message),
  ]);
  const classify = (items: TtlvItem[], requested: number): string[] => parseResponse(structure(Tag.ResponseMessage, [header, ...items]), requested).items
    .map((it) => (it.ok ? 'ok' : (() => { const e = itemError('p', 'Decrypt', it, 'kek-1'); return `${e.kind}${e.retryable ? ' retry' : ''}`; })()));
  const PYKMIP = 'Operation failed. See the server logs for more information.';
  const decrypt = enumeration(Tag.Operation, Operation.Decrypt);

  it("reads PyKMIP's answer to a wrong GCM tag (the item's own General Failure) as integrity, never retried", () => {
    expect(classify([failure(0x100, PYKMIP, [decrypt])], 1)).toEqual(['integrity']);
    expect(classify([failure(0x100, PYKMIP, [decrypt, id(1)]), structure(Tag.BatchItem, [decrypt, id(0), enumeration(Tag.ResultStatus, 0)])], 2))
      .toEqual(['ok', 'integrity']);
  });

  it("reads an item's own Cryptographic Failure on Decrypt as integrity", () => {
    expect(classify([failure(0x0a, 'bad tag', [decrypt])], 1)).toEqual(['integrity']);
  });

  it('reads a whole-request General Failure copied to every item as retryable unavailable, not tampering', () => {
    expect(classify([failure(0x100, PYKMIP)], 3)).toEqual(['unavailable retry', 'unavailable retry', 'unavailable retry']);
    expect(classify([failure(0x100, PYKMIP)], 1)).toEqual(['unavailable retry']);
  });

  it('reads items the server never answered as retryable unavailable', () => {
    expect(classify([structure(Tag.BatchItem, [decrypt, id(0), enumeration(Tag.ResultStatus, 0)])], 3)).toEqual(['ok', 'unavailable retry', 'unavailable retry']);
  });

  it("reads an item's own General Failure without a reason, or with another message, as retryable, not tampering", () => {
    expect(classify([failure(undefined, '', [decrypt])], 1)).toEqual(['unavailable retry']);
    expect(classify([failure(0x100, 'database is locked', [decrypt])], 1)).toEqual(['unavailable retry']);
  });
});

describe('KMIP transport error classification', () => {
  const ep = { host: 'kmip.example', port: 5696, ca: '', cert: '', key: '', name: 'p' };
  const err = (code: string, message = code): Error => Object.assign(new Error(message), { code });
  const kind = (e: Error, during: 'connect' | 'request', answered = false): string => {
    const k = transportError(ep, e, during, answered);
    return `${k.kind}${k.retryable ? ' retry' : ''}`;
  };

  it.each([
    'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
    'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED', 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
  ])('reads the refusal alert %s before any answer as auth, never retried', (code) => {
    expect(kind(err(code), 'connect')).toBe('auth');
    expect(kind(err(code), 'request')).toBe('auth');
  });

  it('reads a refusal alert after the connection answered a request as a broken connection, retried', () => {
    expect(kind(err('ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE'), 'request', true)).toBe('unavailable retry');
  });

  it.each([
    'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR', 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'ERR_SSL_WRONG_VERSION_NUMBER',
    'ECONNRESET', 'EPIPE', 'ECONNREFUSED',
  ])('reads %s as unavailable, retried', (code) => {
    expect(kind(err(code), 'connect')).toBe('unavailable retry');
    expect(kind(err(code), 'request')).toBe('unavailable retry');
  });

  it("reads our refusal of the server's certificate during the handshake as auth", () => {
    expect(kind(err('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'connect')).toBe('auth');
    expect(kind(err('ERR_TLS_CERT_ALTNAME_INVALID'), 'connect')).toBe('auth');
  });

  it('reads an unknown host as unavailable, retried (probe() alone says param)', () => {
    expect(kind(err('ENOTFOUND'), 'connect')).toBe('unavailable retry');
  });
});
