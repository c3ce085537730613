/** AES key sizes this server makes and accepts: KEKs (CloudStack's "Key bits must be 128, 192, or 256") and DEKs. */
export const KEY_BITS = [128, 192, 256] as const;
/** One of KEY_BITS. */
export type KeyBits = (typeof KEY_BITS)[number];

export const isKeyBits = (bits: number): bits is KeyBits => (KEY_BITS as readonly number[]).includes(bits);

/** "128, 192, or 256": the sizes as CloudStack's messages list them. */
export const KEY_BITS_TEXT = `${KEY_BITS.slice(0, -1).join(', ')}, or ${KEY_BITS[KEY_BITS.length - 1]}`;
