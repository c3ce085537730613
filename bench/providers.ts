/**
 * KEK backend throughput: wrap, unwrap and rewrap per second through each provider (via the
 * registry, so the retry/timeout policy wrapper is included), single calls and batches, next to raw
 * SoftHSM (pkcs11js direct, same mechanisms, one session, sync and async) and raw Node crypto
 * (aes-256-gcm), measured in the same run. Creates its own temp SoftHSM token and temp SQLite database.
 * Per row: DEKs per second, CPU per DEK (every thread of the process, so the PKCS#11 library thread's
 * work is included), the event loop's worst and p99 delay (monitorEventLoopDelay), and for PKCS#11
 * rows the ratio to the ceiling of the same operation. KMIP rows run against a private PyKMIP server
 * (python3-pykmip; skipped with a note when it is not installed) beside a raw loop that sends the
 * same requests over one TLS connection, one at a time, with no pool, queue or policy around them.
 *
 *   npx tsx bench/providers.ts            (or npm run bench:providers)
 *   BENCH_SECONDS=2 BENCH_CONCURRENCY=16 BENCH_BATCHES=100,500 BENCH_BATCH_CONCURRENCY=2  (defaults)
 *   BENCH_KMIP_BATCHES=64,256  (KMIP batch sizes: PyKMIP serves a few hundred operations a second)
 */
import { DatabaseKekRepository } from '../src/db/repositories/database-keks';
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as pkcs11js from 'pkcs11js';
import { MasterKey } from '../src/config/master-key';
import { openDb } from '../src/db/knex';
import { SecretBytes } from '../src/core/secret-bytes';
import { silentLogger } from '../src/core/logger';
import { dekTemplate, HMAC, KWP, kekTemplate, macInput, macKeyTemplate } from '../src/providers/pkcs11/mechanisms';
import { rawRewrap } from './pkcs11-ceiling';
import { KmipConnection } from '../src/providers/kmip/connection';
import {
  decryptGcm, decryptResult, encryptGcm, encryptResult, locateByName, locatedIds, parseResponse, payloadOf, requestMessage, type RequestItem,
} from '../src/providers/kmip/messages';
import { existsSync as pykmipInstalled } from 'node:fs';
import { PYKMIP_SERVER, startPyKmip, type PyKmipServer } from '../spec/support/pykmip';
import type { HsmProfileConfig, ItemResult, KekProvider, KekRef } from '../src/providers/provider';
import { createProviderRegistry } from '../src/providers/registry';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const LIBRARY = process.env.SOFTHSM2_LIB ?? '/usr/lib/softhsm/libsofthsm2.so';
const BATCHES = (process.env.BENCH_BATCHES ?? '100,500').split(',').map(Number);
const BATCH_CONCURRENCY = Number(process.env.BENCH_BATCH_CONCURRENCY ?? 2);
const KMIP_BATCHES = (process.env.BENCH_KMIP_BATCHES ?? '64,256').split(',').map(Number);

interface Result { name: string; opsPerSec: number; maxLagMs: number; p99LagMs: number; netP99LagMs: number; cpuUsPerOp: number }

const SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;
/** Time the main thread has spent runnable but waiting for a CPU, in ms (Linux; 0 elsewhere). */
const runQueueWaitMs = (): number => (existsSync(SCHEDSTAT) ? Number(readFileSync(SCHEDSTAT, 'utf8').split(' ')[1]) / 1e6 : 0);

/**
 * The p99 of a 10 ms timer's delay less the time the main thread waited for a CPU meanwhile: on a
 * shared 2-core machine the library thread and other processes take the cores, which is not the
 * event loop being blocked. Sampled beside monitorEventLoopDelay, whose figure includes that wait.
 */
function netLagSampler(): { stop(): number } {
  const lags: number[] = [];
  let last = performance.now();
  let lastWait = runQueueWaitMs();
  const t = setInterval(() => {
    const now = performance.now();
    const wait = runQueueWaitMs();
    lags.push(Math.max(0, now - last - 10 - (wait - lastWait)));
    last = now;
    lastWait = wait;
  }, 10);
  return {
    stop() {
      clearInterval(t);
      lags.sort((a, b) => a - b);
      return lags.length ? lags[Math.min(lags.length - 1, Math.floor(lags.length * 0.99))] : 0;
    },
  };
}

/**
 * Runs `op` with `concurrency` in flight for SECONDS; a batch `op` returns how many DEKs it handled
 * (a number), anything else counts as one. Reports DEKs/s, CPU µs per DEK and the event loop's worst and p99 delay.
 */
async function measure(name: string, concurrency: number, op: () => unknown): Promise<Result> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  const end = performance.now() + SECONDS * 1000;
  let done = 0;
  let calls = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const n = await op();
      done += typeof n === 'number' ? n : 1;
      calls++;
      if (concurrency === 1 && calls % 256 === 0) await new Promise((r) => setImmediate(r));
    }
  };
  delay.enable();
  const net = netLagSampler();
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const cpu = process.cpuUsage(cpu0);
  const secs = (performance.now() - start) / 1000;
  delay.disable();
  const netP99LagMs = net.stop();
  // The histogram records each turn's delay past the 10 ms resolution timer, in ns.
  const lag = (ns: number): number => Math.max(0, ns / 1e6 - 10);
  return { name, opsPerSec: done / secs, maxLagMs: lag(delay.max), p99LagMs: lag(delay.percentile(99)), netP99LagMs, cpuUsPerOp: (cpu.user + cpu.system) / Math.max(done, 1) };
}

/** The average of two runs of one row. */
function mean(a: Result, b: Result): Result {
  const avg = (x: number, y: number): number => (x + y) / 2;
  return {
    name: a.name, opsPerSec: avg(a.opsPerSec, b.opsPerSec), maxLagMs: Math.max(a.maxLagMs, b.maxLagMs), p99LagMs: avg(a.p99LagMs, b.p99LagMs),
    netP99LagMs: avg(a.netP99LagMs, b.netP99LagMs), cpuUsPerOp: avg(a.cpuUsPerOp, b.cpuUsPerOp),
  };
}

/** The number of items of a batch that succeeded; throws on the first failure (a benchmark must not count failures). */
function succeeded<T>(results: ItemResult<T>[], dispose?: (v: T) => void): number {
  for (const r of results) {
    if (!r.ok) throw r.error;
    dispose?.(r.value);
  }
  return results.length;
}

/** Provider-level wrap / unwrap / rewrap, through the registry. */
async function benchProvider(label: string, p: KekProvider, v1: KekRef, v2: KekRef, batches = BATCHES): Promise<Result[]> {
  const aad = Buffer.from('volume|key|v1|vol-bench');
  const aad2 = Buffer.from('volume|key|v2|vol-bench');
  const dek = SecretBytes.random(32);
  const blob = await p.wrap({ kek: v1, dek, aad });
  const out = [
    await measure(`${label} wrap`, CONCURRENCY, () => p.wrap({ kek: v1, dek, aad })),
    await measure(`${label} unwrap`, CONCURRENCY, async () => (await p.unwrap({ kek: v1, blob, aad })).dispose()),
    await measure(`${label} rewrap`, CONCURRENCY, () => p.rewrap({ from: { kek: v1, blob, aad }, to: { kek: v2, aad: aad2 } })),
    await measure(`${label} generateAndWrap`, CONCURRENCY, () => p.generateAndWrap({ kek: v1, bytes: 32, aad })),
  ];
  for (const n of batches) {
    const items = Array.from({ length: n }, () => ({ kek: v1, dek, aad }));
    const blobs = Array.from({ length: n }, () => ({ kek: v1, blob, aad }));
    const rewraps = Array.from({ length: n }, () => ({ from: { kek: v1, blob, aad }, to: { kek: v2, aad: aad2 } }));
    const gens = Array.from({ length: n }, () => ({ kek: v1, bytes: 32, aad }));
    const c = BATCH_CONCURRENCY;
    out.push(
      await measure(`${label} wrapMany ×${n}`, c, async () => succeeded(await p.wrapMany(items))),
      await measure(`${label} unwrapMany ×${n}`, c, async () => succeeded(await p.unwrapMany(blobs), (s) => s.dispose())),
      await measure(`${label} rewrapMany ×${n}`, c, async () => succeeded(await p.rewrapMany(rewraps))),
      await measure(`${label} generateAndWrapMany ×${n}`, c, async () => succeeded(await p.generateAndWrapMany(gens))),
    );
  }
  dek.dispose();
  return out;
}

/** pkcs11js direct on one session: KWP wrap of a DEK object + HMAC, as the provider does, without pool or policy. */
async function benchRawSoftHsm(tokenLabel: string, pin: string): Promise<Result[]> {
  const lib = new pkcs11js.PKCS11();
  lib.load(LIBRARY);
  try { lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }); } catch { /* the provider initialised it in this process */ }
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === tokenLabel)!;
  const s = lib.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  try { lib.C_Login(s, pkcs11js.CKU_USER, pin); } catch { /* already logged in by the provider */ }
  const id = randomBytes(16);
  const kek = lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, kekTemplate('raw-kek', id, 256));
  const mac = lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, macKeyTemplate('raw-kek', id));
  const dek = randomBytes(32);
  const aad = Buffer.from('volume|key|v1|vol-bench');
  const wrapSync = (): Buffer => {
    const obj = lib.C_CreateObject(s, dekTemplate({ readable: false, value: dek }));
    const w = lib.C_WrapKey(s, KWP, kek, obj, Buffer.alloc(64));
    lib.C_SignInit(s, HMAC, mac);
    lib.C_Sign(s, macInput(aad, w), Buffer.alloc(32));
    lib.C_DestroyObject(s, obj);
    return w;
  };
  const wrapAsync = async (): Promise<void> => {
    const obj = lib.C_CreateObject(s, dekTemplate({ readable: false, value: dek }));
    const out = Buffer.alloc(64);
    const w = await lib.C_WrapKeyAsync(s, KWP, kek, obj, out);
    lib.C_SignInit(s, HMAC, mac);
    const input = macInput(aad, w);
    const sig = Buffer.alloc(32);
    await lib.C_SignAsync(s, input, sig);
    lib.C_DestroyObject(s, obj);
  };
  const wrapped = wrapSync();
  const sig = (() => { lib.C_SignInit(s, HMAC, mac); return lib.C_Sign(s, macInput(aad, wrapped), Buffer.alloc(32)); })();
  const unwrapSync = (): void => {
    lib.C_VerifyInit(s, HMAC, mac);
    lib.C_Verify(s, macInput(aad, wrapped), sig);
    const h = lib.C_UnwrapKey(s, KWP, kek, wrapped, dekTemplate({ readable: true }));
    lib.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_VALUE }])[0].value as Buffer;
    lib.C_DestroyObject(s, h);
  };
  // The provider's rewrap inside one profile: verify, unwrap to a non-readable object, wrap under
  // the new KEK, MAC it, destroy the object. generateAndWrap: generate in the token, wrap, MAC.
  const kek2 = lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, kekTemplate('raw-kek-2', randomBytes(16), 256));
  const rewrapSync = (): void => rawRewrap(lib, s, { kek, mac, aad, wrapped, tag: sig }, { kek: kek2, mac, aad });
  const generateSync = (): void => {
    const h = lib.C_GenerateKey(s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, [...dekTemplate({ readable: false }), { type: pkcs11js.CKA_VALUE_LEN, value: 32 }]);
    const w = lib.C_WrapKey(s, KWP, kek, h, Buffer.alloc(64));
    lib.C_SignInit(s, HMAC, mac);
    lib.C_Sign(s, macInput(aad, w), Buffer.alloc(32));
    lib.C_DestroyObject(s, h);
  };
  const results = [
    await measure('ceiling wrap (sync, 1 session)', 1, wrapSync),
    await measure('raw SoftHSM wrap, async, 1 session', 1, wrapAsync),
    await measure('ceiling unwrap (sync, 1 session)', 1, unwrapSync),
    await measure('ceiling rewrap (sync, 1 session)', 1, rewrapSync),
    await measure('ceiling generateAndWrap (sync, 1 session)', 1, generateSync),
  ];
  lib.C_DestroyObject(s, kek2);
  lib.C_DestroyObject(s, kek);
  lib.C_DestroyObject(s, mac);
  lib.C_CloseSession(s);
  lib.close(); // no C_Finalize: the provider registry still uses the library in this process
  return results;
}

/**
 * The KMIP baseline: the provider's own requests (Encrypt and Decrypt with AES-GCM, the aad and
 * tag in KMIP 1.4 fields) sent one at a time over one TLS connection, with no pool, queue, policy
 * or circuit around them; batches as one request of n batch items.
 */
async function benchRawKmip(server: PyKmipServer, v1: string, v2: string): Promise<Result[]> {
  const d = server.details();
  const conn = await KmipConnection.open({ host: d.host, port: Number(d.port), ca: d.ca, cert: d.client_certificate, key: d.private_key, name: 'raw' });
  const opts = { version: { major: 1, minor: 4 } };
  const send = async (items: RequestItem[]) => {
    const answers = parseResponse(await conn.request(requestMessage(opts, items)), items.length).items;
    for (const a of answers) if (!a.ok) throw new Error(`raw KMIP ${a.operation} failed: ${a.reason} ${a.message}`);
    return answers;
  };
  const uidOf = async (label: string): Promise<string> => locatedIds(payloadOf((await send([locateByName(label)]))[0]))[0];
  const k1 = await uidOf(v1);
  const k2 = await uidOf(v2);
  const dek = randomBytes(32);
  const aad = Buffer.from('volume|key|v1|vol-bench');
  const aad2 = Buffer.from('volume|key|v2|vol-bench');
  const iv = randomBytes(12);
  const sealed = encryptResult(payloadOf((await send([encryptGcm(k1, dek, iv, aad)]))[0]));
  const enc = (uid: string, a: Buffer): RequestItem => encryptGcm(uid, dek, randomBytes(12), a);
  const dec = (): RequestItem => decryptGcm(k1, sealed.data, iv, aad, sealed.tag);
  const out = [
    await measure('raw KMIP wrap', 1, () => send([enc(k1, aad)])),
    await measure('raw KMIP unwrap', 1, async () => decryptResult(payloadOf((await send([dec()]))[0])).fill(0)),
    await measure('raw KMIP rewrap', 1, async () => {
      const plain = decryptResult(payloadOf((await send([dec()]))[0]));
      await send([encryptGcm(k2, plain, randomBytes(12), aad2)]);
      plain.fill(0);
    }),
    await measure('raw KMIP generateAndWrap', 1, () => send([encryptGcm(k1, randomBytes(32), randomBytes(12), aad)])),
  ];
  for (const n of KMIP_BATCHES) {
    out.push(
      await measure(`raw KMIP wrapMany ×${n}`, 1, async () => (await send(Array.from({ length: n }, () => enc(k1, aad)))).length),
      await measure(`raw KMIP unwrapMany ×${n}`, 1, async () => (await send(Array.from({ length: n }, dec))).length),
      await measure(`raw KMIP rewrapMany ×${n}`, 1, async () => {
        const plains = (await send(Array.from({ length: n }, dec))).map((a) => decryptResult(payloadOf(a)));
        await send(plains.map((p) => encryptGcm(k2, p, randomBytes(12), aad2)));
        plains.forEach((p) => p.fill(0));
        return n;
      }),
      await measure(`raw KMIP generateAndWrapMany ×${n}`, 1, async () => (await send(Array.from({ length: n }, () => encryptGcm(k1, randomBytes(32), randomBytes(12), aad)))).length),
    );
  }
  conn.close();
  return out;
}

/** Node's in-process aes-256-gcm on a 32-byte DEK: the floor any wrap costs. */
async function benchRawNode(): Promise<Result[]> {
  const key = randomBytes(32);
  const dek = randomBytes(32);
  const aad = Buffer.from('volume|key|v1|vol-bench');
  const seal = (): Buffer => {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(aad);
    return Buffer.concat([iv, c.update(dek), c.final(), c.getAuthTag()]);
  };
  const blob = seal();
  const open = (): void => {
    const d = createDecipheriv('aes-256-gcm', key, blob.subarray(0, 12));
    d.setAAD(aad);
    d.setAuthTag(blob.subarray(44));
    d.update(blob.subarray(12, 44));
    d.final();
  };
  return [await measure('raw Node aes-256-gcm seal', 1, seal), await measure('raw Node aes-256-gcm open', 1, open)];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-'));
  mkdirSync(join(dir, 'tokens'));
  process.env.SOFTHSM2_CONF = join(dir, 'softhsm2.conf');
  writeFileSync(process.env.SOFTHSM2_CONF, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const tokenLabel = `bench-${randomBytes(4).toString('hex')}`;
  const pin = randomBytes(6).toString('hex');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--so-pin', randomBytes(6).toString('hex'), '--pin', pin], { stdio: 'ignore' });
  const db = await openDb({ dataDir: join(dir, 'db') });
  const registry = createProviderRegistry({
    databaseKeks: new DatabaseKekRepository(db), masterKey: new MasterKey(randomBytes(32)), logger: silentLogger,
    policy: () => ({ timeoutMs: 30_000, retries: 3, baseDelayMs: 1000 }),
  });
  try {
    const results: Result[] = [];
    const dbp = registry.get('database');
    const dbProfile: HsmProfileConfig = { id: 'bench-db', name: 'bench-db', protocol: 'database', details: {} };
    const d1 = { profile: dbProfile, label: 'bench-db-v1' };
    const d2 = { profile: dbProfile, label: 'bench-db-v2' };
    await dbp.createKek(d1, 256);
    await dbp.createKek(d2, 256);
    results.push(...await benchProvider('database provider', dbp, d1, d2));

    const hsm = registry.get('pkcs11');
    const hsmProfile: HsmProfileConfig = { id: 'bench-hsm', name: 'bench-hsm', protocol: 'pkcs11', details: { library: LIBRARY, token_label: tokenLabel, pin, max_sessions: '8' } };
    const h1 = { profile: hsmProfile, label: 'bench-hsm-v1' };
    const h2 = { profile: hsmProfile, label: 'bench-hsm-v2' };
    await hsm.createKek(h1, 256);
    await hsm.createKek(h2, 256);
    // The ceilings run before and after the provider rows and are averaged: on a shared machine the
    // load drifts during a run, and each ratio should compare like with like.
    const before = await benchRawSoftHsm(tokenLabel, pin);
    results.push(...await benchProvider('pkcs11 provider', hsm, h1, h2));
    const after = await benchRawSoftHsm(tokenLabel, pin);
    results.push(...before.map((b, i) => mean(b, after[i])));

    if (pykmipInstalled(PYKMIP_SERVER)) {
      const server = await startPyKmip();
      try {
        const kmip = registry.get('kmip');
        const kmipProfile: HsmProfileConfig = { id: 'bench-kmip', name: 'bench-kmip', protocol: 'kmip', details: server.details() };
        const k1 = { profile: kmipProfile, label: 'bench-kmip-v1' };
        const k2 = { profile: kmipProfile, label: 'bench-kmip-v2' };
        await kmip.createKek(k1, 256);
        await kmip.createKek(k2, 256);
        // The raw loop runs before and after the provider rows and is averaged, as the ceilings are.
        const rawBefore = await benchRawKmip(server, k1.label, k2.label);
        results.push(...await benchProvider('kmip provider', kmip, k1, k2, KMIP_BATCHES));
        const rawAfter = await benchRawKmip(server, k1.label, k2.label);
        results.push(...rawBefore.map((b, i) => mean(b, rawAfter[i])));
      } finally {
        await server.stop();
      }
    } else {
      process.stdout.write(`(KMIP rows skipped: ${PYKMIP_SERVER} is not installed; apt-get install python3-pykmip)\n`);
    }
    results.push(...await benchRawNode());
    print(results);
  } finally {
    await registry.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

function print(results: Result[]): void {
  const rate = (n: string): number => results.find((r) => r.name === n)?.opsPerSec ?? NaN;
  const node = rate('raw Node aes-256-gcm seal');
  // Each provider row against the ceiling of the same operation: its exact call sequence, sync, one session.
  const ceilingOf = (name: string): number => {
    const op = name.match(/ (wrap|unwrap|rewrap|generateAndWrap)(Many)?( |$)/)?.[1];
    return op ? rate(`ceiling ${op} (sync, 1 session)`) : NaN;
  };
  // A KMIP provider row against the raw loop's row of the same operation and batch size.
  const rawKmipOf = (name: string): number => rate(name.replace('kmip provider', 'raw KMIP'));
  const w = Math.max(...results.map((r) => r.name.length));
  process.stdout.write(`\nKEK backends: ${SECONDS}s per row; single calls with ${CONCURRENCY} in flight, batches (×n DEKs) with ${BATCH_CONCURRENCY} in flight; figures per DEK\n\n`);
  process.stdout.write(`${'operation'.padEnd(w)}  ${'DEKs/s'.padStart(9)}  ${'CPU µs/op'.padStart(9)}  ${'max loop lag'.padStart(12)}  ${'p99 lag'.padStart(8)}  ${'p99 net'.padStart(8)}  ${'÷ Node GCM'.padStart(10)}  ${'÷ ceiling'.padStart(9)}\n`);
  process.stdout.write(`${'-'.repeat(w)}  ${'-'.repeat(9)}  ${'-'.repeat(9)}  ${'-'.repeat(12)}  ${'-'.repeat(8)}  ${'-'.repeat(8)}  ${'-'.repeat(10)}  ${'-'.repeat(9)}\n`);
  for (const r of results) {
    const ceiling = r.name.startsWith('pkcs11 provider') ? (r.opsPerSec / ceilingOf(r.name)).toFixed(2)
      : r.name.startsWith('kmip provider') ? (r.opsPerSec / rawKmipOf(r.name)).toFixed(2) : '';
    process.stdout.write(`${r.name.padEnd(w)}  ${Math.round(r.opsPerSec).toLocaleString('en-US').padStart(9)}  ${r.cpuUsPerOp.toFixed(0).padStart(9)}  ${`${r.maxLagMs.toFixed(1)} ms`.padStart(12)}  ${`${r.p99LagMs.toFixed(1)} ms`.padStart(8)}  ${`${r.netP99LagMs.toFixed(1)} ms`.padStart(8)}  ${(r.opsPerSec / node).toFixed(3).padStart(10)}  ${ceiling.padStart(9)}\n`);
  }
  process.stdout.write('\nCeiling rows run the provider\'s exact PKCS#11 call sequence synchronously in one tight loop on one session, nothing around it; they block the event loop (see their lag). Each is the mean of a run before and a run after the provider rows.\n');
  process.stdout.write('For kmip provider rows "÷ ceiling" is the ratio to the raw KMIP row of the same operation: the same requests, one at a time over one TLS connection, no pool, queue or policy (mean of a run before and after). Single provider calls run 16 in flight and share requests (a free connection takes queued calls up to batch_items).\n');
  process.stdout.write('Lag is the event loop\'s delay past a 10 ms timer (monitorEventLoopDelay); "p99 net" leaves out the time the main thread waited for a CPU (schedstat). CPU counts every thread of the process, the PKCS#11 library thread included.\n');
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
