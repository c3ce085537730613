import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { TestServer } from './server';

const SCRIPT = join(__dirname, 'test-worker.ts');

/** A `npm run worker`-like process (src/worker-main plus the test job kind) on the test server's database. */
export class WorkerProcess {
  readonly output: string[] = [];
  private constructor(readonly proc: ChildProcess) {
    proc.stderr!.on('data', (b: Buffer) => this.output.push(b.toString()));
    proc.stdout!.on('data', (b: Buffer) => this.output.push(b.toString()));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Starts a worker and waits until it says it started. */
  static async start(s: TestServer, env: Record<string, string>): Promise<WorkerProcess> {
    const proc = spawn(process.execPath, ['--import', 'tsx', SCRIPT], {
      cwd: join(__dirname, '..', '..'),
      env: {
        PATH: process.env.PATH ?? '',
        KMS_DATA_DIR: s.testDb.dataDir,
        KMS_MASTER_KEY: s.masterKey,
        ...(s.testDb.databaseUrl ? { DATABASE_URL: s.testDb.databaseUrl } : {}),
        KMS_ROLE: 'worker',
        KMS_LOG_LEVEL: 'info',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const w = new WorkerProcess(proc);
    const end = Date.now() + 30_000;
    while (!w.output.join('').includes('job worker started')) {
      if (proc.exitCode !== null) throw new Error(`worker exited with ${proc.exitCode}: ${w.output.join('')}`);
      if (Date.now() > end) throw new Error(`worker did not start: ${w.output.join('')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return w;
  }

  /** SIGKILL: the process dies at once, holding whatever leases it had. */
  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise<void>((resolve) => { this.proc.once('exit', () => resolve()); this.proc.kill('SIGKILL'); });
  }

  /** SIGTERM, then waits for the graceful exit. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise<void>((resolve) => { this.proc.once('exit', () => resolve()); this.proc.kill('SIGTERM'); });
  }
}
