/**
 * Byte parts packed into one fresh ArrayBuffer, so a message to or from the HSM thread carries one
 * transferable buffer instead of many Buffers. Cloning a Buffer would copy its whole backing store,
 * which for a small Buffer is Node's shared 8 KiB pool slab: other data of the process would cross
 * the thread boundary with it. A packed buffer holds exactly the parts and nothing else.
 */
export interface Packed {
  readonly data: ArrayBuffer;
  /** The end offset of each part; part i is data[ends[i-1] ?? 0, ends[i]). */
  readonly ends: number[];
}

/** Copies `parts` into one new ArrayBuffer (never pooled memory). */
export function pack(parts: readonly Uint8Array[]): Packed {
  let total = 0;
  const ends = parts.map((p) => (total += p.length));
  const data = new ArrayBuffer(total);
  const view = new Uint8Array(data);
  let at = 0;
  for (const p of parts) {
    view.set(p, at);
    at += p.length;
  }
  return { data, ends };
}

/** Views of the parts of a packed buffer (no copy: they share `data`). */
export function unpack(p: Packed): Buffer[] {
  let start = 0;
  return p.ends.map((end) => {
    const part = Buffer.from(p.data, start, end - start);
    start = end;
    return part;
  });
}

/** Zeroes a packed buffer that held secrets (a detached buffer, already moved to the other thread, has nothing left to zero). */
export function zero(p: Packed | undefined): void {
  if (p && p.data.byteLength > 0) new Uint8Array(p.data).fill(0);
}
