/**
 * A KMIP server as one profile reaches it: at most `max_connections` kept-alive mutual-TLS
 * connections, each carrying one request at a time, and a queue of the operations waiting for them.
 * A free connection takes as many queued calls as fit in `batch_items` batch items and sends them in
 * one request (Batch Error Continuation Continue keeps their outcomes apart), so concurrent single
 * wraps share round trips the way an explicit batch does. A call's items stay together and in order
 * in one request; a call larger than `batch_items` is split into requests sent concurrently.
 * Does not retry: the policy does.
 */
import { KmsError } from '../../core/errors';
import { KmipConnection, MAX_RESPONSE_BYTES, transportError, type KmipEndpoint } from './connection';
import { parseResponse, requestMessage, type RequestItem, type RequestOptions, type ResponseItem } from './messages';
import type { KmipProfile } from './profile';
import { TtlvError, type TtlvItem } from './ttlv';

/** How a call is bounded: the policy's abort signal, a per-request timeout, and a hook per answered request. */
export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Called after each request of a split call is answered (the policy's stall bound). */
  readonly progress?: () => void;
  /**
   * Sends the call in a request of its own, never batched with other callers' operations (Create,
   * Activate, Revoke, Destroy: a whole-request failure of someone else's work must not touch them).
   */
  readonly alone?: boolean;
}

/** Queued operations of one call (or one part of a split call), answered together. */
interface Unit {
  readonly items: readonly RequestItem[];
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  readonly alone?: boolean;
  resolve(answers: ResponseItem[]): void;
  reject(e: KmsError): void;
  /** Removes the unit from the queue when its caller gives up before it is sent. */
  onAbort?: () => void;
}

/** One profile's KMIP server. Safe to call concurrently. */
export class KmipClient {
  readonly endpoint: KmipEndpoint;
  readonly #request: RequestOptions;
  readonly #queue: Unit[] = [];
  readonly #idle: KmipConnection[] = [];
  readonly #active = new Set<KmipConnection>();
  /** Requests being opened or in flight (each holds or is opening one connection). */
  #busy = 0;
  #closed = false;

  constructor(readonly name: string, readonly profile: KmipProfile) {
    this.endpoint = { host: profile.host, port: profile.port, ca: profile.ca, cert: profile.cert, key: profile.key, name };
    this.#request = {
      version: profile.version, maximumResponseSize: MAX_RESPONSE_BYTES,
      credential: profile.username ? { username: profile.username, password: profile.password } : undefined,
    };
  }

  /** Connections lent to a request, and open but idle. */
  get stats(): { inUse: number; idle: number } {
    return { inUse: this.#busy, idle: this.#idle.length };
  }

  /**
   * Sends the operations and resolves with one response item per operation, in order. Rejects
   * (unavailable, retryable) when a request could not be sent or answered, or the signal aborted;
   * a server's refusal of a whole request (its credential) comes back as that failure in every item.
   */
  async call(items: readonly RequestItem[], opts: CallOptions = {}): Promise<ResponseItem[]> {
    if (items.length === 0) return [];
    const size = this.profile.batchItems;
    const parts: RequestItem[][] = [];
    for (let i = 0; i < items.length; i += size) parts.push(items.slice(i, i + size));
    const settled = await Promise.allSettled(parts.map(async (part) => {
      const got = await this.#enqueue(part, opts);
      opts.progress?.();
      return got;
    }));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      // The parts that were answered may hold plaintext DEKs (Decrypt): zeroed, as nobody reads them.
      for (const s of settled) if (s.status === 'fulfilled') for (const a of s.value) if (a.ok) zeroBytes(a.payload);
      throw failed.reason;
    }
    return settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
  }

  close(): void {
    this.#closed = true;
    const err = new KmsError('unavailable', `The KMIP connections of HSM profile ${this.name} are closed`);
    for (const u of this.#queue.splice(0)) u.reject(err);
    for (const c of this.#idle.splice(0)) c.close();
    for (const c of this.#active) c.close();
  }

  #enqueue(items: readonly RequestItem[], opts: CallOptions): Promise<ResponseItem[]> {
    return new Promise<ResponseItem[]>((resolve, reject) => {
      if (this.#closed) {
        reject(new KmsError('unavailable', `The KMIP connections of HSM profile ${this.name} are closed`));
        return;
      }
      if (opts.signal?.aborted) {
        reject(new KmsError('unavailable', `Waiting for a KMIP connection of HSM profile ${this.name} was abandoned`));
        return;
      }
      const unit: Unit = { items, signal: opts.signal, timeoutMs: opts.timeoutMs, alone: opts.alone, resolve, reject };
      unit.onAbort = () => {
        const i = this.#queue.indexOf(unit);
        if (i < 0) return;
        this.#queue.splice(i, 1);
        reject(new KmsError('unavailable', `Waiting for a KMIP connection of HSM profile ${this.name} was abandoned`));
      };
      opts.signal?.addEventListener('abort', unit.onAbort, { once: true });
      this.#queue.push(unit);
      this.#pump();
    });
  }

  /** Starts requests while connections are free and calls wait. */
  #pump(): void {
    while (!this.#closed && this.#queue.length && this.#busy < this.profile.maxConnections) {
      const units: Unit[] = [this.#queue.shift()!];
      let n = units[0].items.length;
      while (!units[0].alone && this.#queue.length && !this.#queue[0].alone && n + this.#queue[0].items.length <= this.profile.batchItems) {
        const u = this.#queue.shift()!;
        n += u.items.length;
        units.push(u);
      }
      for (const u of units) if (u.onAbort) u.signal?.removeEventListener('abort', u.onAbort);
      this.#busy++;
      void this.#send(units).finally(() => {
        this.#busy--;
        this.#pump();
      });
    }
  }

  /**
   * One request for the units. Any unit's caller giving up (its policy timeout) abandons the request:
   * the connection is destroyed, never reused, and the other units fail as unavailable (retryable).
   */
  async #send(units: readonly Unit[]): Promise<void> {
    const abandon = new AbortController();
    const onAbort = (): void => abandon.abort();
    for (const u of units) u.signal?.addEventListener('abort', onAbort, { once: true });
    if (units.some((u) => u.signal?.aborted)) abandon.abort();
    const timeoutMs = Math.max(...units.map((u) => u.timeoutMs ?? 0)) || undefined;
    const items = units.flatMap((u) => u.items);
    let conn: KmipConnection | undefined;
    try {
      conn = await this.#connection(abandon.signal, timeoutMs);
      this.#active.add(conn);
      let response;
      try {
        response = await conn.request(requestMessage(this.#request, items), abandon.signal, timeoutMs);
      } catch (e) {
        throw transportError(this.endpoint, e, 'request');
      }
      let answers: readonly ResponseItem[];
      try {
        answers = parseResponse(response, items.length).items;
      } catch (e) {
        conn.close();
        throw new KmsError('provider', `KMIP server of HSM profile ${this.name} sent an unreadable response: ${e instanceof TtlvError ? e.message : 'malformed'}`, { retryable: true });
      }
      let at = 0;
      for (const u of units) {
        u.resolve(answers.slice(at, at + u.items.length));
        at += u.items.length;
      }
    } catch (e) {
      const err = e instanceof KmsError ? e : transportError(this.endpoint, e, 'request');
      for (const u of units) u.reject(err);
    } finally {
      for (const u of units) u.signal?.removeEventListener('abort', onAbort);
      if (conn) {
        this.#active.delete(conn);
        if (conn.usable && !this.#closed) this.#idle.push(conn);
        else conn.close();
      }
    }
  }

  /** An idle usable connection, or a new one. */
  async #connection(signal: AbortSignal, timeoutMs?: number): Promise<KmipConnection> {
    for (let c = this.#idle.pop(); c; c = this.#idle.pop()) {
      if (c.usable) return c;
      c.close();
    }
    return KmipConnection.open(this.endpoint, signal, timeoutMs);
  }
}

/** Zeroes every byte string in an item (a dropped answer's plaintexts). */
function zeroBytes(item: TtlvItem | undefined): void {
  if (!item) return;
  if (item.type === 'byteString') item.value.fill(0);
  else if (item.type === 'structure') for (const c of item.value) zeroBytes(c);
}
