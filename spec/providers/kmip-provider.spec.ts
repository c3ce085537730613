import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TLSSocket } from 'node:tls';
import { silentLogger } from '../../src/core/logger';
import { SecretBytes } from '../../src/core/secret-bytes';
import { createKmipProvider } from '../../src/providers/kmip/kmip-provider';
import { KmipClient } from '../../src/providers/kmip/client';
import {
  activate, createCmacKey, LIVE_STATES, locateByNameIn, locatedIds, Operation, payloadOf, revoke, Tag, uniqueIdOf,
} from '../../src/providers/kmip/messages';
import { parseKmipProfile } from '../../src/providers/kmip/profile';
import { childOf, childrenOf, decodeTtlv } from '../../src/providers/kmip/ttlv';
import type { BackendPolicy, HsmProfileConfig, KekProvider } from '../../src/providers/provider';
import { withPolicy } from '../../src/providers/registry';
import { freePort, startHungTlsServer, startPyKmip, type PyKmipServer } from '../support/pykmip';
import { countingProvider, kekProviderContract, rejection } from './kek-provider-contract';

const profile = (name: string, details: Record<string, string>): HsmProfileConfig => ({
  id: `p-${randomBytes(4).toString('hex')}`, name, protocol: 'kmip', details,
});

let server: PyKmipServer;
beforeAll(async () => {
  server = await startPyKmip();
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

kekProviderContract('kmip (PyKMIP)', async () => {
  const provider = createKmipProvider({ logger: silentLogger });
  return {
    provider,
    profile: profile('kmip-a', server.details()),
    otherProfile: profile('kmip-b', server.details({ max_connections: '2', batch_items: '7' }, { paths: true })),
    teardown: () => provider.close(),
  };
});

// KMIP 1.2 has no AEAD fields: the same contract on encrypt-then-MAC (AES-CBC, then AES-CMAC by a second server key).
kekProviderContract('kmip 1.2 (PyKMIP, AES-CBC then AES-CMAC)', async () => {
  const provider = createKmipProvider({ logger: silentLogger });
  return {
    provider,
    profile: profile('kmip12-a', server.details({ kmipversion: '1.2' })),
    otherProfile: profile('kmip13-b', server.details({ kmipversion: '1.3', batch_items: '7' })),
    teardown: () => provider.close(),
  };
});

const RETRYING: BackendPolicy = { timeoutMs: 20_000, retries: 6, baseDelayMs: 200 };
const label = (what: string): string => `kek-${what}-${randomBytes(4).toString('hex')}`;

describe('kmip provider', () => {
  let provider: KekProvider;
  beforeAll(() => {
    provider = createKmipProvider({ logger: silentLogger });
  });
  afterAll(async () => {
    await provider.close();
  });

  it('creates an Active AES KEK named by its label and never offers its material (no Get is sent)', async () => {
    const p = profile('kmip', server.details());
    const kek = { profile: p, label: label('attrs') };
    const seen: string[] = [];
    const counted = countingRequests(provider, seen);
    await counted.createKek(kek, 192);
    const blob = await counted.generateAndWrap({ kek, bytes: 32, aad: Buffer.from('a') });
    expect(blob[0]).toBe(0x21);
    expect(blob.length).toBe(1 + 12 + 32 + 16);
    expect(await counted.hasKek(kek)).toBe(true);
    expect(seen).not.toContain('Get');
  });

  it('reports invalid details as sentences naming each detail, never echoing the key or password', () => {
    const problems = provider.validateProfile({ port: '0', ca: 'nope', private_key: 'SECRET-KEY-TEXT', password: 'SECRET-PW', kmipversion: '1.1', colour: 'red' });
    expect(problems).toEqual(expect.arrayContaining([
      "Unknown detail 'colour' (allowed: host, port, ca, client_certificate, private_key, username, password, kmipversion, max_connections, batch_items)",
      "Detail 'host' is required: the KMIP server's host name or IP address",
      "Detail 'port' must be an integer from 1 to 65535",
      "Detail 'ca' must be PEM text (-----BEGIN …) or an absolute file path",
      "Detail 'client_certificate' is required: this server's client certificate (clientAuth)",
      "Detail 'password' needs 'username'",
    ]));
    expect(problems).toContain("Detail 'kmipversion' must be 1.2, 1.3 or 1.4 (got 1.1)");
    expect(problems.join(' ')).not.toMatch(/SECRET/);
    expect(provider.validateProfile(server.details())).toEqual([]);
    expect(provider.validateProfile(server.details({}, { paths: true }))).toEqual([]);
    expect(provider.validateProfile({ ...server.details(), ca: '/nonexistent/ca.pem' })).toEqual(["Detail 'ca': the file /nonexistent/ca.pem cannot be read (ENOENT)"]);
  });

  it('refuses a password-protected private key, a directory and an oversized file as details, saying which', () => {
    const encrypted = '-----BEGIN ENCRYPTED PRIVATE KEY-----\nSECRET-BYTES\n-----END ENCRYPTED PRIVATE KEY-----\n';
    const problems = provider.validateProfile({ ...server.details(), private_key: encrypted });
    expect(problems).toEqual(["Detail 'private_key' holds a password-protected (ENCRYPTED) private key, which the KMS cannot open: give the key unencrypted (PKCS#8 or PKCS#1 PEM)"]);
    expect(problems.join(' ')).not.toMatch(/SECRET/);
    expect(provider.validateProfile({ ...server.details(), ca: server.dir })).toEqual([`Detail 'ca': ${server.dir} is not a regular file`]);
    const big = join(server.dir, 'big.pem');
    writeFileSync(big, Buffer.alloc(1024 * 1024 + 1, 0x41));
    expect(provider.validateProfile({ ...server.details(), ca: big })).toEqual([`Detail 'ca': the file ${big} is over 1048576 bytes, too large for a PEM certificate or key`]);
  });

  it('refuses a client certificate from another CA as auth, saying the TLS handshake was refused, without retrying', async () => {
    const foreign = server.makeClient('stranger', { foreign: true });
    const p = profile('kmip-stranger', server.details({ client_certificate: foreign.cert, private_key: foreign.key }));
    const { provider: counted, calls } = countingProvider(provider);
    const err = await rejection(withPolicy(counted, () => RETRYING, silentLogger).probe(p));
    expect(err.kind).toBe('auth');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/TLS handshake refused/);
    expect(err.message).not.toContain(foreign.key.slice(40, 80));
    expect(calls.get('probe')).toBe(1);
  });

  it('refuses a client certificate without clientAuth as auth, saying the TLS handshake was refused', async () => {
    const c = server.makeClient('no-client-auth', { noClientAuth: true });
    const err = await rejection(provider.probe(profile('kmip-noauth', server.details({ client_certificate: c.cert, private_key: c.key }))));
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/TLS handshake refused .*unsupported certificate/);
  });

  it('wraps under KMIP 1.2 as 0x22 ‖ IV ‖ CBC ciphertext ‖ CMAC, checks the CMAC before any Decrypt, and destroys both server keys', async () => {
    const p = profile('kmip12', server.details({ kmipversion: '1.2' }));
    const kek = { profile: p, label: label('cbc') };
    await provider.createKek(kek, 256);
    const seen: string[] = [];
    const counted = countingRequests(provider, seen);
    const dek = SecretBytes.random(24);
    const blob = await counted.wrap({ kek, dek, aad: Buffer.from('x') });
    expect(blob[0]).toBe(0x22);
    expect(blob.length).toBe(1 + 16 + 32 + 16);
    expect(seen).toEqual(['Encrypt', 'MAC']);
    seen.length = 0;
    const bad = Buffer.from(blob);
    bad[20] ^= 1;
    expect((await rejection(counted.unwrap({ kek, blob: bad, aad: Buffer.from('x') }))).kind).toBe('integrity');
    expect(seen).toEqual(['MAC']);
    await provider.destroyKek(kek);
    expect(await provider.hasKek(kek)).toBe(false);
    expect(await provider.hasKek({ profile: p, label: `${kek.label}.mac` })).toBe(false);
    dek.dispose();
  });

  /** A raw KMIP client on the test server, to leave the server in states the provider would not. */
  const rawClient = (details: Record<string, string>): KmipClient => new KmipClient('raw', parseKmipProfile('raw', details));
  const locateIn = async (c: KmipClient, name: string, state: number): Promise<string[]> => {
    const [a] = await c.call([locateByNameIn(name, state)]);
    return a.ok ? locatedIds(a.payload) : [];
  };

  it('destroys a KEK whose Revoke succeeded and whose Destroy did not (a Deactivated key), instead of reporting success and leaving it', async () => {
    const details = server.details();
    const kek = { profile: profile('kmip-half-destroyed', details), label: label('deactivated') };
    await provider.createKek(kek, 256);
    const raw = rawClient(details);
    try {
      const [uid] = await locateIn(raw, kek.label, LIVE_STATES.active);
      const [revoked] = await raw.call([revoke(uid)]);
      expect(revoked.ok).toBe(true);
      expect(await locateIn(raw, kek.label, LIVE_STATES.deactivated)).toEqual([uid]);
      await provider.destroyKek(kek);
      expect(await locateIn(raw, kek.label, LIVE_STATES.deactivated)).toEqual([]);
    } finally {
      raw.close();
    }
  });

  it('under KMIP 1.2, reuses a CMAC key left by an earlier failed KEK creation instead of making a second one', async () => {
    const details = server.details({ kmipversion: '1.2' });
    const kek = { profile: profile('kmip12-leftover-mac', details), label: label('leftover') };
    const raw = rawClient(details);
    try {
      // What a creation that failed after its CMAC key leaves behind.
      const [created] = await raw.call([createCmacKey(`${kek.label}.mac`)]);
      const [activated] = await raw.call([activate(uniqueIdOf(payloadOf(created)))]);
      expect(activated.ok).toBe(true);
      await provider.createKek(kek, 256);
      expect(await locateIn(raw, `${kek.label}.mac`, LIVE_STATES.active)).toHaveLength(1);
      const dek = SecretBytes.random(32);
      const blob = await provider.wrap({ kek, dek, aad: Buffer.from('x') });
      const back = await provider.unwrap({ kek, blob, aad: Buffer.from('x') });
      expect(back.reveal().equals(dek.reveal())).toBe(true);
      back.dispose();
      dek.dispose();
      await provider.destroyKek(kek);
      expect(await locateIn(raw, `${kek.label}.mac`, LIVE_STATES.active)).toEqual([]);
    } finally {
      raw.close();
    }
  });

  it('opens each blob by its format byte, so blobs made under KMIP 1.2 still unwrap after the profile moves to 1.4, mixed in one batch', async () => {
    const p12 = profile('kmip-moving', server.details({ kmipversion: '1.2' }));
    const kek = { profile: p12, label: label('moving') };
    await provider.createKek(kek, 256);
    const aad = Buffer.from('moving');
    const dek1 = SecretBytes.random(32);
    const dek2 = SecretBytes.random(32);
    try {
      const cbcBlob = await provider.wrap({ kek, dek: dek1, aad });
      expect(cbcBlob[0]).toBe(0x22);
      const p14 = { ...p12, details: server.details() };
      const kek14 = { profile: p14, label: kek.label };
      const gcmBlob = await provider.wrap({ kek: kek14, dek: dek2, aad });
      expect(gcmBlob[0]).toBe(0x21);
      const results = await provider.unwrapMany([{ kek: kek14, blob: cbcBlob, aad }, { kek: kek14, blob: gcmBlob, aad }]);
      const backs = results.map((r) => {
        if (!r.ok) throw r.error;
        return r.value;
      });
      expect(backs[0].reveal().equals(dek1.reveal())).toBe(true);
      expect(backs[1].reveal().equals(dek2.reveal())).toBe(true);
      backs.forEach((b) => b.dispose());
      await provider.destroyKek(kek14);
    } finally {
      dek1.dispose();
      dek2.dispose();
    }
  });

  it('sends Create and Activate in requests of their own, never batched with other callers\' Encrypts', async () => {
    const p = profile('kmip-alone', server.details({ max_connections: '1' }));
    const existing = { profile: p, label: label('alone-a') };
    await provider.createKek(existing, 256);
    const perRequest: string[][] = [];
    const write = TLSSocket.prototype.write;
    TLSSocket.prototype.write = function (this: TLSSocket, chunk: unknown, ...rest: unknown[]) {
      if (Buffer.isBuffer(chunk)) perRequest.push(operationsIn(chunk));
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof write;
    const dek = SecretBytes.random(32);
    const fresh = { profile: p, label: label('alone-b') };
    // Wraps keep the one connection's queue full while the KEK is made.
    let creating = true;
    const wrapper = async (): Promise<void> => {
      while (creating) await provider.wrap({ kek: existing, dek, aad: Buffer.from('x') });
    };
    try {
      const workers = Array.from({ length: 8 }, wrapper);
      await provider.createKek(fresh, 256).finally(() => { creating = false; });
      await Promise.all(workers);
    } finally {
      TLSSocket.prototype.write = write;
      dek.dispose();
    }
    const lifecycle = perRequest.filter((ops) => ops.some((o) => ['Create', 'Activate', 'Revoke', 'Destroy'].includes(o)));
    expect(lifecycle.length).toBeGreaterThanOrEqual(2);
    for (const ops of lifecycle) expect(ops).toHaveLength(1);
    await provider.destroyKek(existing);
    await provider.destroyKek(fresh);
  });

  it('refuses a server whose certificate another CA signed as auth', async () => {
    const other = server.makeClient('other-ca-anchor', { foreign: true });
    const err = await rejection(provider.probe(profile('kmip-wrong-ca', server.details({ ca: readFileSync(join(server.dir, 'foreign-ca.crt'), 'utf8') }))));
    expect(other.cert).toBeTruthy();
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/TLS handshake refused/);
  });

  it('refuses an unknown host as param when a profile is checked (probe), naming it', async () => {
    const err = await rejection(provider.probe(profile('kmip-nohost', server.details({ host: 'no-such-kmip-host.invalid' }))));
    expect(err.kind).toBe('param');
    expect(err.message).toBe('KMIP server host no-such-kmip-host.invalid of HSM profile kmip-nohost is unknown (DNS: ENOTFOUND); check the host detail');
  });

  it('reports an unknown host in service (a wrap) as unavailable and retryable: DNS may be down for a while', async () => {
    const kek = { profile: profile('kmip-nohost-later', server.details({ host: 'no-such-kmip-host.invalid' })), label: label('nohost') };
    const dek = SecretBytes.random(32);
    const err = await rejection(provider.wrap({ kek, dek, aad: Buffer.from('x') }));
    dek.dispose();
    expect(err.kind).toBe('unavailable');
    expect(err.retryable).toBe(true);
  });

  it('reports a closed port as unavailable and retryable', async () => {
    const err = await rejection(provider.probe(profile('kmip-closed', server.details({ port: String(await freePort()) }))));
    expect(err.kind).toBe('unavailable');
    expect(err.retryable).toBe(true);
  });

  it('reconnects to a restarted server: the KEKs are still there, and a wrap under the policy succeeds once it is back', async () => {
    const p = profile('kmip-restart', server.details());
    const guarded = withPolicy(provider, () => RETRYING, silentLogger);
    const kek = { profile: p, label: label('restart') };
    await guarded.createKek(kek, 256);
    const dek = SecretBytes.random(32);
    const aad = Buffer.from('vol-restart');
    const before = await guarded.wrap({ kek, dek, aad });
    await server.kill();
    const down = await rejection(provider.wrap({ kek, dek, aad }));
    expect(down.kind).toBe('unavailable');
    const restarting = new Promise((r) => setTimeout(r, 500)).then(() => server.start());
    const after = await guarded.wrap({ kek, dek, aad });
    await restarting;
    for (const blob of [before, after]) {
      const back = await guarded.unwrap({ kek, blob, aad });
      expect(back.reveal().equals(dek.reveal())).toBe(true);
      back.dispose();
    }
    dek.dispose();
  });

  it('abandons a server that accepts the TLS connection and never answers at the operation timeout, and never reuses that connection', async () => {
    const hung = await startHungTlsServer(server);
    try {
      const p = profile('kmip-hung', server.details({ port: String(hung.port) }));
      const guarded = withPolicy(provider, () => ({ timeoutMs: 1500, retries: 0, baseDelayMs: 1 }), silentLogger);
      const t0 = Date.now();
      const err = await rejection(guarded.wrap({ kek: { profile: p, label: 'any' }, dek: SecretBytes.random(32), aad: Buffer.alloc(0) }));
      console.log(`[kmip] a wrap against a server that never answers was abandoned after ${Date.now() - t0} ms (operation timeout 1500 ms)`);
      expect(err.kind).toBe('unavailable');
      expect(err.message).toBe('KMS operation kmip.wrap timed out after 1.5s');
      await hung.closed(1);
      expect(provider.sessionStats!().find((s) => s.profile === 'kmip-hung')).toEqual({ profile: 'kmip-hung', inUse: 0, idle: 0 });
    } finally {
      await hung.stop();
    }
  });

  it('sends a batch of 50 wraps as one KMIP request of 50 Encrypt batch items, and 50 unwraps as one of 50 Decrypt items', async () => {
    const p = profile('kmip-one-request', server.details());
    const kek = { profile: p, label: label('one-request') };
    await provider.createKek(kek, 256);
    await provider.hasKek(kek); // the label's Unique Identifier is now cached: no Locate below
    const requests: string[][] = [];
    const counted = countingRequests(provider, [], requests);
    const deks = Array.from({ length: 50 }, () => SecretBytes.random(32));
    const aad = (i: number) => Buffer.from(`one-${i}`);
    const blobs = await counted.wrapMany(deks.map((dek, i) => ({ kek, dek, aad: aad(i) })));
    const backs = await counted.unwrapMany(blobs.map((b, i) => ({ kek, blob: (b as { value: Buffer }).value, aad: aad(i) })));
    expect(requests.map((r) => [r[0], r.length])).toEqual([['Encrypt', 50], ['Decrypt', 50]]);
    backs.forEach((b, i) => {
      expect(b.ok && b.value.reveal().equals(deks[i].reveal())).toBe(true);
      if (b.ok) b.value.dispose();
    });
    deks.forEach((d) => d.dispose());
  });

  it('splits a batch into requests of at most batch_items items over at most max_connections connections', async () => {
    const p = profile('kmip-split', server.details({ batch_items: '5', max_connections: '2' }));
    const kek = { profile: p, label: label('split') };
    await provider.createKek(kek, 128);
    const reqs = Array.from({ length: 23 }, (_, i) => ({ kek, bytes: 32, aad: Buffer.from(`s-${i}`) }));
    const blobs = await provider.generateAndWrapMany(reqs);
    expect(blobs.every((r) => r.ok)).toBe(true);
    const stats = provider.sessionStats!().find((s) => s.profile === 'kmip-split')!;
    expect(stats.inUse + stats.idle).toBeLessThanOrEqual(2);
    expect(stats.idle).toBeGreaterThan(0);
  });
});

/** Records the KMIP operations sent, by wrapping the TLS socket writes of a provider's calls. */
function countingRequests(p: KekProvider, seen: string[], perRequest: string[][] = []): KekProvider {
  const write = TLSSocket.prototype.write;
  return new Proxy(p, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        TLSSocket.prototype.write = function (this: TLSSocket, chunk: unknown, ...rest: unknown[]) {
          if (Buffer.isBuffer(chunk)) {
            const ops = operationsIn(chunk);
            seen.push(...ops);
            perRequest.push(ops);
          }
          return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
        } as typeof write;
        try {
          return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          TLSSocket.prototype.write = write;
        }
      };
    },
  });
}

function operationsIn(bytes: Buffer): string[] {
  const msg = decodeTtlv(bytes);
  const names = Object.fromEntries(Object.entries(Operation).map(([k, v]) => [v, k]));
  return childrenOf(msg, Tag.BatchItem).map((b) => {
    const op = childOf(b, Tag.Operation);
    return op?.type === 'enumeration' ? names[op.value] ?? `0x${op.value.toString(16)}` : '?';
  }).concat(childrenOf(msg, Tag.BatchItem).length ? [] : ['?']).map((n) => (n === '0xa' ? 'Get' : n));
}
