/**
 * What 64 anonymous clients looping on the ops endpoints cost the API. One server process (bench
 * world: SQLite or DATABASE_URL, 10 KMS keys), its API port under signed `listKMSKeys` load (16
 * keep-alive connections), in alternating rounds: alone (the baseline), beside 64 connections
 * scraping `/metrics` on the ops port in a loop, and beside 64 looping on `/healthz` (for scale).
 * Prints requests/s, the server's CPU µs per API request, the scrapes answered, and the ratio of
 * API throughput kept against the baseline of the same run (the target for /metrics: >= 0.8).
 *
 *   npx tsx bench/metrics-flood.ts        (or npm run bench:metrics)
 *   BENCH_ROUNDS=3 BENCH_SECONDS=4 BENCH_SCRAPERS=64   (defaults); DATABASE_URL=mysql://… for MariaDB
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { signedQuery } from '../spec/support/client';
import { ADMIN } from './world';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = 16;
const SCRAPERS = Number(process.env.BENCH_SCRAPERS ?? 64);
const TICKS = 100; // USER_HZ

interface Served { proc: ChildProcess; url: string; opsUrl: string }

async function serve(): Promise<Served> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/api/server-process.ts', 'kms'], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
  const line: string = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const info = JSON.parse(line) as { url: string; opsUrl: string };
  return { proc, url: info.url, opsUrl: info.opsUrl };
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** `n` keep-alive loops on `url` until `stop()`; counts the 200s. */
function loop(url: URL, n: number): { stop(): Promise<number> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: n });
  let ok = 0;
  let running = true;
  const one = () => new Promise<void>((resolve) => {
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => { if (res.statusCode === 200) ok++; resolve(); });
    }).on('error', () => resolve());
  });
  const loops = Array.from({ length: n }, async () => { while (running) await one(); });
  return {
    async stop() {
      running = false;
      // A paced scrape may wait its turn: the loops are not awaited past a second.
      await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 1000))]);
      agent.destroy();
      return ok;
    },
  };
}

async function measure(s: Served, flood: string | undefined): Promise<{ rps: number; cpuUs: number; floodPerSec: number }> {
  const api = new URL(`/client/api?${signedQuery({ command: 'listKMSKeys', listall: 'true' }, ADMIN.apiKey, ADMIN.secretKey)}`, s.url);
  const scrapers = flood ? loop(new URL(flood), SCRAPERS) : undefined;
  await new Promise((r) => setTimeout(r, 300)); // the flood reaches its pace
  const cpu0 = cpuSeconds(s.proc.pid!);
  const start = process.hrtime.bigint();
  const load = loop(api, CONNECTIONS);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const done = await load.stop();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = cpuSeconds(s.proc.pid!) - cpu0;
  const scraped = (await scrapers?.stop()) ?? 0;
  return { rps: done / seconds, cpuUs: (cpu * 1e6) / Math.max(done, 1), floodPerSec: scraped / (seconds + 0.3) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const s = await serve();
  try {
    const modes: Array<[string, string | undefined]> = [
      ['alone (baseline)', undefined],
      [`+ ${SCRAPERS} anonymous /metrics (ops port)`, `${s.opsUrl}/metrics`],
      [`+ ${SCRAPERS} anonymous /metrics (API port: 404)`, `${s.url}/metrics`],
      [`+ ${SCRAPERS} /healthz (API port)`, `${s.url}/healthz`],
    ];
    const results = new Map<string, Array<{ rps: number; cpuUs: number; floodPerSec: number }>>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, flood] of modes) {
        const r = await measure(s, flood);
        results.set(name, [...(results.get(name) ?? []), r]);
      }
    }
    const base = median(results.get(modes[0]![0])!.map((r) => r.rps));
    console.log(`signed listKMSKeys, ${CONNECTIONS} connections, ${ROUNDS} rounds of ${SECONDS} s (medians), ${process.env.DATABASE_URL ? 'MariaDB' : 'SQLite'}`);
    console.log(`${'load'.padEnd(46)} ${'API req/s'.padStart(10)} ${'CPU µs/req'.padStart(11)} ${'flood ok/s'.padStart(11)} ${'kept'.padStart(6)}`);
    for (const [name] of modes) {
      const rs = results.get(name)!;
      const rps = median(rs.map((r) => r.rps));
      console.log(`${name.padEnd(46)} ${rps.toFixed(0).padStart(10)} ${median(rs.map((r) => r.cpuUs)).toFixed(0).padStart(11)} ${median(rs.map((r) => r.floodPerSec)).toFixed(1).padStart(11)} ${(rps / base).toFixed(2).padStart(6)}`);
    }
  } finally {
    s.proc.kill('SIGTERM');
  }
}

void main().catch((e) => { console.error(e); process.exit(1); });
