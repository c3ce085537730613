import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';

/**
 * A plaintext secret (a DEK, a passphrase). It owns its Buffer, zeroes it on dispose(),
 * and prints as its length only, so it cannot leak through a log line or an error text.
 */
export class SecretBytes {
  #buf: Buffer;
  #disposed = false;

  private constructor(buf: Buffer) {
    this.#buf = buf;
  }

  /** Takes ownership of `buf`: the caller must not keep or reuse it. */
  static adopt(buf: Buffer): SecretBytes {
    return new SecretBytes(buf);
  }

  /** Copies `src` into a fresh, unpooled Buffer; the caller still owns (and zeroes) `src`. */
  static copyOf(src: Buffer): SecretBytes {
    const buf = Buffer.alloc(src.length);
    src.copy(buf);
    return new SecretBytes(buf);
  }

  static random(length: number): SecretBytes {
    return new SecretBytes(randomBytes(length));
  }

  get length(): number {
    return this.#buf.length;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The live bytes. Valid until dispose(); never store, log or stringify them. */
  reveal(): Buffer {
    if (this.#disposed) throw new Error('SecretBytes used after dispose');
    return this.#buf;
  }

  dispose(): void {
    this.#buf.fill(0);
    this.#disposed = true;
  }

  toString(): string {
    return `SecretBytes(${this.#buf.length} bytes)`;
  }

  toJSON(): string {
    return this.toString();
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Runs fn with the secret and zeroes it afterwards, whatever fn does. */
export async function using<T>(secret: SecretBytes, fn: (s: SecretBytes) => Promise<T> | T): Promise<T> {
  try {
    return await fn(secret);
  } finally {
    secret.dispose();
  }
}
