import type { Deliver, JobQueue } from './queue';

/**
 * The queue without Redis: a FIFO in this process. Ids enqueued before `consume()` wait for it;
 * ids still waiting at `close()` are dropped (their rows stay in progress; a sweeper runs them).
 */
export class InProcessQueue implements JobQueue {
  readonly kind = 'in-process' as const;
  #waiting: string[] = [];
  #active = new Set<Promise<void>>();
  #deliver?: Deliver;
  #concurrency = 1;
  #closed = false;

  async enqueue(jobUuid: string): Promise<void> {
    if (this.#closed) return;
    this.#waiting.push(jobUuid);
    this.#pump();
  }

  async consume(deliver: Deliver, concurrency: number): Promise<void> {
    this.#deliver = deliver;
    this.#concurrency = concurrency;
    this.#pump();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#waiting = [];
    await Promise.allSettled([...this.#active]);
  }

  #pump(): void {
    const deliver = this.#deliver;
    if (!deliver || this.#closed) return;
    while (this.#active.size < this.#concurrency && this.#waiting.length) {
      const id = this.#waiting.shift()!;
      const p: Promise<void> = deliver(id).finally(() => {
        this.#active.delete(p);
        this.#pump();
      });
      this.#active.add(p);
    }
  }
}
