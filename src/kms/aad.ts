/**
 * The associated data that binds a wrapped DEK to its context. Every field is length-prefixed, so no
 * two different contexts encode alike. Changing the KMS key, the KEK version or the owning volume
 * makes unwrap fail as `integrity`.
 */
export interface DekContext {
  /** 'volume' (CloudStack KeyPurpose.VOLUME_ENCRYPTION) */
  readonly purpose: 'volume';
  readonly kmsKeyUuid: string;
  readonly kekVersion: number;
  /** The uuid of the volume the DEK belongs to. */
  readonly ownerUuid: string;
}

const FORMAT = 'cloudstack-kms/dek/v1';

export function dekAad(c: DekContext): Buffer {
  const parts = [FORMAT, c.purpose, c.kmsKeyUuid.toLowerCase(), String(c.kekVersion), c.ownerUuid.toLowerCase()];
  return Buffer.concat(parts.flatMap((p) => {
    const b = Buffer.from(p, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    return [len, b];
  }));
}

/** CloudStack's KEK label form: volume-kek-{domainId}-{accountId}-{uuid without dashes}-v{n}. */
export function kekLabel(k: { domainId: number; accountId: number; keyUuid: string }, version: number): string {
  return `volume-kek-${k.domainId}-${k.accountId}-${k.keyUuid.replace(/-/g, '')}-v${version}`;
}
