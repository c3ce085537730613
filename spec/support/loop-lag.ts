import { existsSync, readFileSync } from 'node:fs';

/** What a lag monitor saw. */
export interface LoopLag {
  /** Worst delay of a 10 ms timer, as monitorEventLoopDelay would report it. */
  rawMaxMs: number;
  /** The same, less the time the loop's thread was runnable but waiting for a CPU (Linux schedstat). */
  netMaxMs: number;
}

const SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;

/** Run-queue wait of the main thread so far, in ns (0 where schedstat is missing). */
function runQueueWaitNs(): number {
  if (!existsSync(SCHEDSTAT)) return 0;
  return Number(readFileSync(SCHEDSTAT, 'utf8').split(' ')[1]);
}

/**
 * Measures the event loop's worst lag with a 10 ms timer. On a machine shared with other work the
 * kernel also leaves the loop's thread waiting for a CPU; that wait (read from the thread's
 * schedstat on Linux, where the process id names the main thread) is not the server's doing, so
 * `netMaxMs` subtracts it per interval. Both figures are returned.
 */
export function startLagMonitor(): { stop(): LoopLag } {
  const periodMs = 10;
  let last = performance.now();
  let lastWait = runQueueWaitNs();
  let rawMaxMs = 0;
  let netMaxMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    const wait = runQueueWaitNs();
    const lag = Math.max(0, now - last - periodMs);
    rawMaxMs = Math.max(rawMaxMs, lag);
    netMaxMs = Math.max(netMaxMs, Math.max(0, lag - (wait - lastWait) / 1e6));
    last = now;
    lastWait = wait;
  }, periodMs);
  return {
    stop() {
      clearInterval(timer);
      return { rawMaxMs, netMaxMs };
    },
  };
}
