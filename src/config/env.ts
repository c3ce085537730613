import { join } from 'node:path';
import { workerOptionsFromEnv, type WorkerOptions } from './worker-options';
import { parseLogLevel, type LogLevel } from '../core/logger';
import { redisTargetFromEnv, type RedisTarget } from './redis';

/** Where the master key's KEK lives (KMS_MASTER_KEY_SEAL_*; README "The master key"). */
export interface SealConfig {
  library: string;
  tokenLabel: string;
  keyLabel: string;
  pinFile: string;
}

const SEAL_VARS = ['KMS_MASTER_KEY_SEAL_LIBRARY', 'KMS_MASTER_KEY_SEAL_TOKEN_LABEL', 'KMS_MASTER_KEY_SEAL_KEY_LABEL', 'KMS_MASTER_KEY_SEAL_PIN_FILE'] as const;

/** The seal configuration, or undefined when KMS_MASTER_KEY_SEAL_LIBRARY is unset; a partial one is refused by name. */
export function sealConfigFromEnv(e: NodeJS.ProcessEnv): SealConfig | undefined {
  if (!e.KMS_MASTER_KEY_SEAL_LIBRARY) return undefined;
  const missing = SEAL_VARS.filter((v) => !e[v]);
  if (missing.length) throw new Error(`A sealed master key needs ${missing.join(', ')} (set with KMS_MASTER_KEY_SEAL_LIBRARY)`);
  return {
    library: e.KMS_MASTER_KEY_SEAL_LIBRARY,
    tokenLabel: e.KMS_MASTER_KEY_SEAL_TOKEN_LABEL!,
    keyLabel: e.KMS_MASTER_KEY_SEAL_KEY_LABEL!,
    pinFile: e.KMS_MASTER_KEY_SEAL_PIN_FILE!,
  };
}

/** A number of seconds >= 0 (decimals allowed), or the default. */
function seconds(e: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = e[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || n > max) throw new Error(`${name} must be a number of seconds from 0 to ${max} (got ${raw})`);
  return n;
}

function positive(e: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = e[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number (got ${raw})`);
  return n;
}

/** Environment configuration, read once at start. Every variable is documented in README.md. */
export interface Env {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl?: string;
  redisUrl?: string;
  /** The job queue's Redis: REDIS_URL, or REDIS_SENTINELS + REDIS_SENTINEL_NAME (and passwords). */
  redis?: RedisTarget;
  masterKey?: string;
  masterKeyFile: string;
  /** A new master key to introduce for the next rotation (KMS_MASTER_KEY_NEXT). */
  masterKeyNext?: string;
  /** The PKCS#11 token that seals the master key (KMS_MASTER_KEY_SEAL_*); unset when not sealed. */
  masterKeySeal?: SealConfig;
  /** How often this node announces the master-key versions it holds (KMS_NODE_HEARTBEAT_MS). */
  nodeHeartbeatMs: number;
  /** A node not heard from for this long is not live (KMS_NODE_STALE_SEC), in ms. */
  nodeStaleMs: number;
  /** Values re-encrypted per transaction by a master-key rotation (KMS_MASTER_KEY_ROTATION_BATCH). */
  masterKeyRotationBatch: number;
  adminPassword: string;
  adminApiKey?: string;
  adminSecretKey?: string;
  /** 'all' (API + workers), 'api' (API only), 'worker' (workers only) */
  role: 'all' | 'api' | 'worker';
  sessionTimeoutSec: number;
  queuePrefix: string;
  /** Job worker tuning (KMS_JOB_*), validated by resolveWorkerOptions. */
  jobOptions: Partial<WorkerOptions>;
  /** KMS_LOG_LEVEL; an unknown level is refused at start. */
  logLevel: LogLevel;
  /** KMS_OPS_PORT: serve /healthz, /readyz and /metrics on this port instead of the API port. */
  opsPort?: number;
  /** KMS_METRICS_TOKEN: a scrape with `Authorization: Bearer <token>` gets the detailed /metrics view (also on the API port). */
  metricsToken?: string;
  /** KMS_METRICS_REFRESH_SEC: how often the database gauges of /metrics are read, in the background. */
  metricsRefreshSec: number;
  /** KMS_SHUTDOWN_DELAY_SEC: after a SIGTERM, how long the API port keeps accepting (with /readyz 503) before it stops listening. */
  shutdownDelaySec: number;
  /** KMS_TRUSTED_PROXIES: peers whose X-Forwarded-For names the client address (login throttling). */
  trustedProxies: string[];
  /** KMS_SHUTDOWN_TIMEOUT_SEC: how long a SIGTERM waits for requests already received. */
  shutdownTimeoutSec: number;
  /** KMS_STARTUP_LOCK_WAIT_SEC: how long a start waits for another process's migration or bootstrap. */
  startupLockWaitSec: number;
  /** KMS_READY_TIMEOUT_MS: the longest one /readyz check (database, Redis, each HSM profile) may take. */
  readyTimeoutMs: number;
  /** KMS_PKCS11_THREADS: threads per PKCS#11 library for profiles without a `threads` detail. */
  pkcs11Threads: number;
}

/** A whole number within [min, max] from the environment, or the default; anything else is refused. */
function intVar(e: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number): number {
  const raw = e[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max} (got ${raw})`);
  return n;
}

export function readEnv(e: NodeJS.ProcessEnv = process.env): Env {
  const dataDir = e.KMS_DATA_DIR || './data';
  const role = (e.KMS_ROLE || 'all') as Env['role'];
  if (!['all', 'api', 'worker'].includes(role)) throw new Error(`KMS_ROLE must be all, api or worker (got ${role})`);
  const port = Number(e.PORT || 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a TCP port (got ${e.PORT})`);
  if (Boolean(e.KMS_ADMIN_API_KEY) !== Boolean(e.KMS_ADMIN_SECRET_KEY)) {
    throw new Error('Set both KMS_ADMIN_API_KEY and KMS_ADMIN_SECRET_KEY, or neither');
  }
  const logLevel = parseLogLevel(e.KMS_LOG_LEVEL);
  if (e.KMS_METRICS_TOKEN && e.KMS_METRICS_TOKEN.length < 16) throw new Error('KMS_METRICS_TOKEN must be at least 16 characters');
  return {
    port,
    host: e.HOST || '127.0.0.1',
    dataDir,
    databaseUrl: e.DATABASE_URL || undefined,
    redisUrl: e.REDIS_URL || undefined,
    redis: redisTargetFromEnv(e),
    masterKey: e.KMS_MASTER_KEY || undefined,
    masterKeyFile: e.KMS_MASTER_KEY_FILE || join(dataDir, 'master.key'),
    masterKeyNext: e.KMS_MASTER_KEY_NEXT || undefined,
    masterKeySeal: sealConfigFromEnv(e),
    nodeHeartbeatMs: positive(e, 'KMS_NODE_HEARTBEAT_MS', 5000),
    nodeStaleMs: positive(e, 'KMS_NODE_STALE_SEC', 30) * 1000,
    masterKeyRotationBatch: Math.floor(positive(e, 'KMS_MASTER_KEY_ROTATION_BATCH', 500)),
    adminPassword: e.KMS_ADMIN_PASSWORD || 'password',
    adminApiKey: e.KMS_ADMIN_API_KEY || undefined,
    adminSecretKey: e.KMS_ADMIN_SECRET_KEY || undefined,
    role,
    sessionTimeoutSec: Number(e.KMS_SESSION_TIMEOUT_SEC || 1800),
    queuePrefix: e.KMS_QUEUE_PREFIX || 'kms',
    jobOptions: workerOptionsFromEnv(e),
    logLevel,
    opsPort: e.KMS_OPS_PORT ? intVar(e, 'KMS_OPS_PORT', 0, 0, 65535) : undefined,
    metricsToken: e.KMS_METRICS_TOKEN || undefined,
    metricsRefreshSec: positive(e, 'KMS_METRICS_REFRESH_SEC', 15),
    shutdownDelaySec: seconds(e, 'KMS_SHUTDOWN_DELAY_SEC', 2, 600),
    trustedProxies: (e.KMS_TRUSTED_PROXIES ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    shutdownTimeoutSec: intVar(e, 'KMS_SHUTDOWN_TIMEOUT_SEC', 30, 1, 3600),
    startupLockWaitSec: intVar(e, 'KMS_STARTUP_LOCK_WAIT_SEC', 120, 1, 3600),
    readyTimeoutMs: intVar(e, 'KMS_READY_TIMEOUT_MS', 2000, 100, 60000),
    pkcs11Threads: intVar(e, 'KMS_PKCS11_THREADS', 1, 1, 16), // 16: as a profile's `threads` detail
  };
}
