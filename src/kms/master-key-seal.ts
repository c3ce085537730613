import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as pkcs11js from 'pkcs11js';
import { kekTemplate, KWP } from '../providers/pkcs11/mechanisms';
import type { SealConfig } from '../config/env';
import { acquireModule, closeSession, openLoggedInSession, releaseModule, type Pkcs11Module } from '../providers/pkcs11/module';

/** A failure to reach the seal: one sentence saying what is missing, never the PIN. */
export class SealError extends Error {}

/** The master key as a session object for the time of one wrap or unwrap (read back only on unwrap). */
const masterKeyObject = (value?: Buffer): pkcs11js.Template => [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
  { type: pkcs11js.CKA_TOKEN, value: false },
  { type: pkcs11js.CKA_PRIVATE, value: true },
  { type: pkcs11js.CKA_SENSITIVE, value: false },
  { type: pkcs11js.CKA_EXTRACTABLE, value: true },
  ...(value ? [{ type: pkcs11js.CKA_VALUE, value }] : []),
];

/**
 * The PKCS#11 seal of the master key (Vault's auto-unseal, on any PKCS#11 token): each master-key
 * version is stored in the database only as `C_WrapKey(CKM_AES_KEY_WRAP_PAD)` under the token KEK
 * `keyLabel`, and unwrapped in the token at start. Calls are synchronous: they happen at start, on
 * a new version (rare), and in the admin CLI, never on a request.
 */
export class MasterKeySeal {
  private constructor(private readonly cfg: SealConfig, private readonly module: Pkcs11Module, private readonly slot: Buffer, private readonly pin: string) {}

  /** Loads the library and finds the token; throws SealError naming what is missing. */
  static open(cfg: SealConfig): MasterKeySeal {
    let pin: string;
    try {
      pin = readFileSync(cfg.pinFile, 'utf8').replace(/\r?\n$/, '');
    } catch {
      throw new SealError(`The master key is sealed by an HSM, but its PIN file ${cfg.pinFile} (KMS_MASTER_KEY_SEAL_PIN_FILE) cannot be read`);
    }
    let module: Pkcs11Module;
    try {
      module = acquireModule(cfg.library);
    } catch {
      throw new SealError(`The master key is sealed by an HSM, but the PKCS#11 library ${cfg.library} (KMS_MASTER_KEY_SEAL_LIBRARY) cannot be loaded`);
    }
    try {
      const slot = module.lib.C_GetSlotList(true).find((s) => module.lib.C_GetTokenInfo(s).label.trim() === cfg.tokenLabel);
      if (!slot) throw new SealError(`The master key is sealed by an HSM, but no token labelled '${cfg.tokenLabel}' (KMS_MASTER_KEY_SEAL_TOKEN_LABEL) is present in ${cfg.library}`);
      return new MasterKeySeal(cfg, module, slot, pin);
    } catch (e) {
      releaseModule(module);
      if (e instanceof SealError) throw e;
      throw new SealError(`The master key is sealed by an HSM, but the token list of ${cfg.library} cannot be read`);
    }
  }

  get keyLabel(): string {
    return this.cfg.keyLabel;
  }

  /** Creates the seal KEK when the token has none with its label (seal-master-key); true when created. */
  ensureKek(): boolean {
    return this.session((s) => {
      if (this.findKek(s, false)) return false;
      // The same template as every KEK: AES-256 token object, sensitive, never extractable, wrap/unwrap only.
      this.module.lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, kekTemplate(this.cfg.keyLabel, randomBytes(16), 256));
      return true;
    });
  }

  /** The master key wrapped by the token KEK (RFC 5649). Reads `key`, never keeps it. */
  wrap(key: Buffer): Buffer {
    return this.session((s) => {
      const kek = this.findKek(s, true)!;
      const obj = this.module.lib.C_CreateObject(s, masterKeyObject(key));
      try {
        return Buffer.from(this.module.lib.C_WrapKey(s, KWP, kek, obj, Buffer.alloc(key.length + 16)));
      } finally {
        this.module.lib.C_DestroyObject(s, obj);
      }
    });
  }

  /** The master key from its wrapped form; the caller zeroes it. Fails when another KEK wrapped it. */
  unwrap(blob: Buffer): Buffer {
    return this.session((s) => {
      const kek = this.findKek(s, true)!;
      let obj: pkcs11js.Handle;
      try {
        obj = this.module.lib.C_UnwrapKey(s, KWP, kek, blob, masterKeyObject());
      } catch {
        throw new SealError(`The sealed master key cannot be unwrapped by the key '${this.cfg.keyLabel}' of token '${this.cfg.tokenLabel}': it was sealed by another key`);
      }
      try {
        const value = this.module.lib.C_GetAttributeValue(s, obj, [{ type: pkcs11js.CKA_VALUE }])[0]!.value as Buffer;
        const out = Buffer.alloc(value.length);
        value.copy(out);
        value.fill(0);
        return out;
      } finally {
        this.module.lib.C_DestroyObject(s, obj);
      }
    });
  }

  close(): void {
    releaseModule(this.module);
  }

  private findKek(s: Buffer, required: boolean): pkcs11js.Handle | undefined {
    const lib = this.module.lib;
    lib.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }, { type: pkcs11js.CKA_LABEL, value: this.cfg.keyLabel }]);
    try {
      const h = lib.C_FindObjects(s, 1)[0];
      if (!h && required) {
        throw new SealError(`The token '${this.cfg.tokenLabel}' has no key labelled '${this.cfg.keyLabel}' (KMS_MASTER_KEY_SEAL_KEY_LABEL) to seal the master key`);
      }
      return h;
    } finally {
      lib.C_FindObjectsFinal(s);
    }
  }

  private session<T>(fn: (s: Buffer) => T): T {
    let s: Buffer;
    try {
      s = openLoggedInSession(this.module, this.slot, this.pin);
    } catch {
      throw new SealError(`Cannot log in to token '${this.cfg.tokenLabel}' with the PIN in ${this.cfg.pinFile} (KMS_MASTER_KEY_SEAL_PIN_FILE)`);
    }
    try {
      return fn(s);
    } finally {
      closeSession(this.module, this.slot, s, true);
    }
  }
}
