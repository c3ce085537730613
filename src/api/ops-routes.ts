import express, { type NextFunction, type Request, type Response } from 'express';
import type { Server } from 'node:http';
import type { App } from '../app';

/**
 * /healthz (liveness: the process answers), /readyz (readiness as JSON, 503 naming what is down
 * or "shutting down") and /metrics (Prometheus text). No authentication; nothing secret in them.
 */
export function opsRouter(app: App): express.Router {
  const r = express.Router();
  const noStore = (res: Response) => res.setHeader('Cache-Control', 'no-store');
  r.get('/healthz', (_req, res) => {
    noStore(res);
    res.json({ status: 'ok' });
  });
  r.get('/readyz', (_req, res, next) => {
    app.health.readiness().then((ready) => {
      noStore(res);
      res.status(ready.status === 'ready' ? 200 : 503).json(ready);
    }, next);
  });
  r.get('/metrics', (_req, res, next) => {
    app.metrics.scrape().then(({ contentType, body }) => {
      noStore(res);
      res.setHeader('Content-Type', contentType);
      res.end(body);
    }, next);
  });
  return r;
}

/** The ops endpoints alone, for KMS_OPS_PORT and for worker processes. */
export function createOpsServer(app: App): express.Express {
  const server = express();
  server.disable('x-powered-by');
  server.use(opsRouter(app));
  server.use((_req, res) => { res.status(404).json({ status: 'not found' }); });
  server.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    app.logger.error('ops endpoint failed', { error: err instanceof Error ? err.message : String(err) });
    if (!res.headersSent) res.status(500).json({ status: 'error' });
  });
  return server;
}

/**
 * Counts the requests a server has received and not yet answered, and during a drain asks every
 * client to close its connection after its answer. `drain()` stops accepting connections and
 * resolves when every request received was answered, or when the timeout passes.
 */
export class RequestTracker {
  #inFlight = 0;
  #draining = false;
  readonly #open = new Set<Response>();
  readonly #idle: Array<() => void> = [];

  constructor(private readonly onChange?: (delta: 1 | -1) => void) {}

  get inFlight(): number {
    return this.#inFlight;
  }

  readonly middleware = (_req: Request, res: Response, next: NextFunction): void => {
    this.#inFlight++;
    this.onChange?.(1);
    if (this.#draining) res.setHeader('Connection', 'close');
    this.#open.add(res);
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      this.#open.delete(res);
      this.#inFlight--;
      this.onChange?.(-1);
      if (this.#inFlight === 0) for (const f of this.#idle.splice(0)) f();
    };
    res.once('finish', end);
    res.once('close', end);
    next();
  };

  /** Returns how many requests were still unanswered when the timeout passed (0 after a clean drain). */
  async drain(server: Server, timeoutMs: number): Promise<number> {
    this.#draining = true;
    for (const res of this.#open) if (!res.headersSent) res.setHeader('Connection', 'close');
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    if (this.#inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#idle.push(resolve)),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); }),
      ]);
      clearTimeout(timer);
    }
    const unanswered = this.#inFlight;
    server.closeAllConnections();
    await closed;
    return unanswered;
  }
}
