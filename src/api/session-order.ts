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
}

interface SessionState {
  inFlight: number;
  lastAnswered: number;
  discovery?: Discovery;
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

/** Requests per session cookie, used only to order answers, never to authenticate. */
export class SessionOrder {
  readonly #sessions = new Map<string, SessionState>();
  private readonly joinMs: number;
  private readonly idleMs: number;
  private readonly maxWaitMs: number;

  constructor(opts: SessionOrderOptions = {}) {
    this.joinMs = opts.joinMs ?? 500;
    this.idleMs = opts.idleMs ?? 250;
    this.maxWaitMs = opts.maxWaitMs ?? 3000;
  }

  /** Notes a request as it arrives; call the returned function once its answer is sent. */
  begin(sessionCookie: string | undefined, command: string | undefined): () => void {
    if (!sessionCookie || !command) return () => undefined;
    const state = this.#sessions.get(sessionCookie) ?? { inFlight: 0, lastAnswered: 0, wake: [] };
    this.#sessions.set(sessionCookie, state);
    const now = Date.now();
    if (command === DISCOVERY_START && (!state.discovery || now - state.discovery.started > this.maxWaitMs)) {
      state.discovery = { started: now, pending: new Set(PREREQUISITES) };
    }
    state.inFlight++;
    return () => {
      state.inFlight--;
      state.lastAnswered = Date.now();
      state.discovery?.pending.delete(command);
      for (const wake of state.wake.splice(0)) wake();
      if (!state.inFlight && !state.wake.length && (!state.discovery || Date.now() - state.discovery.started > this.maxWaitMs)) {
        this.#sessions.delete(sessionCookie);
      }
    };
  }

  /** Resolves when `command` may be answered: for listApis inside the UI's discovery burst, once its prerequisites are answered. */
  async after(sessionCookie: string | undefined, command: string, arrived: number): Promise<void> {
    if (command !== ORDERED || !sessionCookie) return;
    const state = this.#sessions.get(sessionCookie);
    const discovery = state?.discovery;
    if (!state || !discovery || arrived - discovery.started > this.joinMs) return;
    const deadline = discovery.started + this.maxWaitMs;
    while (discovery.pending.size && Date.now() < deadline) {
      // Only this listApis in flight, and nothing answered for idleMs: the client is not sending them.
      const idleFor = state.inFlight <= 1 ? Date.now() - state.lastAnswered : 0;
      if (state.inFlight <= 1 && idleFor >= this.idleMs) break;
      const wait = Math.max(1, Math.min(deadline - Date.now(), state.inFlight <= 1 ? this.idleMs - idleFor : deadline - Date.now()));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { state.wake = state.wake.filter((w) => w !== wake); resolve(); }, wait);
        const wake = () => { clearTimeout(timer); resolve(); };
        state.wake.push(wake);
      });
    }
    if (!discovery.pending.size || Date.now() >= deadline) state.discovery = undefined;
  }
}
