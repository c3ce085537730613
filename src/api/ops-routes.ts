import express, { type NextFunction, type Request, type Response } from 'express';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { App } from '../app';
import { ScrapeGate } from '../ops/scrape-gate';

/** Where the router serves /metrics: to anyone (the ops port, paced) or only with the bearer token (the API port). */
export type MetricsAccess = 'anonymous' | 'token';

/** Whether the request carries `Authorization: Bearer <token>` (compared in constant time). */
function carriesToken(req: Request, token: string | undefined): boolean {
  if (!token) return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}

/**
 * /healthz (liveness: the process answers), /readyz (readiness as JSON, 503 naming what is down
 * or "shutting down"): anonymous, cheap, nothing secret. /metrics (Prometheus text): with
 * `Authorization: Bearer <KMS_METRICS_TOKEN>` the detailed view, at once; without it, where
 * `metrics` is 'anonymous', the anonymous view, paced by a ScrapeGate (a flood waits its turn);
 * where it is 'token', 404, as if there were no such path.
 */
export function opsRouter(app: App, metrics: MetricsAccess = 'anonymous'): express.Router {
  const r = express.Router();
  const gate = new ScrapeGate();
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
  r.get('/metrics', (req, res, next) => {
    const detailed = carriesToken(req, app.env.metricsToken);
    if (!detailed && metrics === 'token') {
      next();
      return;
    }
    (detailed ? Promise.resolve(true) : gate.admit(() => res.destroyed || req.socket.destroyed)).then(async (admitted) => {
      if (res.destroyed) return;
      noStore(res);
      if (!admitted) {
        res.status(429).setHeader('Retry-After', '5').setHeader('Connection', 'close').type('text/plain').send('too many scrapes waiting; retry later\n');
        return;
      }
      const { contentType, body } = await app.metrics.scrape(detailed ? 'detailed' : 'anonymous');
      res.setHeader('Content-Type', contentType);
      res.end(body);
    }).catch(next);
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
