/**
 * Paces anonymous /metrics scrapes: at most `perSecond` a second (bursts of `burst`), in arrival
 * order. A scrape over the rate waits for its turn instead of being served at once, so a flood of
 * scrapers costs the process a few cheap answers a second however many clients loop; the wait
 * queue is bounded (`maxWaiting`), and a scrape beyond it is refused at once (`false`).
 * Prometheus scrapes every 15 s or so: it never waits.
 */
export class ScrapeGate {
  #tokens: number;
  #last = Date.now();
  readonly #waiting: Array<{ go: () => void; gone: () => boolean }> = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly perSecond = 4, private readonly burst = 8, private readonly maxWaiting = 256) {
    this.#tokens = burst;
  }

  /**
   * Resolves true when the scrape may be served, false when too many are waiting already. `gone`
   * says whether the scraper hung up meanwhile: its turn is then given to the next one.
   */
  admit(gone: () => boolean = () => false): Promise<boolean> {
    this.#refill();
    if (this.#waiting.length === 0 && this.#tokens >= 1) {
      this.#tokens -= 1;
      return Promise.resolve(true);
    }
    if (this.#waiting.length >= this.maxWaiting) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.#waiting.push({ go: () => resolve(true), gone });
      this.#schedule();
    });
  }

  /** How many scrapes wait for their turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  #refill(): void {
    const now = Date.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.perSecond);
    this.#last = now;
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#refill();
      while (this.#waiting.length && this.#tokens >= 1) {
        const next = this.#waiting.shift()!;
        if (next.gone()) {
          next.go(); // answered with nothing: its connection is closed
          continue;
        }
        this.#tokens -= 1;
        next.go();
      }
      if (this.#waiting.length) this.#schedule();
    }, Math.max(1, Math.ceil(((1 - this.#tokens) / this.perSecond) * 1000)));
    this.#timer.unref();
  }
}
