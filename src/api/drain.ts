import type { NextFunction, Request, Response } from 'express';
import { readFileSync } from 'node:fs';
import { Server as NetServer, type Socket } from 'node:net';
import type { Server } from 'node:http';

/** One connection of the API port, as the drain sees it. */
interface Connection {
  /** Requests received on it and not yet answered. */
  pending: number;
  /** The response to the most recent request received on it: the one a drain marks `Connection: close`. */
  latest: Response | undefined;
  /** When its last answer finished (or it was opened), epoch ms. */
  idleSince: number;
  /** Set once the server has half-closed it (FIN sent): nothing more can be answered on it. */
  closing: boolean;
  /** Whether a request ever came on it (a new connection gets longer to send its first one). */
  used: boolean;
}

/** How long a connection with nothing in flight stays open during a drain before the server closes it. */
const QUIET_MS = 100;
/** The same for a connection that has not sent its first request yet. */
const FIRST_REQUEST_MS = 1000;
/** How long a half-closed connection waits for the client's FIN before it is destroyed. */
const LINGER_MS = 5000;

/**
 * Counts the requests the API port has received and not yet answered, and drains its connections
 * so that no request whose bytes reached the server is lost or reset:
 *
 * - From `startDraining()` on, the answer to the most recent request of a connection carries
 *   `Connection: close`; earlier pipelined requests are answered first, in order, keep-alive.
 * - A connection is closed gracefully: the server sends its FIN after the last answer, reads (and
 *   drops) whatever the client still sends until the client closes, and only then releases the
 *   socket, so the kernel never answers unread bytes with a reset.
 * - `drain()` stops listening only once the kernel's accept queue is empty (a connection the
 *   kernel completed is accepted and served, not reset), closes connections that have nothing in
 *   flight once they are quiet, and waits for the others.
 */
export class RequestTracker {
  #inFlight = 0;
  #draining = false;
  readonly #connections = new Map<Socket, Connection>();
  readonly #changed: Array<() => void> = [];

  constructor(private readonly onChange?: (delta: 1 | -1) => void) {}

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Follows every connection of `server` (call before it listens). */
  attach(server: Server): void {
    server.on('connection', (socket: Socket) => this.#connection(socket));
  }

  #connection(socket: Socket): Connection {
    let c = this.#connections.get(socket);
    if (c) return c;
    c = { pending: 0, latest: undefined, idleSince: Date.now(), closing: false, used: false };
    this.#connections.set(socket, c);
    socket.once('close', () => {
      this.#connections.delete(socket);
      this.#notify();
    });
    if (this.#draining) this.#lingerOnClose(socket);
    return c;
  }

  readonly middleware = (req: Request, res: Response, next: NextFunction): void => {
    const socket = req.socket;
    const c = this.#connection(socket);
    // Parsed after the server half-closed the connection: no answer can reach the client, which
    // was told to close; the request is not run.
    if (c.closing || socket.writableEnded) return;
    this.#inFlight++;
    c.pending++;
    c.used = true;
    c.latest = res;
    this.onChange?.(1);
    const writeHead = res.writeHead;
    const tracker = this;
    // Decided when the answer's head is written: by then every request already read on this
    // connection has been parsed, so `latest` is the last one the client sent.
    res.writeHead = function (this: Response, ...args: unknown[]) {
      if (tracker.#draining && c.latest === res && !res.headersSent) res.setHeader('Connection', 'close');
      return (writeHead as (...a: unknown[]) => Response).apply(this, args);
    } as Response['writeHead'];
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      this.#inFlight--;
      c.pending--;
      c.idleSince = Date.now();
      this.onChange?.(-1);
      this.#notify();
    };
    res.once('finish', end);
    res.once('close', end);
    next();
  };

  /** From now on answers ask clients to close (see the class comment); /readyz says so separately. */
  startDraining(): void {
    if (this.#draining) return;
    this.#draining = true;
    for (const socket of this.#connections.keys()) this.#lingerOnClose(socket);
  }

  /**
   * Stops listening (after the accept queue is empty), closes quiet connections gracefully, waits
   * for every request received to be answered and every connection to close, at most `timeoutMs`;
   * then destroys what is left. Returns how many requests were still unanswered (0 after a clean drain).
   */
  async drain(server: Server, timeoutMs: number): Promise<number> {
    this.startDraining();
    const deadline = Date.now() + timeoutMs;
    await stopListening(server, deadline);
    while (this.#connections.size > 0 && Date.now() < deadline) {
      const now = Date.now();
      for (const [socket, c] of this.#connections) {
        if (c.pending === 0 && !c.closing && now - c.idleSince >= (c.used ? QUIET_MS : FIRST_REQUEST_MS)) this.#closeGracefully(socket, c);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 25);
        this.#changed.push(() => { clearTimeout(timer); resolve(); });
      });
    }
      const unanswered = this.#inFlight;
    for (const socket of this.#connections.keys()) socket.destroy();
    server.closeAllConnections();
    return unanswered;
  }

  #notify(): void {
    for (const f of this.#changed.splice(0)) f();
  }

  /**
   * Node's HTTP server calls `destroySoon()` after an answer that carries `Connection: close`; it
   * releases the socket as soon as the answer is written, and bytes the client sent meanwhile would
   * be answered by a reset. During a drain the connection is closed gracefully instead.
   */
  #lingerOnClose(socket: Socket): void {
    socket.destroySoon = () => this.#closeGracefully(socket, this.#connection(socket));
  }

  /** FIN after what is written; drops what the client still sends; destroys on its FIN or after LINGER_MS. */
  #closeGracefully(socket: Socket, c: Connection): void {
    if (c.closing) return;
    c.closing = true;
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    socket.once('end', () => socket.destroy());
    socket.end();
    socket.resume();
  }
}

/**
 * Closes the listening socket without touching its connections (http.Server#close would also close
 * the connections it thinks idle, including one whose request is still in the kernel's buffer),
 * once the kernel's accept queue is empty, or after a second of waiting for it.
 */
async function stopListening(server: Server, deadline: number): Promise<void> {
  const address = server.address();
  const port = address && typeof address === 'object' ? address.port : undefined;
  // Bounded: a client that keeps connecting must not hold the drain open past its timeout.
  const end = Math.min(deadline, Date.now() + 10_000);
  // Read synchronously, so the listening socket closes in the same tick as the read that found the
  // queue empty (a connection completing in between is the only one the kernel could still reset).
  while (port !== undefined && Date.now() < end && acceptQueueLength(port) > 0) {
    await new Promise((r) => setImmediate(r));
  }
  // The listening socket closes now; the callback would wait for every connection, which the drain closes.
  NetServer.prototype.close.call(server);
}

/**
 * Connections the kernel completed on a listening port and nobody accepted yet (Linux: the
 * rx_queue of the LISTEN socket in /proc/net/tcp and tcp6); 0 where this cannot be read.
 */
function acceptQueueLength(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // not Linux, or no IPv6
    }
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '0A' || !f[1]?.endsWith(`:${hexPort}`)) continue;
      n += parseInt(f[4]?.split(':')[1] ?? '0', 16) || 0;
    }
  }
  return n;
}
