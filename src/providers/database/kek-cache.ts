/** One decrypted KEK held by the cache; the cache owns `key` and zeroes it on eviction. */
interface Entry {
  key: Buffer;
  profileId: string;
  expires: number;
}

/**
 * A bounded LRU of decrypted database KEKs, keyed by label. Every way out (eviction, expiry,
 * invalidation, clear) zeroes the bytes. Callers get a copy they own, so a concurrent eviction never
 * zeroes a key that is in use. Not shared between processes: a KEK destroyed on another node stays
 * usable here for at most `ttlMs`.
 */
export class KekCache {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly max: number, private readonly ttlMs: number, private readonly now: () => number = Date.now) {}

  /** A copy of the cached KEK (the caller zeroes it), or undefined. */
  get(label: string): Buffer | undefined {
    const e = this.#entries.get(label);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.delete(label);
      return undefined;
    }
    this.#entries.delete(label);
    this.#entries.set(label, e);
    const copy = Buffer.alloc(e.key.length);
    e.key.copy(copy);
    return copy;
  }

  /** Stores a copy of `key`; the caller still owns (and zeroes) its own Buffer. */
  set(label: string, profileId: string, key: Buffer): void {
    if (this.max <= 0) return;
    this.delete(label);
    const own = Buffer.alloc(key.length);
    key.copy(own);
    this.#entries.set(label, { key: own, profileId, expires: this.now() + this.ttlMs });
    while (this.#entries.size > this.max) {
      const oldest = this.#entries.keys().next().value as string;
      this.delete(oldest);
    }
  }

  delete(label: string): void {
    const e = this.#entries.get(label);
    if (!e) return;
    e.key.fill(0);
    this.#entries.delete(label);
  }

  /** Drops every KEK of one profile. */
  invalidateProfile(profileId: string): void {
    for (const [label, e] of [...this.#entries]) if (e.profileId === profileId) this.delete(label);
  }

  clear(): void {
    for (const label of [...this.#entries.keys()]) this.delete(label);
  }

  get size(): number {
    return this.#entries.size;
  }
}
