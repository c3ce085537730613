/**
 * The API path against a bare Express handler, each served by its own process, 16 connections,
 * alternating rounds. For each command: requests/s, the server process's CPU µs per request
 * (utime+stime from /proc, steadier than wall time on a shared machine) and the ratio to bare Express.
 *
 *   npx tsx bench/api.ts          (or npm run bench:api)
 *   BENCH_ROUNDS=3 BENCH_SECONDS=4 BENCH_CONNECTIONS=16   (defaults); DATABASE_URL=mysql://… for MariaDB
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { signedQuery } from '../spec/support/client';
import { ADMIN } from './world';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const TICKS = 100; // USER_HZ

interface Served { proc: ChildProcess; url: string; info: Record<string, string> }

async function serve(mode: 'kms' | 'bare'): Promise<Served> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/api/server-process.ts', mode], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
  const line: string = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`${mode} server exited with ${code}`)));
  });
  const info = JSON.parse(line) as Record<string, string>;
  return { proc, url: info.url!, info };
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** `CONNECTIONS` keep-alive loops sending one path for `SECONDS`; requests done and the server's CPU time. */
async function load(s: Served, path: string): Promise<{ rps: number; cpuUs: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const url = new URL(path, s.url);
  let done = 0;
  let failed = 0;
  const get = () => new Promise<void>((resolve) => {
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => { if (res.statusCode === 200) done++; else failed++; resolve(); });
    }).on('error', () => { failed++; resolve(); });
  });
  // Warm up, then measure.
  await Promise.all(Array.from({ length: CONNECTIONS }, () => get()));
  done = 0;
  const cpu0 = cpuSeconds(s.proc.pid!);
  const start = process.hrtime.bigint();
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => { while (Date.now() < end) await get(); }));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = cpuSeconds(s.proc.pid!) - cpu0;
  agent.destroy();
  if (failed) throw new Error(`${failed} requests failed on ${path.slice(0, 60)}`);
  return { rps: done / seconds, cpuUs: (cpu * 1e6) / Math.max(done, 1) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const [kms, bare] = [await serve('kms'), await serve('bare')];
  const q = (params: Record<string, string>) => `/client/api?${signedQuery(params, ADMIN.apiKey, ADMIN.secretKey)}`;
  const rows: Array<[string, string]> = [
    ['signed listKMSKeys (10 keys)', q({ command: 'listKMSKeys', listall: 'true' })],
    ['signed listZones', q({ command: 'listZones' })],
    ['signed getVolumeEncryptionKey', q({ command: 'getVolumeEncryptionKey', id: kms.info.volumeId! })],
  ];
  const results = new Map<string, { rps: number[]; cpu: number[] }>();
  const add = (k: string, r: { rps: number; cpuUs: number }) => {
    const e = results.get(k) ?? { rps: [], cpu: [] };
    e.rps.push(r.rps); e.cpu.push(r.cpuUs); results.set(k, e);
  };
  for (let round = 0; round < ROUNDS; round++) {
    add('bare Express', await load(bare, rows[0]![1]));
    for (const [name, path] of rows) add(name, await load(kms, path));
  }
  // createVolume with its job finished: one at a time (each is a write and a job).
  add('signed createVolume (job finished)', await createVolumes(kms));
  const base = median(results.get('bare Express')!.rps);
  console.log(`bench:api  ${CONNECTIONS} connections, ${ROUNDS} rounds × ${SECONDS} s, ${process.env.DATABASE_URL ? 'MariaDB' : 'SQLite'}; medians`);
  console.log('command'.padEnd(38), 'req/s'.padStart(8), 'server CPU µs/req'.padStart(18), '÷ bare Express'.padStart(15));
  for (const [name, r] of results) {
    console.log(name.padEnd(38), median(r.rps).toFixed(0).padStart(8), median(r.cpu).toFixed(0).padStart(18), (median(r.rps) / base).toFixed(2).padStart(15));
  }
  kms.proc.kill('SIGKILL');
  bare.proc.kill('SIGKILL');
}

/** createVolume then queryAsyncJobResult until done, 16 in flight, for SECONDS. */
async function createVolumes(s: Served): Promise<{ rps: number; cpuUs: number }> {
  const { ApiClient } = await import('../spec/support/client');
  const client = new ApiClient(s.url);
  let done = 0;
  const cpu0 = cpuSeconds(s.proc.pid!);
  const start = Date.now();
  const end = start + SECONDS * 1000;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (Date.now() < end) {
      const r = await client.signed(ADMIN, { command: 'createVolume', name: 'b', zoneid: s.info.zoneId!, kmskeyid: s.info.keyId! });
      for (;;) {
        const j = await client.signed(ADMIN, { command: 'queryAsyncJobResult', jobid: r.body.jobid });
        if (j.body.jobstatus !== 0) break;
        await new Promise((res) => setTimeout(res, 5));
      }
      done++;
    }
  }));
  return { rps: (done * 1000) / (Date.now() - start), cpuUs: ((cpuSeconds(s.proc.pid!) - cpu0) * 1e6) / Math.max(done, 1) };
}

void main().catch((e) => { console.error(e); process.exit(1); });
