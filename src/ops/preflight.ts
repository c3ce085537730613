import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Env } from '../config/env';

/** A start-up problem an operator fixes in the configuration; main prints its message as one line. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/**
 * Checks, before anything is created, the paths a start would write to. KMS_DATA_DIR is created
 * when missing (the documented default); any other directory must already exist, so a typo in
 * KMS_MASTER_KEY_FILE is refused instead of growing a directory tree next to the intended one.
 */
export function checkPaths(env: Env): void {
  if (env.masterKey || env.masterKeySeal || existsSync(env.masterKeyFile)) return;
  const dir = dirname(resolve(env.masterKeyFile));
  if (dir === resolve(env.dataDir)) return;
  if (!existsSync(dir)) {
    throw new StartupError(`KMS_MASTER_KEY_FILE ${env.masterKeyFile}: directory ${dir} does not exist; create it, or set KMS_MASTER_KEY`);
  }
  if (!statSync(dir).isDirectory()) throw new StartupError(`KMS_MASTER_KEY_FILE ${env.masterKeyFile}: ${dir} is not a directory`);
}
