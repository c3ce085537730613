/**
 * A private PyKMIP server (Debian python3-pykmip) for tests: a fresh CA, server and client
 * certificates made with openssl, a config, its own SQLite database, a free port. `stop()` kills it
 * and deletes the files; `kill()`/`start()` let a test restart it mid-work (the database survives).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PyKMIP's server script; its shebang names Debian's python3, which has the module. */
export const PYKMIP_SERVER = process.env.PYKMIP_SERVER ?? '/usr/bin/pykmip-server';
const PYTHON = process.env.PYKMIP_PYTHON ?? '/usr/bin/python3';

/** PEM files of one certificate and its key. */
export interface Credentials { certPath: string; keyPath: string; cert: string; key: string }

export interface PyKmipServer {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** The CA that signed the server's and the client's certificates. */
  readonly caPath: string;
  readonly ca: string;
  readonly client: Credentials;
  /** Profile details that reach this server (PEM text; `paths: true` gives file paths). */
  details(extra?: Record<string, string>, opts?: { paths?: boolean }): Record<string, string>;
  /** Makes another client certificate signed by `ca` (another CA's when `foreign`), with clientAuth unless `noClientAuth`. */
  makeClient(name: string, opts?: { foreign?: boolean; noClientAuth?: boolean }): Credentials;
  /** SIGKILLs the server (its database stays). */
  kill(): Promise<void>;
  /** Starts it again on the same port and waits until it accepts connections. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** A port nobody listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function makeCa(dir: string, name: string): { crt: string; key: string } {
  const key = join(dir, `${name}.key`);
  const crt = join(dir, `${name}.crt`);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '2', '-subj', `/CN=${name}`], dir);
  return { crt, key };
}

function makeLeaf(dir: string, ca: { crt: string; key: string }, name: string, ext: string): Credentials {
  const keyPath = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const certPath = join(dir, `${name}.crt`);
  const extPath = join(dir, `${name}.ext`);
  writeFileSync(extPath, ext);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', csr, '-subj', `/CN=${name}`], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.crt, '-CAkey', ca.key, '-CAcreateserial', '-out', certPath, '-days', '2', '-extfile', extPath], dir);
  return { certPath, keyPath, cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
}

/** Generates certificates and starts a PyKMIP server on a free port; resolves once it accepts connections. */
export async function startPyKmip(): Promise<PyKmipServer> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-pykmip-'));
  const ca = makeCa(dir, 'ca');
  const server = makeLeaf(dir, ca, 'server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  const client = makeLeaf(dir, ca, 'kms-client', 'extendedKeyUsage=clientAuth\n');
  mkdirSync(join(dir, 'policies'));
  const port = await freePort();
  const conf = join(dir, 'server.conf');
  writeFileSync(conf, [
    '[server]', 'hostname=127.0.0.1', `port=${port}`, `certificate_path=${server.certPath}`, `key_path=${server.keyPath}`,
    `ca_path=${ca.crt}`, 'auth_suite=TLS1.2', `policy_path=${join(dir, 'policies')}`, 'enable_tls_client_auth=True',
    `database_path=${join(dir, 'pykmip.db')}`, '',
  ].join('\n'));
  let child: ChildProcess | undefined;
  const log = join(dir, 'server.log');

  const start = async (): Promise<void> => {
    // Its own process group: PyKMIP forks a process per client connection, and kill() takes them all.
    const proc = spawn(PYTHON, [PYKMIP_SERVER, '-f', conf, '-l', log], { stdio: 'ignore', detached: true });
    child = proc;
    let exited: number | null | undefined;
    proc.once('exit', (code) => { exited = code; });
    const deadline = Date.now() + 30_000;
    while (!(await listening(port))) {
      if (exited !== undefined) throw new Error(`pykmip-server exited with ${exited}; see ${log}`);
      if (Date.now() > deadline) throw new Error(`pykmip-server did not listen on ${port} within 30s; see ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      try { process.kill(-proc.pid!, 'SIGKILL'); } catch { proc.kill('SIGKILL'); }
    });
  };
  await start();
  const caPem = readFileSync(ca.crt, 'utf8');
  const foreignCa = (() => {
    let made: { crt: string; key: string } | undefined;
    return () => (made ??= makeCa(dir, 'foreign-ca'));
  })();
  return {
    host: '127.0.0.1', port, dir, caPath: ca.crt, ca: caPem, client,
    details: (extra = {}, opts = {}) => ({
      host: '127.0.0.1', port: String(port),
      ca: opts.paths ? ca.crt : caPem,
      client_certificate: opts.paths ? client.certPath : client.cert,
      private_key: opts.paths ? client.keyPath : client.key,
      ...extra,
    }),
    makeClient: (name, opts = {}) => makeLeaf(dir, opts.foreign ? foreignCa() : ca, name, opts.noClientAuth ? 'extendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n'),
    kill,
    start,
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TLS server that completes handshakes and reads requests but never answers. */
export interface HungServer {
  readonly port: number;
  /** Resolves once `n` connections to it have been closed (by the client abandoning them). */
  closed(n: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A fault double for a hung KMIP appliance (the real PyKMIP cannot be made to hang): it presents
 * `real`'s server certificate, accepts the client's, reads requests and never replies.
 */
export async function startHungTlsServer(real: PyKmipServer): Promise<HungServer> {
  let closed = 0;
  const waiters: Array<() => void> = [];
  const sockets = new Set<TLSSocket>();
  const srv = createTlsServer({
    cert: readFileSync(join(real.dir, 'server.crt')), key: readFileSync(join(real.dir, 'server.key')), ca: real.ca, requestCert: true,
  }, (socket) => {
    sockets.add(socket);
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      closed++;
      waiters.splice(0).forEach((w) => w());
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as { port: number }).port,
    closed: async (n) => {
      while (closed < n) await new Promise<void>((r) => waiters.push(r));
    },
    stop: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      srv.close(() => r());
    }),
  };
}
