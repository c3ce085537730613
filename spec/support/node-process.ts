import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

/** One parsed log line of a server process (pino JSON). */
export type LogLine = Record<string, any> & { level: string; msg: string };

/**
 * A server process started as production starts it: `node dist/main.js` or `node
 * dist/worker-main.js` (or any command), with only the environment given. Keeps its output.
 */
export class NodeProcess {
  readonly stderr: string[] = [];
  readonly stdout: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly proc: ChildProcess) {
    proc.stderr!.on('data', (b: Buffer) => this.stderr.push(b.toString()));
    proc.stdout!.on('data', (b: Buffer) => this.stdout.push(b.toString()));
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Spawns `command args` in the project root with PATH and `env` only. */
  static spawn(command: string, args: string[], env: Record<string, string>): NodeProcess {
    return new NodeProcess(spawn(command, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** `node <script>` with `env`. */
  static node(script: string, env: Record<string, string>): NodeProcess {
    return NodeProcess.spawn(process.execPath, [script], env);
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Every complete JSON log line so far. */
  lines(): LogLine[] {
    return this.stderr.join('').split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
      try { return [JSON.parse(l) as LogLine]; } catch { return []; }
    });
  }

  /** Waits for a log line whose msg is `msg`; fails if the process exits first. */
  async waitForLine(msg: string, timeoutMs = 60_000): Promise<LogLine> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const line = this.lines().find((l) => l.msg === msg);
      if (line) return line;
      if (!this.running) throw new Error(`process exited before "${msg}": ${this.stderr.join('')}`);
      if (Date.now() > end) throw new Error(`no "${msg}" within ${timeoutMs} ms: ${this.stderr.join('')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The port in the `url` field of a "... listening" line. */
  async portOf(msg: string, timeoutMs?: number): Promise<number> {
    return Number(new URL((await this.waitForLine(msg, timeoutMs)).url).port);
  }

  /** Sends a signal and waits for the exit. */
  async signal(sig: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.proc.kill(sig);
    return this.exited;
  }

  async kill(): Promise<void> {
    if (this.running) await this.signal('SIGKILL');
  }
}
