import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { createApp, type App } from '../../src/app';
import { readEnv } from '../../src/config/env';
import { createServer } from '../../src/api/server';
import { SessionOrder } from '../../src/api/session-order';
import { ALL_COMMANDS, createRegistry, registry } from '../../src/commands/registry';
import type { CommandSpec } from '../../src/commands/define';
import { silentLogger, type Logger } from '../../src/core/logger';
import type { Clock } from '../../src/core/clock';
import { ApiClient } from './client';
import { createTestDb, type TestDb } from './db';

export const ADMIN_KEYS = {
  apiKey: 'plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg',
  secretKey: 'VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ',
};

/** A real server on a random port over a fresh database, with the admin keys of the signature vectors. */
export interface TestServer {
  app: App;
  client: ApiClient;
  url: string;
  testDb: TestDb;
  masterKey: string;
  /** The server's login-order bookkeeping (its `size` shows what it holds). */
  sessionOrder: SessionOrder;
  close(): Promise<void>;
}

/** Options of the test server: extra commands (e.g. a test-only async command) and a hook before the workers start. */
export interface TestServerOptions {
  commands?: readonly CommandSpec[];
  setup?: (app: App) => void | Promise<void>;
  /** The app's logger (e.g. one that captures lines for a no-secrets-in-logs test); silent by default. */
  logger?: Logger;
  /** The login throttle's clock (spec/authz/login-throttle.spec.ts moves it instead of waiting). */
  throttleClock?: Clock;
  /** Serve this database (e.g. one a backup was restored into) instead of a fresh one; dropped on close. */
  testDb?: TestDb;
}

export async function startTestServer(extraEnv: Record<string, string> = {}, opts: TestServerOptions = {}): Promise<TestServer> {
  const testDb = opts.testDb ?? (await createTestDb());
  const masterKey = randomBytes(32).toString('base64');
  const env = readEnv({
    KMS_DATA_DIR: testDb.dataDir,
    KMS_MASTER_KEY: masterKey,
    KMS_ADMIN_API_KEY: ADMIN_KEYS.apiKey,
    KMS_ADMIN_SECRET_KEY: ADMIN_KEYS.secretKey,
    ...(testDb.databaseUrl ? { DATABASE_URL: testDb.databaseUrl } : {}),
    ...extraEnv,
  });
  await testDb.db.destroy(); // the app opens its own pool on the same database
  const { app } = await createApp(env, { logger: opts.logger ?? silentLogger, throttleClock: opts.throttleClock });
  await opts.setup?.(app);
  await app.jobs.start();
  const served = opts.commands?.length ? createRegistry([...ALL_COMMANDS, ...opts.commands]) : registry;
  const sessionOrder = new SessionOrder();
  const http: Server = await new Promise((resolve) => {
    const s = createServer(app, served, { sessionOrder }).listen(0, '127.0.0.1', () => resolve(s));
    // Tests pause between requests while they seed data in-process (a blocked event loop): a
    // keep-alive socket closed by the server meanwhile would be reused by fetch and reset.
    s.keepAliveTimeout = 120_000;
  });
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    app, client: new ApiClient(url), url, testDb: { ...testDb, db: app.db }, masterKey, sessionOrder,
    async close() {
      await new Promise((r) => http.close(r));
      http.closeAllConnections?.();
      await app.close();
      await testDb.drop().catch(() => undefined);
    },
  };
}
