import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { SecretBytes } from '../../src/core/secret-bytes';
import { silentLogger } from '../../src/core/logger';
import { createPkcs11Provider } from '../../src/providers/pkcs11/pkcs11-provider';
import type { BackendPolicy, HsmProfileConfig, KekProvider } from '../../src/providers/provider';
import { withPolicy } from '../../src/providers/registry';
import { createSoftHsmTokens, type SoftHsmToken } from '../support/softhsm';
import { countingProvider, kekProviderContract, rejection } from './kek-provider-contract';

// SoftHSM reads SOFTHSM2_CONF at C_Initialize: the tokens are made here, before any provider loads it.
let tokens: SoftHsmToken[];
beforeAll(async () => {
  tokens = await createSoftHsmTokens(2);
});
afterAll(async () => {
  await tokens?.[0].cleanup();
});

const profile = (name: string, details: Record<string, string>): HsmProfileConfig => ({
  id: `p-${randomBytes(4).toString('hex')}`, name, protocol: 'pkcs11', details,
});
/**
 * Runs `body` in a new Node process with its own C_Initialize and a logged-in session on the token
 * (variables: p = pkcs11js, lib, slot, session) and returns what it returns, as JSON.
 */
function inFreshProcess(token: SoftHsmToken, body: string): any {
  const script = `
    const p = require(${JSON.stringify(require.resolve('pkcs11js'))});
    const lib = new p.PKCS11();
    lib.load(${JSON.stringify(token.library)});
    lib.C_Initialize({ flags: p.CKF_OS_LOCKING_OK });
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === ${JSON.stringify(token.tokenLabel)});
    const session = lib.C_OpenSession(slot, p.CKF_SERIAL_SESSION);
    lib.C_Login(session, p.CKU_USER, process.env.TEST_PIN);
    const out = (() => { ${body} })();
    lib.C_Logout(session); lib.C_CloseSession(session); lib.C_Finalize();
    process.stdout.write(JSON.stringify(out));`;
  const env = { ...process.env, SOFTHSM2_CONF: token.confPath, TEST_PIN: token.pin };
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8' }));
}

const RETRYING: BackendPolicy = { timeoutMs: 20_000, retries: 3, baseDelayMs: 1 };

kekProviderContract('pkcs11 (SoftHSM2)', async () => {
  const provider = createPkcs11Provider({ logger: silentLogger });
  return {
    provider,
    profile: profile('hsm-a', tokens[0].details()),
    otherProfile: profile('hsm-b', tokens[1].details({ max_sessions: '4' })),
    teardown: () => provider.close(),
  };
});

describe('pkcs11 provider', () => {
  let provider: KekProvider;
  beforeAll(() => {
    provider = createPkcs11Provider({ logger: silentLogger });
  });
  afterAll(async () => {
    await provider.close();
  });

  it('creates KEKs that a fresh session sees as token, private, sensitive, non-extractable objects', async () => {
    const p = profile('hsm', tokens[0].details());
    const label = `kek-attr-${randomBytes(4).toString('hex')}`;
    await provider.createKek({ profile: p, label }, 256);

    const seen = inFreshProcess(tokens[0], `
      const found = {};
      for (const lbl of [${JSON.stringify(label)}, ${JSON.stringify(`${label}.mac`)}]) {
        lib.C_FindObjectsInit(session, [{ type: p.CKA_LABEL, value: lbl }]);
        const h = lib.C_FindObjects(session, 4);
        lib.C_FindObjectsFinal(session);
        const a = lib.C_GetAttributeValue(session, h[0], [{ type: p.CKA_TOKEN }, { type: p.CKA_PRIVATE }, { type: p.CKA_SENSITIVE },
          { type: p.CKA_EXTRACTABLE }, { type: p.CKA_KEY_TYPE }, { type: p.CKA_ID }]).map((x) => x.value);
        let value = 'readable';
        try { lib.C_GetAttributeValue(session, h[0], [{ type: p.CKA_VALUE }]); } catch (e) { value = e.message; }
        found[lbl] = { count: h.length, flags: a.slice(0, 4).map((b) => b[0]), keyType: a[4].readUInt32LE(0), idLength: a[5].length, value };
      }
      return found;`);
    for (const [lbl, keyType] of [[label, pkcs11js.CKK_AES], [`${label}.mac`, pkcs11js.CKK_GENERIC_SECRET]] as const) {
      expect(seen[lbl]).toEqual({ count: 1, flags: [1, 1, 1, 0], keyType, idLength: 16, value: 'CKR_ATTRIBUTE_SENSITIVE' });
    }
  });

  it('writes and reads blobs byte-compatible with the format written so far (KWP wrap ‖ HMAC over format, aad length, aad, wrapped)', async () => {
    const p = profile('compat', tokens[0].details());
    const kek = { profile: p, label: `kek-compat-${randomBytes(4).toString('hex')}` };
    await provider.createKek(kek, 256);
    const dek = SecretBytes.random(32);
    const aad = Buffer.from('volume|key-1|v1|vol-compat');
    const mine = await provider.wrap({ kek, dek, aad });
    // The format spelled out with raw pkcs11js calls in another process, independently of the provider's code.
    const theirs = inFreshProcess(tokens[0], `
      const find = (l) => { lib.C_FindObjectsInit(session, [{ type: p.CKA_LABEL, value: l }]); const h = lib.C_FindObjects(session, 2); lib.C_FindObjectsFinal(session); return h[0]; };
      const kek = find(${JSON.stringify(kek.label)}), mac = find(${JSON.stringify(`${kek.label}.mac`)});
      const KWP = { mechanism: p.CKM_AES_KEY_WRAP_PAD }, HMAC = { mechanism: p.CKM_SHA256_HMAC };
      const macInput = (aad, w) => { const b = Buffer.alloc(5 + aad.length + w.length); b[0] = 0x11; b.writeUInt32BE(aad.length, 1); aad.copy(b, 5); w.copy(b, 5 + aad.length); return b; };
      const aad = Buffer.from(${JSON.stringify(aad.toString())});
      const dekObject = (extra) => [{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_GENERIC_SECRET },
        { type: p.CKA_TOKEN, value: false }, { type: p.CKA_EXTRACTABLE, value: true }, ...extra];
      const obj = lib.C_CreateObject(session, dekObject([{ type: p.CKA_SENSITIVE, value: true }, { type: p.CKA_VALUE, value: Buffer.from(${JSON.stringify(dek.reveal().toString('hex'))}, 'hex') }]));
      const w = lib.C_WrapKey(session, KWP, kek, obj, Buffer.alloc(600));
      lib.C_SignInit(session, HMAC, mac);
      const m = lib.C_Sign(session, macInput(aad, w), Buffer.alloc(32));
      const blob = Buffer.concat([Buffer.from([0x11]), w, m]);
      const pb = Buffer.from(${JSON.stringify(mine.toString('hex'))}, 'hex');
      const pw = pb.subarray(1, pb.length - 32);
      lib.C_VerifyInit(session, HMAC, mac);
      const verified = lib.C_Verify(session, macInput(aad, pw), pb.subarray(pb.length - 32));
      const h = lib.C_UnwrapKey(session, KWP, kek, pw, dekObject([{ type: p.CKA_SENSITIVE, value: false }]));
      const value = lib.C_GetAttributeValue(session, h, [{ type: p.CKA_VALUE }])[0].value;
      return { blob: blob.toString('hex'), verified, value: value.toString('hex'), length: pb.length, format: pb[0] };`);
    expect(theirs).toMatchObject({ verified: true, value: dek.reveal().toString('hex'), length: 1 + 40 + 32, format: 0x11 });
    const back = await provider.unwrap({ kek, blob: Buffer.from(theirs.blob, 'hex'), aad });
    expect(back.reveal().equals(dek.reveal())).toBe(true);
    back.dispose();
    dek.dispose();
  });

  it('rejects a wrong PIN as auth after exactly one attempt, without the PIN in the message', async () => {
    const pin = `wrong-${randomBytes(4).toString('hex')}`;
    const own = createPkcs11Provider({ logger: silentLogger });
    const counted = countingProvider(own);
    const guarded = withPolicy(counted.provider, () => RETRYING, silentLogger);
    const err = await rejection(guarded.probe(profile('bad-pin', { ...tokens[1].details(), pin })));
    expect(err.kind).toBe('auth');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/^HSM login failed: wrong PIN \(CKR_PIN_INCORRECT\)/);
    expect(err.message).not.toContain(pin);
    expect(String(err.stack)).not.toContain(pin);
    expect(counted.calls.get('probe')).toBe(1);
    await own.close();
  });

  it('rejects a second profile on a logged-in token with another PIN as auth', async () => {
    const good = profile('good', tokens[0].details());
    await provider.probe(good);
    const err = await rejection(provider.probe(profile('other-pin', { ...tokens[0].details(), pin: 'not-the-pin' })));
    expect(err.kind).toBe('auth');
    expect(err.message).not.toContain('not-the-pin');
  });

  it('rejects a missing library as provider, naming the path, without retrying', async () => {
    const counted = countingProvider(provider);
    const guarded = withPolicy(counted.provider, () => RETRYING, silentLogger);
    const err = await rejection(guarded.probe(profile('no-lib', { ...tokens[0].details(), library: '/nonexistent/libnothing.so' })));
    expect(err.kind).toBe('provider');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('Cannot load PKCS#11 library /nonexistent/libnothing.so');
    expect(counted.calls.get('probe')).toBe(1);
  });

  it.each([
    ['token_label', { token_label: 'no-such-token' }, "no token labelled 'no-such-token'"],
    ['slot', { token_label: undefined, slot: '4242' }, 'slot 4242 has no token'],
    ['slot_list_index', { token_label: undefined, slot_list_index: '99' }, 'slot_list_index 99 is out of range'],
  ])('rejects a %s that names no token as param', async (_what, patch, text) => {
    const details = { ...tokens[0].details(), ...patch } as Record<string, string | undefined>;
    const clean = Object.fromEntries(Object.entries(details).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const err = await rejection(provider.probe(profile('missing', clean)));
    expect(err.kind).toBe('param');
    expect(err.message).toContain(text);
  });

  it('finds the token by slot_list_index and by slot id as well as by label', async () => {
    const { index, slotId } = inFreshProcess(tokens[0], `
      const slots = lib.C_GetSlotList(true);
      const index = slots.findIndex((s) => s.equals(slot));
      return { index, slotId: slot.readBigUInt64LE(0).toString() };`);
    const label = `kek-sel-${randomBytes(4).toString('hex')}`;
    await provider.createKek({ profile: profile('by-index', { library: tokens[0].library, pin: tokens[0].pin, slot_list_index: String(index) }), label }, 128);
    expect(await provider.hasKek({ profile: profile('by-slot', { library: tokens[0].library, pin: tokens[0].pin, slot: slotId }), label })).toBe(true);
    const both = profile('both', { ...tokens[1].details(), slot: slotId });
    expect((await rejection(provider.probe(both))).message).toContain('name different tokens');
  });

  it('reports invalid details as sentences naming each detail, never echoing the PIN', () => {
    expect(provider.validateProfile(tokens[0].details())).toEqual([]);
    const problems = provider.validateProfile({ library: 'libsofthsm2.so', slot: '-1', slot_list_index: 'x', pin: '', max_sessions: '0', colour: 'blue' });
    expect(problems).toEqual([
      "Unknown detail 'colour' (allowed: library, slot, slot_list_index, token_label, pin, max_sessions, threads)",
      "Detail 'library' must be an absolute path",
      "Detail 'slot' must be an integer slot id",
      "Detail 'slot_list_index' must be an integer >= 0",
      "Detail 'pin' is required: the token's user PIN",
      "Detail 'max_sessions' must be an integer > 0",
    ]);
    expect(provider.validateProfile({ pin: 'secret-pin' })).toEqual([
      "Detail 'library' is required: the path of the PKCS#11 library (.so)",
      "One of the details 'slot', 'slot_list_index' or 'token_label' is required to find the token",
    ]);
    expect(provider.capabilities.inBackendRewrap).toBe(true);
  });

  it('refuses a profile with invalid details as param before loading anything', async () => {
    const err = await rejection(provider.probe(profile('bad', { library: '/x.so', token_label: 't' })));
    expect(err.kind).toBe('param');
    expect(err.message).toContain("Detail 'pin' is required");
  });

  it('keeps working after invalidateProfile, reconnecting on the next call', async () => {
    const p = profile('inv', tokens[1].details({ max_sessions: '2' }));
    const kek = { profile: p, label: `kek-inv-${randomBytes(4).toString('hex')}` };
    await provider.createKek(kek, 192);
    const dek = SecretBytes.random(24);
    const blob = await provider.wrap({ kek, dek, aad: Buffer.from('a') });
    await provider.invalidateProfile(p.id);
    const back = await provider.unwrap({ kek, blob, aad: Buffer.from('a') });
    expect(back.reveal().equals(dek.reveal())).toBe(true);
    back.dispose();
    dek.dispose();
  });

  it('serves 200 concurrent calls through a pool of max_sessions 2', async () => {
    const p = profile('small', tokens[1].details({ max_sessions: '2' }));
    const kek = { profile: p, label: `kek-pool-${randomBytes(4).toString('hex')}` };
    await provider.createKek(kek, 256);
    const blobs = await Promise.all(Array.from({ length: 200 }, () => provider.generateAndWrap({ kek, bytes: 32, aad: Buffer.from('x') })));
    expect(new Set(blobs.map((b) => b.toString('hex'))).size).toBe(200);
  });
});
