import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SHARE_ENV, Worker } from 'node:worker_threads';

/** Where Debian's libsofthsm2 lives; SOFTHSM2_LIB overrides it. */
export const SOFTHSM_LIBRARY = process.env.SOFTHSM2_LIB ?? '/usr/lib/softhsm/libsofthsm2.so';

/** A token in a private SoftHSM2 directory. `cleanup` restores SOFTHSM2_CONF and deletes the files. */
export interface SoftHsmToken {
  library: string;
  tokenLabel: string;
  pin: string;
  soPin: string;
  confPath: string;
  /** Profile details that reach this token. */
  details(extra?: Record<string, string>): Record<string, string>;
  cleanup(): Promise<void>;
}

/**
 * Sets an environment variable in the real process environment, where native libraries read it
 * with getenv(). Jest gives each test file a copy of process.env whose writes never reach it; a
 * worker thread started with SHARE_ENV writes through to the process's real environment.
 */
export async function setNativeEnv(name: string, value: string | undefined): Promise<void> {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  const worker = new Worker(
    'const { workerData: d } = require("node:worker_threads"); if (d.value === null) delete process.env[d.name]; else process.env[d.name] = d.value;',
    { eval: true, env: SHARE_ENV, workerData: { name, value: value ?? null } },
  );
  await new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`setNativeEnv worker exited with ${code}`))));
  });
}

/**
 * Creates a temp SOFTHSM2_CONF and token directory, points process.env.SOFTHSM2_CONF at it and
 * initialises `tokens` tokens with random labels and PINs (softhsm2-util --init-token --free).
 * SoftHSM reads SOFTHSM2_CONF (from the real environment, see setNativeEnv) at C_Initialize, so call
 * this once per test file in beforeAll, before any provider loads the library, and close every provider (which C_Finalize's) before `cleanup()` in afterAll.
 * Returns one handle per token; calling cleanup() on any of them removes the whole directory.
 */
export async function createSoftHsmTokens(tokens = 1): Promise<SoftHsmToken[]> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  const confPath = join(dir, 'softhsm2.conf');
  mkdirSync(tokenDir);
  writeFileSync(confPath, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const previous = process.env.SOFTHSM2_CONF;
  await setNativeEnv('SOFTHSM2_CONF', confPath);
  const cleanup = async (): Promise<void> => {
    if (process.env.SOFTHSM2_CONF === confPath) await setNativeEnv('SOFTHSM2_CONF', previous);
    rmSync(dir, { recursive: true, force: true });
  };
  const out: SoftHsmToken[] = [];
  for (let i = 0; i < tokens; i++) {
    const tokenLabel = `kms-${randomBytes(6).toString('hex')}`;
    const pin = randomBytes(6).toString('hex');
    const soPin = randomBytes(6).toString('hex');
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--so-pin', soPin, '--pin', pin], {
      env: { ...process.env, SOFTHSM2_CONF: confPath },
      stdio: 'ignore',
    });
    out.push({
      library: SOFTHSM_LIBRARY,
      tokenLabel,
      pin,
      soPin,
      confPath,
      details: (extra = {}) => ({ library: SOFTHSM_LIBRARY, token_label: tokenLabel, pin, ...extra }),
      cleanup,
    });
  }
  return out;
}

/** One token; see createSoftHsmTokens. */
export async function createSoftHsmToken(): Promise<SoftHsmToken> {
  return (await createSoftHsmTokens(1))[0];
}
