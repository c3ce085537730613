import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createApp, type App } from '../app';
import { readEnv, type Env } from '../config/env';
import { createServer } from '../api/server';
import { registry } from '../commands/registry';
import { createLogger, type Logger } from '../core/logger';
import { createOpsServer } from '../api/ops-routes';
import { RequestTracker } from '../api/drain';
import { StartupError } from '../ops/preflight';
import { adminHasDefaultPassword, DEFAULT_PASSWORD_WARNING } from '../ops/default-password';
import { describeStartupError } from './startup-errors';

/** Options of one server process (main.ts, worker-main.ts). */
export interface NodeProcessOptions {
  /** Overrides KMS_ROLE (worker-main runs workers only). */
  role?: Env['role'];
  logger?: Logger;
  /** Registers extra job handlers or schedules before the workers start (tests use it). */
  setup?: (app: App) => void | Promise<void>;
  /** Called once with the new app, before anything listens (main prints generated API keys). */
  onCreated?: (started: Awaited<ReturnType<typeof createApp>>, logger: Logger) => void;
}

/**
 * A listener bound before the app is built, so a port in use is found before anything else
 * happens. Until `serve()` it answers 503 `{"status":"starting"}`.
 */
interface EarlyListener {
  server: Server;
  serve(handler: RequestListener): void;
}

/** Binds, or fails with one sentence naming the port and its variable. */
function bind(port: number, host: string, variable: string): Promise<EarlyListener> {
  let handler: RequestListener = (_req, res) => {
    res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '2' }).end('{"status":"starting"}');
  };
  const server = createHttpServer((req, res) => handler(req, res));
  return new Promise((resolve, reject) => {
    server.once('listening', () => resolve({ server, serve: (h) => { handler = h; } }));
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(new StartupError(`port ${port} on ${host} is already in use; stop the process that holds it or set ${variable}`));
      else if (err.code === 'EACCES') reject(new StartupError(`not allowed to listen on port ${port} on ${host}; choose another ${variable}`));
      else if (err.code === 'EADDRNOTAVAIL') reject(new StartupError(`address ${host} is not on this host; set HOST`));
      else reject(err);
    });
    server.listen(port, host);
  });
}

const portOf = (s: Server): number => (s.address() as { port: number }).port;

/**
 * Starts one process: the app (migrations and bootstrap, waiting for other nodes' locks), then the
 * API and ops listeners, and only then the job workers, so a start that cannot listen never runs
 * a job. Any start-up failure is one log line and exit code 1. SIGTERM or SIGINT drains: /readyz
 * says 503 at once, the API port keeps accepting for KMS_SHUTDOWN_DELAY_SEC (load balancers stop
 * sending meanwhile) and then stops listening, every request whose bytes reached the server is
 * answered and every connection closed gracefully (src/api/drain.ts; within
 * KMS_SHUTDOWN_TIMEOUT_SEC), workers hand their jobs back, Redis, the database and the HSM sessions
 * are closed, and the process exits 0.
 */
export async function runNodeProcess(opts: NodeProcessOptions = {}): Promise<void> {
  let env: Env | undefined;
  let logger = opts.logger;
  let app: App | undefined;
  const servers: Server[] = [];
  try {
    env = readEnv();
    if (opts.role) env = { ...env, role: opts.role };
    logger ??= createLogger({ level: env.logLevel });
    const apiListener = env.role !== 'worker' ? await bind(env.port, env.host, 'PORT') : undefined;
    if (apiListener) servers.push(apiListener.server);
    const opsListener = env.opsPort !== undefined ? await bind(env.opsPort, env.host, 'KMS_OPS_PORT') : undefined;
    if (opsListener) servers.push(opsListener.server);

    const started = await createApp(env, { logger });
    app = started.app;
    await opts.setup?.(app);
    const tracker = new RequestTracker((d) => app!.metrics.apiInFlight.inc(d));
    if (apiListener) tracker.attach(apiListener.server);
    apiListener?.serve(createServer(app, registry, { opsRoutes: !opsListener, tracker }));
    opsListener?.serve(createOpsServer(app));
    const api = apiListener?.server;
    const ops = opsListener?.server;
    opts.onCreated?.(started, logger);
    if (env.role !== 'worker' && (await adminHasDefaultPassword(app.repos))) {
      logger.warn(DEFAULT_PASSWORD_WARNING);
      process.stderr.write(`\n!!! ${DEFAULT_PASSWORD_WARNING} !!!\n\n`);
    }
    await app.jobs.start();
    if (api) {
      logger.info('CloudStack KMS API listening', {
        url: `http://${env.host}:${portOf(api)}/client/api`, database: env.databaseUrl ? 'mysql' : 'sqlite', queue: app.jobs.queueKind, workers: env.role !== 'api',
      });
    }
    if (ops) logger.info('health and metrics listening', { url: `http://${env.host}:${portOf(ops)}/readyz` });
    if (env.role === 'worker') logger.info('job worker started', { queue: app.jobs.queueKind, owner: app.jobs.owner });
    installShutdown({ app, logger, api, tracker, others: ops ? [ops] : [], timeoutMs: env.shutdownTimeoutSec * 1000, delayMs: env.shutdownDelaySec * 1000 });
  } catch (err) {
    const line = describeStartupError(err, env);
    (logger ?? createLogger({ level: 'info' })).error(`cannot start: ${line}`);
    for (const s of servers) s.close();
    await app?.close().catch(() => undefined);
    process.exit(1);
  }
}

function installShutdown(p: { app: App; logger: Logger; api?: Server; tracker: RequestTracker; others: Server[]; timeoutMs: number; delayMs: number }): void {
  let stopping = false;
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) {
      p.logger.info('already shutting down', { signal });
      return;
    }
    stopping = true;
    // A stuck close must not keep a stopped node around forever.
    setTimeout(() => {
      p.logger.error('shutdown did not finish in time; exiting');
      process.exit(1);
    }, p.delayMs + p.timeoutMs * 2 + 10_000).unref();
    p.app.health.startDraining();
    p.tracker.startDraining();
    p.logger.info('shutting down', { signal, inFlight: p.tracker.inFlight, delaySec: p.api ? p.delayMs / 1000 : 0, timeoutSec: p.timeoutMs / 1000 });
    try {
      if (p.api) {
        // /readyz says 503 from now; the port keeps accepting meanwhile, so a load balancer that
        // still sends before its next health check reaches a node that answers.
        if (p.delayMs > 0) await new Promise((r) => setTimeout(r, p.delayMs));
        p.logger.info('no longer accepting connections', { inFlight: p.tracker.inFlight });
        const unanswered = await p.tracker.drain(p.api, p.timeoutMs);
        if (unanswered) p.logger.warn('KMS_SHUTDOWN_TIMEOUT_SEC passed; closed connections with requests unanswered', { unanswered });
        else p.logger.info('every request received was answered');
      }
      await p.app.close();
      await Promise.all(p.others.map((s) => new Promise((r) => { s.close(r); s.closeAllConnections(); })));
      p.logger.info('stopped');
      process.exit(0);
    } catch (err) {
      p.logger.error('shutdown failed', { error: err instanceof Error ? err.message : String(err) });
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => { void stop('SIGTERM'); });
  process.on('SIGINT', () => { void stop('SIGINT'); });
}
