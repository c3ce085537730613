/**
 * A KMIP server as one profile reaches it: a pool of kept-alive mutual-TLS connections and the
 * requests sent over them. A batch of operations is split into requests of at most `batchItems`
 * batch items, sent concurrently over the pool's connections. Does not retry: the policy does.
 */
import { KmsError } from '../../core/errors';
import { KmipConnection, MAX_RESPONSE_BYTES, transportError, type KmipEndpoint } from './connection';
import { parseResponse, requestMessage, type RequestItem, type RequestOptions, type ResponseItem } from './messages';
import type { KmipProfile } from './profile';
import { TtlvError } from './ttlv';

/** How a call is bounded: the policy's abort signal, a per-request timeout, and a hook per answered request. */
export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Called after each request of a split batch is answered (the policy's stall bound). */
  readonly progress?: () => void;
  /** 'stop': later items of a request are skipped after a failure (Create then Activate). @defaultValue 'continue' */
  readonly onError?: 'continue' | 'stop';
}

/** Connections of one profile: idle ones reused, at most `max` open, waiters served in order. */
class ConnectionPool {
  readonly #idle: KmipConnection[] = [];
  readonly #waiters: Array<() => void> = [];
  #open = 0;
  #closed = false;

  constructor(private readonly ep: KmipEndpoint, private readonly max: number) {}

  get stats(): { inUse: number; idle: number } {
    return { inUse: this.#open - this.#idle.length, idle: this.#idle.length };
  }

  /** Runs fn on a connection: an idle one, a new one, or the next one released. */
  async with<T>(fn: (c: KmipConnection) => Promise<T>, opts: CallOptions): Promise<T> {
    const conn = await this.#acquire(opts);
    try {
      return await fn(conn);
    } finally {
      this.#release(conn);
    }
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#idle.splice(0)) c.close();
    for (const w of this.#waiters.splice(0)) w();
  }

  async #acquire(opts: CallOptions): Promise<KmipConnection> {
    for (;;) {
      if (this.#closed) throw new KmsError('unavailable', `The KMIP connections of HSM profile ${this.ep.name} are closed`);
      if (opts.signal?.aborted) throw new KmsError('unavailable', `Waiting for a KMIP connection of HSM profile ${this.ep.name} was abandoned`);
      const idle = this.#idle.pop();
      if (idle) {
        if (idle.usable) return idle;
        this.#open--;
        continue;
      }
      if (this.#open < this.max) {
        this.#open++;
        try {
          return await KmipConnection.open(this.ep, opts.signal, opts.timeoutMs);
        } catch (e) {
          this.#open--;
          this.#wakeOne();
          throw e;
        }
      }
      await new Promise<void>((resolve) => {
        const onAbort = (): void => {
          const i = this.#waiters.indexOf(wake);
          if (i >= 0) this.#waiters.splice(i, 1);
          resolve();
        };
        const wake = (): void => {
          opts.signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        this.#waiters.push(wake);
        opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  #release(conn: KmipConnection): void {
    if (conn.usable && !this.#closed) this.#idle.push(conn);
    else {
      this.#open--;
      conn.close();
    }
    this.#wakeOne();
  }

  #wakeOne(): void {
    this.#waiters.shift()?.();
  }
}

/** One profile's KMIP server. Safe to call concurrently. */
export class KmipClient {
  readonly #pool: ConnectionPool;
  readonly #request: RequestOptions;

  constructor(readonly name: string, readonly profile: KmipProfile) {
    const ep: KmipEndpoint = { host: profile.host, port: profile.port, ca: profile.ca, cert: profile.cert, key: profile.key, name };
    this.#pool = new ConnectionPool(ep, profile.maxConnections);
    this.#request = {
      version: profile.version, maximumResponseSize: MAX_RESPONSE_BYTES,
      credential: profile.username ? { username: profile.username, password: profile.password } : undefined,
    };
    this.endpoint = ep;
  }

  readonly endpoint: KmipEndpoint;

  get stats(): { inUse: number; idle: number } {
    return this.#pool.stats;
  }

  /**
   * Sends the operations and resolves with one response item per operation, in order. Rejects
   * (unavailable, retryable) when a request could not be sent or answered; a server's refusal of a
   * whole request (its credential) comes back as that failure in every item.
   */
  async call(items: readonly RequestItem[], opts: CallOptions = {}): Promise<ResponseItem[]> {
    if (items.length === 0) return [];
    const size = this.profile.batchItems;
    const chunks: RequestItem[][] = [];
    for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
    const answers = await Promise.all(chunks.map(async (chunk) => {
      const got = await this.#send(chunk, opts);
      opts.progress?.();
      return got;
    }));
    return answers.flat();
  }

  async #send(chunk: readonly RequestItem[], opts: CallOptions): Promise<readonly ResponseItem[]> {
    const message = requestMessage({ ...this.#request, stopOnError: opts.onError === 'stop' }, chunk);
    return this.#pool.with(async (conn) => {
      let response;
      try {
        response = await conn.request(message, opts.signal, opts.timeoutMs);
      } catch (e) {
        throw transportError(this.endpoint, e, 'request');
      }
      try {
        return parseResponse(response, chunk.length).items;
      } catch (e) {
        conn.close();
        throw new KmsError('provider', `KMIP server of HSM profile ${this.name} sent an unreadable response: ${e instanceof TtlvError ? e.message : 'malformed'}`, { retryable: true });
      }
    }, opts);
  }

  close(): void {
    this.#pool.close();
  }
}
