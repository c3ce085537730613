/**
 * KMIP's TTLV encoding (KMIP 1.x specification §9.1): every item is a 3-byte tag, a 1-byte type,
 * a 4-byte big-endian length and a value padded with zeros to a multiple of 8 bytes. Integers,
 * enumerations and intervals are 4 bytes (padded to 8); long integers, date-times and booleans 8;
 * big integers two's complement in a multiple of 8; strings and byte strings their length, padded.
 * Pure functions, no I/O. Decoding is strict: a wrong length, a non-zero pad byte or an item that
 * overruns its structure throws TtlvError, so a corrupt or hostile response is never half-read.
 */

/** TTLV item types, by their coded value (§9.1.1.2). */
export const TtlvType = {
  structure: 0x01,
  integer: 0x02,
  longInteger: 0x03,
  bigInteger: 0x04,
  enumeration: 0x05,
  boolean: 0x06,
  textString: 0x07,
  byteString: 0x08,
  dateTime: 0x09,
  interval: 0x0a,
} as const;
export type TtlvTypeName = keyof typeof TtlvType;

/** One decoded or to-be-encoded item. Number-valued types hold 32-bit values; 64-bit ones bigint. */
export type TtlvItem =
  | { readonly tag: number; readonly type: 'structure'; readonly value: readonly TtlvItem[] }
  | { readonly tag: number; readonly type: 'integer' | 'enumeration' | 'interval'; readonly value: number }
  | { readonly tag: number; readonly type: 'longInteger' | 'dateTime' | 'bigInteger'; readonly value: bigint }
  | { readonly tag: number; readonly type: 'boolean'; readonly value: boolean }
  | { readonly tag: number; readonly type: 'textString'; readonly value: string }
  | { readonly tag: number; readonly type: 'byteString'; readonly value: Buffer };

/** A malformed TTLV byte sequence, or a value that cannot be encoded. */
export class TtlvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TtlvError';
  }
}

const TYPE_NAMES = new Map<number, TtlvTypeName>(Object.entries(TtlvType).map(([k, v]) => [v, k as TtlvTypeName]));
const HEADER = 8;
/** `n` rounded up to a multiple of 8, in plain arithmetic (bitwise ops would wrap at 2^31). */
const padded = (n: number): number => n + ((8 - (n % 8)) % 8);
const hexTag = (tag: number): string => `0x${tag.toString(16).padStart(6, '0')}`;

/** Builders: `structure(tag, [...])`, `integer(tag, n)`… */
export const structure = (tag: number, value: readonly TtlvItem[]): TtlvItem => ({ tag, type: 'structure', value });
export const integer = (tag: number, value: number): TtlvItem => ({ tag, type: 'integer', value });
export const enumeration = (tag: number, value: number): TtlvItem => ({ tag, type: 'enumeration', value });
export const interval = (tag: number, value: number): TtlvItem => ({ tag, type: 'interval', value });
export const longInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: 'longInteger', value });
export const bigInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: 'bigInteger', value });
export const dateTime = (tag: number, value: bigint): TtlvItem => ({ tag, type: 'dateTime', value });
export const boolean = (tag: number, value: boolean): TtlvItem => ({ tag, type: 'boolean', value });
export const textString = (tag: number, value: string): TtlvItem => ({ tag, type: 'textString', value });
export const byteString = (tag: number, value: Buffer): TtlvItem => ({ tag, type: 'byteString', value });

/** The number of bytes `item` takes encoded, header included. */
export function encodedLength(item: TtlvItem): number {
  return HEADER + padded(valueLength(item));
}

function valueLength(item: TtlvItem): number {
  switch (item.type) {
    case 'structure': return item.value.reduce((n, c) => n + encodedLength(c), 0);
    case 'integer': case 'enumeration': case 'interval': return 4;
    case 'longInteger': case 'dateTime': case 'boolean': return 8;
    case 'bigInteger': return bigIntBytes(item.value);
    case 'textString': return Buffer.byteLength(item.value, 'utf8');
    case 'byteString': return item.value.length;
  }
}

/** Bytes of a two's complement big integer, a multiple of 8 (§9.1.1.4: sign-extended to 8-byte blocks). */
function bigIntBytes(v: bigint): number {
  let n = 8;
  while (v >= 1n << BigInt(n * 8 - 1) || v < -(1n << BigInt(n * 8 - 1))) n += 8;
  return n;
}

/** Encodes one item (a whole message is one structure). Throws TtlvError for an out-of-range value. */
export function encodeTtlv(item: TtlvItem): Buffer {
  const out = Buffer.alloc(encodedLength(item));
  write(item, out, 0);
  return out;
}

function write(item: TtlvItem, out: Buffer, at: number): number {
  if (!Number.isInteger(item.tag) || item.tag < 0 || item.tag > 0xffffff) throw new TtlvError(`Bad tag ${item.tag}`);
  const len = valueLength(item);
  out.writeUIntBE(item.tag, at, 3);
  out.writeUInt8(TtlvType[item.type], at + 3);
  out.writeUInt32BE(len, at + 4);
  const v = at + HEADER;
  switch (item.type) {
    case 'structure': {
      let p = v;
      for (const c of item.value) p = write(c, out, p);
      break;
    }
    case 'integer':
      if (!Number.isInteger(item.value) || item.value < -0x80000000 || item.value > 0x7fffffff) throw new TtlvError(`Integer ${hexTag(item.tag)} out of range`);
      out.writeInt32BE(item.value, v);
      break;
    case 'enumeration': case 'interval':
      if (!Number.isInteger(item.value) || item.value < 0 || item.value > 0xffffffff) throw new TtlvError(`${item.type} ${hexTag(item.tag)} out of range`);
      out.writeUInt32BE(item.value, v);
      break;
    case 'longInteger': case 'dateTime':
      out.writeBigInt64BE(BigInt.asIntN(64, item.value), v);
      if (BigInt.asIntN(64, item.value) !== item.value) throw new TtlvError(`${item.type} ${hexTag(item.tag)} out of range`);
      break;
    case 'bigInteger': {
      let x = BigInt.asUintN(len * 8, item.value);
      for (let i = len - 1; i >= 0; i--) {
        out[v + i] = Number(x & 0xffn);
        x >>= 8n;
      }
      break;
    }
    case 'boolean':
      out.writeBigUInt64BE(item.value ? 1n : 0n, v);
      break;
    case 'textString':
      out.write(item.value, v, 'utf8');
      break;
    case 'byteString':
      item.value.copy(out, v);
      break;
  }
  return at + HEADER + padded(len);
}

/**
 * The total length of the message that starts `buf` (header plus padded value), or undefined while
 * fewer than 8 bytes have arrived. For framing a stream of responses.
 */
export function messageLength(buf: Buffer): number | undefined {
  if (buf.length < HEADER) return undefined;
  return HEADER + padded(buf.readUInt32BE(4));
}

/** Decodes exactly one item filling `buf`. Throws TtlvError for anything malformed or left over. */
export function decodeTtlv(buf: Buffer): TtlvItem {
  const [item, end] = read(buf, 0, buf.length, 0);
  if (end !== buf.length) throw new TtlvError(`${buf.length - end} bytes after the message`);
  return item;
}

/** Nesting deeper than any KMIP message needs is refused (a hostile peer cannot exhaust the stack). */
const MAX_DEPTH = 32;

function read(buf: Buffer, at: number, limit: number, depth: number): [TtlvItem, number] {
  if (limit - at < HEADER) throw new TtlvError(`Truncated item header at byte ${at}`);
  const tag = buf.readUIntBE(at, 3);
  const code = buf.readUInt8(at + 3);
  const len = buf.readUInt32BE(at + 4);
  const type = TYPE_NAMES.get(code);
  if (!type) throw new TtlvError(`Unknown item type 0x${code.toString(16)} for tag ${hexTag(tag)}`);
  const v = at + HEADER;
  if (len > limit - v) throw new TtlvError(`Item ${hexTag(tag)} overruns its container`);
  const end = v + padded(len);
  if (end > limit) throw new TtlvError(`Item ${hexTag(tag)} overruns its container`);
  for (let i = v + len; i < end; i++) if (buf[i] !== 0) throw new TtlvError(`Non-zero padding in item ${hexTag(tag)}`);
  const fixed = (n: number): void => {
    if (len !== n) throw new TtlvError(`Item ${hexTag(tag)} of type ${type} has length ${len}, not ${n}`);
  };
  switch (type) {
    case 'structure': {
      if (depth >= MAX_DEPTH) throw new TtlvError('Structures nested too deeply');
      if (len % 8 !== 0) throw new TtlvError(`Structure ${hexTag(tag)} length ${len} is not a multiple of 8`);
      const children: TtlvItem[] = [];
      let p = v;
      while (p < v + len) {
        const [child, next] = read(buf, p, v + len, depth + 1);
        if (next <= p) throw new TtlvError(`Item in structure ${hexTag(tag)} does not advance`);
        children.push(child);
        p = next;
      }
      return [{ tag, type, value: children }, end];
    }
    case 'integer': fixed(4); return [{ tag, type, value: buf.readInt32BE(v) }, end];
    case 'enumeration': case 'interval': fixed(4); return [{ tag, type, value: buf.readUInt32BE(v) }, end];
    case 'longInteger': case 'dateTime': fixed(8); return [{ tag, type, value: buf.readBigInt64BE(v) }, end];
    case 'boolean': {
      fixed(8);
      const b = buf.readBigUInt64BE(v);
      if (b > 1n) throw new TtlvError(`Boolean ${hexTag(tag)} is neither 0 nor 1`);
      return [{ tag, type, value: b === 1n }, end];
    }
    case 'bigInteger': {
      if (len === 0 || len % 8 !== 0) throw new TtlvError(`Big integer ${hexTag(tag)} length ${len} is not a positive multiple of 8`);
      let x = 0n;
      for (let i = 0; i < len; i++) x = (x << 8n) | BigInt(buf[v + i]);
      return [{ tag, type, value: BigInt.asIntN(len * 8, x) }, end];
    }
    case 'textString': {
      const text = buf.toString('utf8', v, v + len);
      if (Buffer.byteLength(text, 'utf8') !== len) throw new TtlvError(`Text string ${hexTag(tag)} is not valid UTF-8`);
      return [{ tag, type, value: text }, end];
    }
    case 'byteString': return [{ tag, type, value: Buffer.from(buf.subarray(v, v + len)) }, end];
  }
}

/** The children of a structure with `tag`, in order. */
export function childrenOf(item: TtlvItem | undefined, tag: number): TtlvItem[] {
  if (!item || item.type !== 'structure') return [];
  return item.value.filter((c) => c.tag === tag);
}

/** The first child of a structure with `tag`, or undefined. */
export function childOf(item: TtlvItem | undefined, tag: number): TtlvItem | undefined {
  if (!item || item.type !== 'structure') return undefined;
  return item.value.find((c) => c.tag === tag);
}

/** Typed accessors that throw TtlvError when the item is absent or of another type. */
export function expectType<T extends TtlvTypeName>(item: TtlvItem | undefined, type: T, what: string): { tag: number; type: T; value: ValueOf[T] } {
  if (!item) throw new TtlvError(`${what} is missing`);
  if (item.type !== type) throw new TtlvError(`${what} is a ${item.type}, not a ${type}`);
  return item as { tag: number; type: T; value: ValueOf[T] };
}

/** The value type of each item type. */
interface ValueOf {
  structure: readonly TtlvItem[];
  integer: number; enumeration: number; interval: number;
  longInteger: bigint; dateTime: bigint; bigInteger: bigint;
  boolean: boolean; textString: string; byteString: Buffer;
}
