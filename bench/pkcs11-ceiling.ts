import type * as pkcs11js from 'pkcs11js';
import { dekTemplate, HMAC, KWP, MAC_BYTES, MAX_DEK_BYTES, macInput } from '../src/providers/pkcs11/mechanisms';

/**
 * One rewrap inside one token as the provider's thread makes it (src/providers/pkcs11/thread/
 * operations.ts), as raw synchronous calls on one session: verify the blob's MAC, unwrap to a
 * non-readable object, wrap under the new KEK, MAC the new blob, destroy the object. The ceiling
 * rows of the benchmarks run it in a tight loop.
 */
export function rawRewrap(
  lib: pkcs11js.PKCS11, session: Buffer,
  from: { kek: Buffer; mac: Buffer; aad: Buffer; wrapped: Buffer; tag: Buffer },
  to: { kek: Buffer; mac: Buffer; aad: Buffer },
): void {
  lib.C_VerifyInit(session, HMAC, from.mac);
  lib.C_Verify(session, macInput(from.aad, from.wrapped), from.tag);
  const h = lib.C_UnwrapKey(session, KWP, from.kek, from.wrapped, dekTemplate({ readable: false }));
  const w = lib.C_WrapKey(session, KWP, to.kek, h, Buffer.alloc(MAX_DEK_BYTES + 16));
  lib.C_SignInit(session, HMAC, to.mac);
  lib.C_Sign(session, macInput(to.aad, w), Buffer.alloc(MAC_BYTES));
  lib.C_DestroyObject(session, h);
}
