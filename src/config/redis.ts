/**
 * Where the job queue's Redis is: one address (REDIS_URL), or a primary found through Redis
 * Sentinel (REDIS_SENTINELS + REDIS_SENTINEL_NAME), which ioredis asks for the current primary at
 * every (re)connection, so clients follow a failover without a restart.
 */
export type RedisTarget =
  | { kind: 'url'; url: string }
  | { kind: 'sentinel'; sentinels: Array<{ host: string; port: number }>; name: string; password?: string; sentinelPassword?: string };

/** The Redis of the environment, or undefined (in-process queue). Refuses a half or double configuration by name. */
export function redisTargetFromEnv(e: NodeJS.ProcessEnv): RedisTarget | undefined {
  const list = e.REDIS_SENTINELS?.trim();
  if (!list) {
    if (e.REDIS_SENTINEL_NAME) throw new Error('REDIS_SENTINEL_NAME needs REDIS_SENTINELS (host:port,host:port,...)');
    return e.REDIS_URL ? { kind: 'url', url: e.REDIS_URL } : undefined;
  }
  if (e.REDIS_URL) throw new Error('Set REDIS_URL or REDIS_SENTINELS, not both');
  if (!e.REDIS_SENTINEL_NAME) throw new Error('REDIS_SENTINELS needs REDIS_SENTINEL_NAME (the name in "sentinel monitor <name> ...")');
  const sentinels = list.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) throw new Error(`REDIS_SENTINELS must be host:port separated by commas (got ${s})`);
    return { host: m[1]!, port };
  });
  return {
    kind: 'sentinel', sentinels, name: e.REDIS_SENTINEL_NAME,
    password: e.REDIS_PASSWORD || undefined, sentinelPassword: e.REDIS_SENTINEL_PASSWORD || undefined,
  };
}

/**
 * ioredis (and BullMQ) connection options for a target, merged with `extra`. A URL stays a `url`
 * (BullMQ and the callers parse it); a sentinel target gets `failoverDetector`, so a client also
 * reconnects when the sentinels announce a new primary, not only when its connection drops.
 */
export function redisConnectionOptions<T extends object>(t: RedisTarget, extra: T): T & Record<string, unknown> {
  if (t.kind === 'url') return { url: t.url, ...extra };
  return {
    sentinels: t.sentinels, name: t.name, password: t.password, sentinelPassword: t.sentinelPassword,
    failoverDetector: true, sentinelRetryStrategy: (n: number) => Math.min(n * 200, 2000), ...extra,
  };
}

/** A one-line description for logs (never a password). */
export function describeRedis(t: RedisTarget): string {
  if (t.kind === 'sentinel') return `sentinel ${t.name} via ${t.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  try {
    const u = new URL(t.url);
    return `${u.hostname}:${u.port || 6379}`;
  } catch {
    return 'redis';
  }
}
