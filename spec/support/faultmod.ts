import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setNativeEnv, SOFTHSM_LIBRARY } from './softhsm';

const SOURCE = join(__dirname, 'faultmod', 'faultmod.c');

/**
 * Builds the fault-injecting PKCS#11 module (spec/support/faultmod/faultmod.c) with the machine's C
 * compiler, once per source version, and returns the .so path. `.ci/run` installs build-essential.
 */
export function buildFaultModule(): string {
  const source = readFileSync(SOURCE);
  const digest = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const out = join(tmpdir(), `kms-faultmod-${digest}.so`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  execFileSync(process.env.CC ?? 'cc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', tmp, SOURCE, '-ldl', '-lpthread'], { stdio: 'pipe' });
  renameSync(tmp, out);
  return out;
}

/** One fault rule; see the header of faultmod.c. */
export type FaultRule =
  | { fail: string; code: string; times?: number }
  | { delay: string; ms: number }
  | { hang: string }
  | { restart: true };

/** Drives the fault module through its control file while the server runs. */
export interface FaultControl {
  /** The library path to put in the HSM profile's `library` detail. */
  library: string;
  /** Replaces the active rules (an empty list clears every fault and releases hung calls). */
  set(rules: FaultRule[]): void;
  clear(): void;
  /** Lines the module logged: "<C_Function> 0x<rv>" per injected fault, "init", "finalize", "restart". */
  log(): string[];
  /**
   * The most calls that slept in a `delay` rule at the same time since the rules last changed (as
   * the module saw on its first call after the change): whether calls reached the HSM in parallel.
   */
  peakDelayed(): number;
  cleanup(): Promise<void>;
}

let restarts = 0;

/**
 * Builds the module and points it (KMS_FAULTMOD_CONTROL, in the real process environment, where the
 * C code reads it) at a fresh control file. Call once per test file, before any profile loads it.
 */
export async function createFaultControl(): Promise<FaultControl> {
  const library = buildFaultModule();
  const control = join(tmpdir(), `kms-faultmod-${process.pid}-${Date.now()}.ctl`);
  writeFileSync(control, '');
  await setNativeEnv('KMS_FAULTMOD_CONTROL', control);
  await setNativeEnv('KMS_FAULTMOD_TARGET', SOFTHSM_LIBRARY);
  const write = (text: string): void => {
    const tmp = `${control}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, control); // a new inode: the module notices the change on its next call
  };
  const line = (r: FaultRule): string => {
    if ('fail' in r) return `fail ${r.fail} ${r.code}${r.times === undefined ? '' : ` ${r.times}`}`;
    if ('delay' in r) return `delay ${r.delay} ${r.ms}`;
    if ('hang' in r) return `hang ${r.hang}`;
    return `restart ${process.pid}-${++restarts}`;
  };
  return {
    library,
    set: (rules) => write(rules.map((r) => `${line(r)}\n`).join('')),
    clear: () => write(''),
    log: () => (existsSync(`${control}.log`) ? readFileSync(`${control}.log`, 'utf8').split('\n').filter(Boolean) : []),
    peakDelayed: () => (existsSync(`${control}.peak`) ? Number(readFileSync(`${control}.peak`, 'utf8').trim()) : 0),
    async cleanup() {
      write('');
      await setNativeEnv('KMS_FAULTMOD_CONTROL', undefined);
      for (const f of [control, `${control}.log`, `${control}.peak`]) rmSync(f, { force: true });
    },
  };
}
