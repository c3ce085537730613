import { createHash } from 'node:crypto';

/**
 * The order a fresh UI login needs (issue #24). After login the CloudStack UI's GetInfo sends
 * listZones, listApis, listNetworks, listVPCs, listUsers, listNetworkServiceProviders and
 * listCapabilities at once, and builds its menu when listApis answers: each section's `show()` then
 * reads the role from the listUsers answer (`userInfo.roletype`) and the features from the
 * listCapabilities answer (`hashsmprofiles`); a section hidden then stays hidden until F5. The UI
 * keeps nothing of the login answer that those functions read (only cookies), so the server orders
 * the answers of that burst instead.
 *
 * A session's listApis that arrives within `joinMs` of the same session's listZones (the UI sends
 * them together) is answered once that session's listUsers and listCapabilities have been answered,
 * which the UI sends in the same breath (a browser may hold them back while its six connections per
 * host are busy). It stops waiting as soon as the session has had nothing else in flight for
 * `idleMs` (a client that does not send them: a script calling one command after another) and
 * after `maxWaitMs` in any case. Any other listApis (cmk's sync) is answered at once.
 */
const DISCOVERY_START = 'listZones';
const ORDERED = 'listApis';
const PREREQUISITES: readonly string[] = ['listUsers', 'listCapabilities'];

interface Discovery {
  readonly started: number;
  /** Prerequisites not answered yet. */
  readonly pending: Set<string>;
  /** When the session last had an answer sent (the burst's idle clock). */
  lastAnswered: number;
  /** A listApis of this burst is already held: any other one is answered at once. */
  held: boolean;
}

interface SessionState {
  inFlight: number;
  /** Woken on every answer of the session. */
  wake: Array<() => void>;
}

export interface SessionOrderOptions {
  /** @defaultValue 500 */
  readonly joinMs?: number;
  /** @defaultValue 250 */
  readonly idleMs?: number;
  /** @defaultValue 3000 */
  readonly maxWaitMs?: number;
}

/**
 * Requests per authenticated session (keyed by the server-side session id, never by cookie text),
 * used only to order answers. A session's entry lives while it has requests in flight; a discovery
 * burst's record lives at most `maxWaitMs` (a timer that does not hold the process open), so the
 * memory held is bounded by the sessions active in the last few seconds.
 */
export class SessionOrder {
  readonly #sessions = new Map<string, SessionState>();
  /** Requests in flight per session cookie (a digest of it), authenticated or not yet: removed at 0. */
  readonly #arrivals = new Map<string, number>();
  readonly #discoveries = new Map<string, Discovery>();
  private readonly joinMs: number;
  private readonly idleMs: number;
  private readonly maxWaitMs: number;

  constructor(opts: SessionOrderOptions = {}) {
    this.joinMs = opts.joinMs ?? 500;
    this.idleMs = opts.idleMs ?? 250;
    this.maxWaitMs = opts.maxWaitMs ?? 3000;
  }

  /** Entries held (sessions with requests in flight plus discovery bursts not yet expired). */
  get size(): number {
    return this.#sessions.size + this.#discoveries.size + this.#arrivals.size;
  }

  /**
   * Notes a request carrying a session cookie as it arrives, before it is authenticated (its
   * listZones may authenticate after its listApis); call the returned function when it ends. Only
   * counts requests in flight, so it holds nothing once they are answered.
   */
  arrive(sessionCookie: string | undefined): { key?: string; end: () => void } {
    if (!sessionCookie) return { end: () => undefined };
    const key = createHash('sha256').update(sessionCookie).digest('base64');
    this.#arrivals.set(key, (this.#arrivals.get(key) ?? 0) + 1);
    return {
      key,
      end: () => {
        const left = (this.#arrivals.get(key) ?? 1) - 1;
        if (left > 0) this.#arrivals.set(key, left); else this.#arrivals.delete(key);
      },
    };
  }

  /**
   * Notes an authenticated session's request (`command`: the registered command name); call the
   * returned function once its answer is sent.
   */
  begin(sessionId: string, command: string): () => void {
    const state = this.#sessions.get(sessionId) ?? { inFlight: 0, wake: [] };
    this.#sessions.set(sessionId, state);
    const now = Date.now();
    const current = this.#discoveries.get(sessionId);
    if (command === DISCOVERY_START && (!current || now - current.started > this.maxWaitMs)) {
      const discovery: Discovery = { started: now, pending: new Set(PREREQUISITES), lastAnswered: now, held: false };
      this.#discoveries.set(sessionId, discovery);
      setTimeout(() => { if (this.#discoveries.get(sessionId) === discovery) this.#discoveries.delete(sessionId); }, this.maxWaitMs + 1).unref();
    }
    state.inFlight++;
    // A listApis waiting for its burst's listZones to be authenticated looks again.
    for (const wake of state.wake.splice(0)) wake();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      state.inFlight--;
      const discovery = this.#discoveries.get(sessionId);
      if (discovery) {
        discovery.lastAnswered = Date.now();
        discovery.pending.delete(command);
      }
      for (const wake of state.wake.splice(0)) wake();
      if (!state.inFlight && this.#sessions.get(sessionId) === state) this.#sessions.delete(sessionId);
    };
  }

  /** Resolves when `command` may be answered: for the first listApis inside the UI's discovery burst, once its prerequisites are answered. */
  async after(sessionId: string, cookieKey: string | undefined, command: string, arrived: number): Promise<void> {
    if (command !== ORDERED) return;
    const state = this.#sessions.get(sessionId);
    if (!state) return;
    // Requests of the same cookie still being authenticated (the burst's listZones among them?): wait
    // for them to begin, within joinMs of this one's arrival.
    const joinDeadline = arrived + this.joinMs;
    while (!this.#discoveries.has(sessionId) && cookieKey && (this.#arrivals.get(cookieKey) ?? 0) > state.inFlight && Date.now() < joinDeadline) {
      await this.#sleep(state, joinDeadline - Date.now());
    }
    const discovery = this.#discoveries.get(sessionId);
    if (!discovery || discovery.held || arrived - discovery.started > this.joinMs) return;
    discovery.held = true;
    const deadline = discovery.started + this.maxWaitMs;
    while (discovery.pending.size && Date.now() < deadline) {
      // Only this listApis in flight, and nothing answered for idleMs: the client is not sending them.
      const idleFor = state.inFlight <= 1 ? Date.now() - discovery.lastAnswered : 0;
      if (state.inFlight <= 1 && idleFor >= this.idleMs) break;
      const wait = Math.max(1, Math.min(deadline - Date.now(), state.inFlight <= 1 ? this.idleMs - idleFor : deadline - Date.now()));
      await this.#sleep(state, wait);
    }
    if (this.#discoveries.get(sessionId) === discovery) this.#discoveries.delete(sessionId);
  }

  /** Until the session's next request begins or answers, or `ms` have passed. */
  #sleep(state: SessionState, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => { state.wake = state.wake.filter((w) => w !== wake); resolve(); }, Math.max(1, ms));
      const wake = () => { clearTimeout(timer); resolve(); };
      state.wake.push(wake);
    });
  }
}
