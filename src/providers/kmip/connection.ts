/**
 * One mutually authenticated TLS connection to a KMIP server, carrying one request at a time
 * (KMIP over TLS answers requests in order; one in flight keeps a stalled answer from holding up
 * others). Responses are framed by their TTLV length. A connection that fails, times out or is
 * abandoned is destroyed, never reused.
 */
import { connect, type TLSSocket } from 'node:tls';
import { KmsError } from '../../core/errors';
import { decodeTtlv, encodeTtlv, messageLength, TtlvError, type TtlvItem } from './ttlv';

/** What a connection needs: where and who. Key and password are secrets: never log this object. */
export interface KmipEndpoint {
  readonly host: string;
  readonly port: number;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** The profile's name, for error texts. */
  readonly name: string;
}

/** The largest response accepted, as the Maximum Response Size asked of the server. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** Node's codes for a server certificate we refused (chain, expiry, host name): only during the handshake. */
const SERVER_CERT_REFUSED = /^(UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED|CERT_|ERR_TLS_CERT_ALTNAME_INVALID)/;
/** The TLS alerts by which a server refuses our certificate or our access, as Node's code or OpenSSL's text. */
const ALERT_CODE_REFUSED = /ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|UNSUPPORTED_CERTIFICATE|UNKNOWN_CA|ACCESS_DENIED)$/;
const ALERT_TEXT_REFUSED = /alert (bad certificate|certificate required|certificate unknown|certificate revoked|certificate expired|unsupported certificate|unknown ca|access denied)/i;

/**
 * Classifies a socket or TLS failure: a refused certificate (ours by one of the certificate or
 * access alerts, or the server's by our checks) is 'auth' (fix the certificates), never retried,
 * but only while the connection has not answered a request yet: a TLS error later is a broken
 * connection. Anything else, an unknown host included (DNS may be failing for a while; probe()
 * says 'param' for it when a profile is checked), is 'unavailable', retried by the policy.
 * Messages carry the code, never key material.
 */
export function transportError(ep: KmipEndpoint, e: unknown, during: 'connect' | 'request', answered = false): KmsError {
  if (e instanceof KmsError) return e;
  const code = String((e as { code?: unknown })?.code ?? '');
  const reason = String((e as { reason?: unknown })?.reason ?? (e as Error)?.message ?? '').slice(0, 200);
  if (code === 'ENOTFOUND') {
    return new KmsError('unavailable', `KMIP server host ${ep.host} of HSM profile ${ep.name} is unknown (DNS: ${code})`, { cause: e });
  }
  // Under TLS 1.3 a server refuses the client certificate after the client's handshake ended, so
  // the refusal arrives with the first request: an alert counts until the first answer.
  const refused = (during === 'connect' && SERVER_CERT_REFUSED.test(code)) || (!answered && (ALERT_CODE_REFUSED.test(code) || ALERT_TEXT_REFUSED.test(reason)));
  if (refused) {
    return new KmsError('auth', `KMIP server ${ep.host}:${ep.port} of HSM profile ${ep.name}: TLS handshake refused (${code || 'TLS'}: ${reason}); check the ca, client_certificate and private_key details`, { retryable: false });
  }
  return new KmsError('unavailable', `KMIP server ${ep.host}:${ep.port} of HSM profile ${ep.name} unavailable during ${during}${code ? ` (${code})` : ''}`, { cause: e });
}

/** True for the error of an unknown host (DNS), which a profile check reports as a bad host. */
export const isUnknownHost = (e: unknown): boolean => e instanceof KmsError && String((e.cause as { code?: unknown } | undefined)?.code ?? '') === 'ENOTFOUND';

/** One TLS connection. `request` sends a message and resolves with the decoded response. */
export class KmipConnection {
  #buffered: Buffer[] = [];
  #bufferedBytes = 0;
  #pending: { resolve: (m: TtlvItem) => void; reject: (e: KmsError) => void } | undefined;
  #closed = false;
  /** Set when the connection may no longer carry requests (closed, failed or abandoned). */
  #dead: KmsError | undefined;
  /** Set once a response arrived: a TLS error after that is a broken connection, not a refusal. */
  #answered = false;

  private constructor(private readonly ep: KmipEndpoint, private readonly socket: TLSSocket) {
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (e) => this.#fail(transportError(ep, e, 'request', this.#answered)));
    socket.on('close', () => this.#fail(new KmsError('unavailable', `KMIP server ${ep.host}:${ep.port} of HSM profile ${ep.name} closed the connection`)));
  }

  /** Opens and authenticates a connection; `signal` aborts it (the socket is destroyed). */
  static open(ep: KmipEndpoint, signal?: AbortSignal, timeoutMs = 30_000): Promise<KmipConnection> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new KmsError('unavailable', `Connecting to KMIP server ${ep.host}:${ep.port} was abandoned`));
        return;
      }
      const socket = connect({
        host: ep.host, port: ep.port, ca: ep.ca, cert: ep.cert, key: ep.key,
        // An IP address is checked against the certificate's IP SANs; SNI only carries host names.
        servername: /^[0-9.]+$|:/.test(ep.host) ? undefined : ep.host,
        minVersion: 'TLSv1.2',
      });
      socket.setNoDelay(true);
      let settled = false;
      const done = (err?: KmsError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.removeListener('error', onError);
        socket.removeListener('close', onClose);
        if (err) {
          socket.on('error', () => undefined); // a late TLS error of an abandoned socket has nobody to hear it
          socket.destroy();
          reject(err);
        } else {
          socket.setKeepAlive(true, 30_000);
          resolve(new KmipConnection(ep, socket));
        }
      };
      const onError = (e: Error): void => done(transportError(ep, e, 'connect'));
      const onClose = (): void => done(new KmsError('unavailable', `KMIP server ${ep.host}:${ep.port} of HSM profile ${ep.name} closed the connection during the TLS handshake`));
      const onAbort = (): void => done(new KmsError('unavailable', `Connecting to KMIP server ${ep.host}:${ep.port} was abandoned`));
      const timer = setTimeout(() => done(new KmsError('unavailable', `KMIP server ${ep.host}:${ep.port} of HSM profile ${ep.name} did not complete the TLS handshake within ${timeoutMs / 1000}s`)), timeoutMs);
      timer.unref?.();
      socket.once('secureConnect', () => done());
      socket.once('error', onError);
      socket.once('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** False once the connection failed, was closed or abandoned. */
  get usable(): boolean {
    return !this.#dead && !this.#closed && !this.socket.destroyed;
  }

  /**
   * Sends one request message and resolves with the response. `signal` (the policy's timeout)
   * abandons the request: the connection is destroyed, so a late answer is never read as another's.
   */
  request(message: TtlvItem, signal?: AbortSignal, timeoutMs?: number): Promise<TtlvItem> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (this.#pending) return Promise.reject(new KmsError('internal', 'A KMIP connection carries one request at a time'));
    const bytes = encodeTtlv(message);
    return new Promise<TtlvItem>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => this.#fail(new KmsError('unavailable', `KMIP request to ${this.ep.host}:${this.ep.port} was abandoned (no answer in time)`));
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      this.#pending = {
        resolve: (m) => { cleanup(); resolve(m); },
        reject: (e) => { cleanup(); reject(e); },
      };
      if (signal?.aborted) {
        bytes.fill(0); // never written: the request may carry plaintext DEKs (Encrypt)
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs) {
        timer = setTimeout(() => this.#fail(new KmsError('unavailable', `KMIP server ${this.ep.host}:${this.ep.port} did not answer within ${timeoutMs / 1000}s`)), timeoutMs);
        timer.unref?.();
      }
      // The request may carry plaintext DEKs (Encrypt): its bytes are zeroed once written.
      this.socket.write(bytes, () => bytes.fill(0)); // called with an error too, when the socket is destroyed first
    });
  }

  /** Closes the connection; a pending request fails as unavailable. */
  close(): void {
    this.#closed = true;
    this.#fail(new KmsError('unavailable', 'The KMIP connection was closed'));
  }

  /**
   * Frames responses. A response may carry plaintext DEKs (Decrypt): every buffer that held its
   * bytes is zeroed once decoded (the decoded values are copies, zeroed by their users).
   */
  #onData(chunk: Buffer): void {
    this.#buffered.push(chunk);
    this.#bufferedBytes += chunk.length;
    for (;;) {
      if (this.#bufferedBytes < 8) return;
      let head = this.#buffered[0];
      if (this.#buffered.length > 1) {
        head = Buffer.concat(this.#buffered);
        for (const b of this.#buffered) b.fill(0);
        this.#buffered = [head];
      }
      const need = messageLength(head)!;
      if (need > MAX_RESPONSE_BYTES + 64) {
        this.#fail(new KmsError('provider', `KMIP server ${this.ep.host}:${this.ep.port} sent a response of ${need} bytes, over the ${MAX_RESPONSE_BYTES}-byte limit`, { retryable: true }));
        return;
      }
      if (head.length < need) return;
      const frame = head.subarray(0, need);
      const rest = head.subarray(need);
      this.#buffered = rest.length ? [Buffer.from(rest)] : [];
      this.#bufferedBytes = rest.length;
      const pending = this.#pending;
      this.#pending = undefined;
      let decoded: TtlvItem | KmsError;
      try {
        decoded = decodeTtlv(frame);
      } catch (e) {
        decoded = new KmsError('provider', `KMIP server ${this.ep.host}:${this.ep.port} sent a malformed response: ${e instanceof TtlvError ? e.message : 'undecodable'}`, { retryable: true });
      } finally {
        head.fill(0);
      }
      if (!pending) {
        this.#fail(new KmsError('provider', `KMIP server ${this.ep.host}:${this.ep.port} sent a response nobody asked for`, { retryable: true }));
        return;
      }
      if (decoded instanceof KmsError) {
        pending.reject(decoded);
        this.#fail(decoded);
        return;
      }
      this.#answered = true;
      pending.resolve(decoded);
    }
  }

  #fail(e: KmsError): void {
    this.#dead ??= e;
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.reject(e);
    if (!this.socket.destroyed) this.socket.destroy();
  }
}
