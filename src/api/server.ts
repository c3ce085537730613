import express, { type Request, type Response } from 'express';
import { randomUUID } from 'node:crypto';
import { servicesOf, type App } from '../app';
import type { Registry } from '../commands/registry';
import type { CommandContext } from '../commands/define';
import type { Caller } from '../identity/caller';
import { authenticate } from './authenticate';
import { parseParams } from './dispatch';
import { SessionOrder } from './session-order';
import { errorBody, responseName, resultBody, toJson, toXml } from './envelope';
import { ApiError, BAD_CREDENTIALS_TEXT, toApiError } from '../core/errors';
import { login, logout } from './login';
import { isKmsError } from '../core/errors';
import { withLogContext } from '../core/logger';
import { recordApiRequest, type ApiRequestRecord } from './access-log';
import { opsRouter } from './ops-routes';
import type { RequestTracker } from './drain';
import { assertNoControlCharacters, mergeParams, parseCookies, type ApiParams } from './request';

/** Stand-in caller for the few commands the UI calls before login; they never read it. */
const ANONYMOUS: Caller = Object.freeze({
  userId: 0, userUuid: '', username: '', accountId: 0, accountUuid: '', accountName: '', accountType: 0,
  domainId: 0, domainUuid: '', domainName: '', domainPath: '/', role: 'User',
});

function send(res: Response, json: boolean, wrapper: string, body: Record<string, unknown>, status = 200, authenticated = false): void {
  res.status(status);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-XSS-Protection', '1;mode=block');
  if (json) {
    res.setHeader('Content-Type', 'application/json; charset=UTF-8');
    res.end(Buffer.from(toJson(wrapper, body), 'utf8'));
  } else {
    res.setHeader('Content-Type', 'text/xml; charset=UTF-8');
    res.end(Buffer.from(toXml(wrapper, body, authenticated), 'utf8'));
  }
}

function sendError(res: Response, json: boolean, wrapper: string, err: ApiError): void {
  // Header values must be Latin-1 without line breaks.
  res.setHeader('X-Description', err.message.replace(/[^\x20-\x7e]/g, ' ').slice(0, 1024));
  send(res, json, err.genericWrapper ? 'errorresponse' : wrapper, errorBody(err), err.errorcode);
}

/**
 * The client's address for login throttling: the TCP peer, or, when the peer is one of
 * KMS_TRUSTED_PROXIES, the address it names: the right-most X-Forwarded-For entry that is not
 * itself a trusted proxy (entries further left are the client's own claims).
 */
export function clientAddress(req: Request, trusted: readonly string[]): string {
  const strip = (a: string) => a.trim().replace(/^::ffff:/, '');
  let address = strip(req.socket.remoteAddress ?? 'unknown');
  if (!trusted.includes(address)) return address;
  const forwarded = String(req.headers['x-forwarded-for'] ?? '').split(',').map(strip).filter(Boolean);
  while (forwarded.length && trusted.includes(address)) address = forwarded.pop()!;
  return address;
}

/** Options of the API server. */
export interface ServerOptions {
  /**
   * Serve /healthz and /readyz here too, and /metrics to a scrape carrying KMS_METRICS_TOKEN (false
   * when KMS_OPS_PORT serves them). @defaultValue true
   */
  opsRoutes?: boolean;
  /** Counts requests in flight, for the drain on SIGTERM. */
  tracker?: RequestTracker;
  /** Orders the answers of a fresh UI login (a test passes its own to look at what it holds). */
  sessionOrder?: SessionOrder;
}

/** The CloudStack API endpoint: `/client/api` and `/client/api/`, GET and form POST. */
export function createServer(app: App, registry: Registry, opts: ServerOptions = {}): express.Express {
  const services = servicesOf(app);
  const server = express();
  server.disable('x-powered-by');
  server.set('etag', false);
  server.set('query parser', false);
  if (opts.tracker) server.use(opts.tracker.middleware);
  if (opts.opsRoutes ?? true) server.use(opsRouter(app, 'token'));
  server.use('/client/api', express.text({ type: () => true, limit: '1mb' }));

  const order = opts.sessionOrder ?? new SessionOrder();
  const handle = async (req: Request, res: Response, rec: ApiRequestRecord): Promise<void> => {
    let answered = (): void => undefined;
    const arrived = Date.now();
    const arrival = order.arrive(parseCookies(req.headers.cookie).get('JSESSIONID'));
    try {
      await handleRequest(req, res, rec, arrived, arrival.key, (sessionId, command) => { answered = order.begin(sessionId, command); });
    } finally {
      answered();
      arrival.end();
    }
  };
  const handleRequest = async (req: Request, res: Response, rec: ApiRequestRecord, arrived: number, cookieKey: string | undefined, begin: (sessionId: string, command: string) => void): Promise<void> => {
    let json = false;
    let wrapper = 'errorresponse';
    let caller: Caller | undefined;
    let sessionId: string | undefined;
    let backendPrefix: string | undefined;
    try {
      const query = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';
      const isForm = (req.headers['content-type'] ?? '').includes('application/x-www-form-urlencoded');
      const body = req.method === 'POST' && isForm && typeof req.body === 'string' ? req.body : '';
      // Known before decoding, so a malformed request is still answered in the format it asked for.
      json = /(^|&)response=json(&|$)/i.test(query) || /(^|&)response=json(&|$)/i.test(body);
      const params: ApiParams = mergeParams(query, body);
      json = (params.lower.get('response') ?? '').toLowerCase() === 'json';
      const command = params.lower.get('command');
      const cookies = parseCookies(req.headers.cookie);

      if (command && /^log(in|out)$/i.test(command)) {
        wrapper = responseName(command);
        if (command.toLowerCase() === 'login' && req.method !== 'POST') {
          rec.errorcode = 405;
          res.status(405).type('text/plain').send('Please use HTTP POST to authenticate using this API');
          return;
        }
        rec.command = command.toLowerCase();
        const outcome = command.toLowerCase() === 'login' ? await login(app, params, cookies.get('JSESSIONID'), clientAddress(req, app.env.trustedProxies)) : await logout(app, cookies);
        res.setHeader('Set-Cookie', outcome.setCookies);
        send(res, json, wrapper, outcome.body);
        return;
      }

      const spec = command ? registry.find(command) : undefined;
      if (spec) wrapper = spec.responseName ?? responseName(spec.name);
      rec.command = spec?.name ?? (command ? 'unknown' : 'none');
      // What the UI calls before login is answered whatever credentials come along: a stale or
      // partial session must neither fail it nor be invalidated by it (CloudStack verifyRequest).
      if (spec?.auth !== 'none') {
        const auth = await authenticate(app, params, cookies);
        if (auth.kind === 'none') throw new ApiError(401, BAD_CREDENTIALS_TEXT);
        caller = auth.caller;
        rec.caller = caller;
        // Only a logged-in session's requests are ordered, keyed on its server-side id.
        if (auth.kind === 'session' && spec) {
          sessionId = auth.sessionId;
          begin(sessionId, spec.name);
        }
      }
      if (!command) throw new ApiError(400, 'no command specified');
      if (!spec) throw new ApiError(432, `Unknown API command: ${command}`, 9999, true);
      if (caller && spec.auth !== 'none' && !spec.roles.includes(caller.role)) {
        throw new ApiError(432, `The API [${spec.name}] does not exist or is not available for the account for user id [${caller.userUuid}]`, 9999, true);
      }
      backendPrefix = spec.backendErrorPrefix;
      assertNoControlCharacters(params);
      const p = parseParams(spec, params);
      const ctx: CommandContext = { ...services, caller: caller ?? ANONYMOUS, command: spec.name, commands: registry.commands };
      if (sessionId) await order.after(sessionId, cookieKey, spec.name, arrived);
      const result = await spec.handler(p, ctx);
      send(res, json, wrapper, resultBody(result), 200, caller !== undefined);
    } catch (err) {
      const apiErr = toApiError(err, { backendPrefix, isRootAdmin: caller?.role === 'Admin' });
      rec.errorcode = apiErr.errorcode;
      if (!(err instanceof ApiError) && !isKmsError(err)) {
        app.logger.error('unhandled error in API request', { error: err instanceof Error ? err.stack : String(err) });
      }
      if (!res.headersSent) sendError(res, json, wrapper, apiErr);
    }
  };

  server.all(['/client/api', '/client/api/'], (req, res) => {
    const rec: ApiRequestRecord = { requestId: randomUUID(), started: process.hrtime.bigint(), errorcode: 0 };
    res.setHeader('X-Request-Id', rec.requestId);
    withLogContext({ requestId: rec.requestId }, () => handle(req, res, rec))
      .catch((err) => {
        app.logger.error('API request failed after responding', { error: err instanceof Error ? err.message : String(err) });
      })
      .finally(() => recordApiRequest(app, rec, res.statusCode));
  });
  // Body-parser and other middleware errors: answer in CloudStack's shape, never with a stack.
  server.use((err: unknown, _req: Request, res: Response, _next: unknown) => {
    const status = typeof err === 'object' && err && 'status' in err ? Number((err as { status: number }).status) : 400;
    if (!res.headersSent) sendError(res, true, 'errorresponse', new ApiError(status === 413 ? 431 : 400, status === 413 ? 'Request body too large' : 'Malformed request'));
  });
  return server;
}
