import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createApp } from '../app';
import { readEnv, type Env } from '../config/env';
import { readMasterKeyMaterial, writeMasterKeyFile } from '../config/master-key';
import type { Repositories } from '../db/repositories';
import { openRepositories } from '../db/repositories/open';
import { JobStatus } from '../jobs/types';
import { silentLogger } from '../core/logger';
import { hashPassword } from '../identity/password';
import { ROTATION_JOB, beginRotation, countNotOn } from '../kms/master-key-rotation';
import { MasterKeySeal } from '../kms/master-key-seal';
import { heldBy, isKeyOf, listVersions, liveNodes, type MasterKeyVersion } from '../kms/master-key-versions';
import { openDb } from '../db/knex';
import { migrationNames } from '../db/migrations';
import { BackupRefused, inspectDeployment, readBackup, restoreBackup, writeBackup, type BackupMasterKeyVersion, type ParsedBackup } from '../db/backup';
import { KeyVerifier, type VerifyFailure } from '../kms/verify-keys';

/**
 * `npm run admin -- <command>`: master-key administration on the database of the environment
 * (same variables as the server). Each command prints what it did and what to do next; it never
 * prints a key. Exit code 0 on success, 1 with one line on stderr otherwise.
 */
const USAGE = `usage: npm run admin -- <command>
  rotate-master-key [--no-wait]  start an online rotation to the new master key and follow its job
  seal-master-key                store the master key only wrapped by the HSM (KMS_MASTER_KEY_SEAL_*)
  unseal-master-key              write the master key back to KMS_MASTER_KEY_FILE and drop the seal
  master-key-status              list the master key versions and the nodes holding them
  discard-pending-master-key     drop a Pending version (a wrong KMS_MASTER_KEY_NEXT) before any rotation uses it
  backup FILE                    write a consistent snapshot of the database to FILE (no master key, no HSM content)
  restore FILE                   load a backup into the (new, empty) database of DATABASE_URL / KMS_DATA_DIR; needs the backup's master key
  verify-keys [--key ID] [--profile ID] [--zone ID] [--rate N] [--batch N]
                                 open every wrapped DEK, legacy passphrase and master-key value; list those that fail; exit 1 if any
  purge-archived-keks [--key ID] destroy now the KEKs of Archived versions (no DEK under them) instead of after kms.kek.destroy.delay.days
  set-admin-password             set the password of user admin (ROOT domain) to KMS_ADMIN_PASSWORD`;

type Print = (line: string) => void;

export async function runAdmin(args: readonly string[], env: Env = readEnv(), print: Print = (l) => process.stdout.write(`${l}\n`)): Promise<void> {
  switch (args[0]) {
    case 'rotate-master-key': return rotate(env, print, !args.includes('--no-wait'));
    case 'seal-master-key': return withRepos(env, (repos) => seal(repos, env, print));
    case 'unseal-master-key': return withRepos(env, (repos) => unseal(repos, env, print));
    case 'master-key-status': return withRepos(env, (repos) => status(repos, env, print));
    case 'discard-pending-master-key': return withRepos(env, (repos) => discardPending(repos, print));
    case 'backup': return backup(env, fileArg(args), print);
    case 'restore': return restore(env, fileArg(args), print);
    case 'verify-keys': return verifyKeys(env, args.slice(1), print);
    case 'purge-archived-keks': return purgeArchived(env, args.slice(1), print);
    case 'set-admin-password': return withRepos(env, (repos) => setAdminPassword(repos, env, print));
    default: throw new Error(USAGE);
  }
}

const fileArg = (args: readonly string[]): string => {
  if (!args[1] || args[1].startsWith('--')) throw new Error(`${args[0]} needs a file name: npm run admin -- ${args[0]} FILE`);
  return args[1];
};

/** `--name value` options; anything else is refused with the usage. */
function options(args: readonly string[], allowed: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i]!.replace(/^--/, '');
    if (!args[i]!.startsWith('--') || !allowed.includes(name) || args[i + 1] === undefined) throw new Error(`unknown or incomplete option ${args[i]}\n${USAGE}`);
    out[name] = args[i + 1]!;
  }
  return out;
}

const positiveInt = (v: string | undefined, name: string, dflt: number): number => {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a whole number (got ${v})`);
  return Number(v);
};

async function backup(env: Env, file: string, print: Print): Promise<void> {
  const db = await openDb({ databaseUrl: env.databaseUrl, dataDir: env.dataDir });
  try {
    const { rows } = await writeBackup(db, file);
    const total = Object.values(rows).reduce((a, b) => a + b, 0);
    print(`wrote ${file}: ${total} rows of ${Object.keys(rows).length} tables (${rows.kms_wrapped_key ?? 0} wrapped keys, ${rows.volumes ?? 0} volumes)`);
    print('It holds no master key and no HSM content: keep the master key (or its sealing token) and the HSM tokens backed up separately, as the README says.');
  } finally {
    await db.destroy();
  }
}

/** The master keys given to this process (KMS_MASTER_KEY, its file, or the seal) must open every live version of the backup. */
function checkMasterKey(env: Env, versions: readonly BackupMasterKeyVersion[]): void {
  const live = versions.filter((v) => v.state !== 'Retired');
  if (!live.length) return;
  const rows = live.map((v): MasterKeyVersion => ({ version: v.version, state: v.state as MasterKeyVersion['state'], checkValue: v.checkValue, sealedKey: v.sealedKey, sealKeyLabel: null, created: new Date(0), activated: null, retired: null }));
  const keys: Buffer[] = [];
  try {
    if (live.some((v) => v.sealedKey)) {
      if (!env.masterKeySeal) throw new BackupRefused('The backup\'s master key is sealed by an HSM: set KMS_MASTER_KEY_SEAL_* to the token that seals it');
      const seal = MasterKeySeal.open(env.masterKeySeal);
      try {
        for (const r of rows) if (r.sealedKey) keys.push(seal.unwrap(Buffer.from(r.sealedKey, 'base64')));
      } catch {
        throw new BackupRefused('The sealing token cannot open the backup\'s master key: the backup belongs to another master key or another token');
      } finally {
        seal.close();
      }
    } else {
      if (!env.masterKey && !existsSync(env.masterKeyFile)) {
        throw new BackupRefused(`No master key given: set KMS_MASTER_KEY (or KMS_MASTER_KEY_FILE; ${env.masterKeyFile} does not exist) to the master key the backup was made under`);
      }
      keys.push(...readMasterKeyMaterial({ fromEnv: env.masterKey, file: env.masterKeyFile, next: env.masterKeyNext }).keys);
    }
    for (const r of rows) {
      if (!keys.some((k) => isKeyOf(r, k))) {
        throw new BackupRefused(`The backup belongs to another master key: no key given to this process is its master key version ${r.version} (its check value does not open); restore with the master key the backup was made under`);
      }
    }
  } finally {
    for (const k of keys) k.fill(0);
  }
}

/**
 * The master key versions of a backup, from its kms_master_key_versions rows (what the restore
 * writes), which must say the same as its header; none live while it holds a deployment is refused.
 */
export function backupMasterKeyVersions(parsed: ParsedBackup): BackupMasterKeyVersion[] {
  const rows = (parsed.rows.get('kms_master_key_versions') ?? []).map((r): BackupMasterKeyVersion => ({
    version: Number(r.version), state: String(r.state), checkValue: String(r.check_value), sealedKey: (r.sealed_key as string | null | undefined) ?? null,
  })).sort((a, b) => a.version - b.version);
  const key = (v: BackupMasterKeyVersion): string => JSON.stringify([v.version, v.state, v.checkValue, v.sealedKey]);
  const header = [...parsed.header.masterKey].sort((a, b) => a.version - b.version);
  if (rows.length !== header.length || rows.some((r, i) => key(r) !== key(header[i]!))) {
    throw new BackupRefused('The backup is refused: the master key versions of its header differ from those of its rows (the file was made by hand or altered)');
  }
  const deployment = ['kms_keys', 'kms_wrapped_key', 'passphrase', 'user', 'kms_hsm_profiles'].some((t) => (parsed.rows.get(t)?.length ?? 0) > 0);
  if (deployment && !rows.some((r) => r.state !== 'Retired')) {
    throw new BackupRefused('The backup is refused: it holds protected values but no live master key version to check the given key against');
  }
  return rows;
}

async function restore(env: Env, file: string, print: Print): Promise<void> {
  const parsed = await readBackup(file);
  checkMasterKey(env, backupMasterKeyVersions(parsed));
  const rows = await restoreBackup({ databaseUrl: env.databaseUrl, dataDir: env.dataDir }, parsed);
  print(`restored ${parsed.count} rows of ${Object.keys(rows).length} tables from ${file} (made ${parsed.header.created}); ${rows.kms_wrapped_key ?? 0} wrapped keys, ${rows.volumes ?? 0} volumes`);
  print('Next: start the nodes with the same master key and HSM tokens, then run npm run admin -- verify-keys.');
}

const describeFailure = (f: VerifyFailure): string => {
  const vol = f.volumeUuid ? `volume ${f.volumeName ?? '?'} (${f.volumeUuid})` : undefined;
  const key = f.keyUuid ? `KMS key ${f.keyUuid} v${f.keyVersion}` : undefined;
  return `FAILED ${f.what}: ${[vol, key, f.item].filter(Boolean).join(', ')}: ${f.reason}`;
};

/**
 * verify-keys and purge-archived-keks run only against an existing deployment at this server's
 * schema, with a master key given: a mistyped DATABASE_URL / KMS_DATA_DIR must not create a
 * database, migrate one, bootstrap ROOT/admin or generate a master key file.
 */
async function requireDeployment(env: Env, command: string): Promise<void> {
  const where = env.databaseUrl ? `DATABASE_URL (${new URL(env.databaseUrl).pathname.slice(1) || 'kms'} on ${new URL(env.databaseUrl).host})` : `KMS_DATA_DIR (${env.dataDir})`;
  const found = await inspectDeployment({ databaseUrl: env.databaseUrl, dataDir: env.dataDir });
  if (!found.exists) throw new Error(`${command}: there is no database at ${where}; set it to the deployment's`);
  const done = new Set(found.migrations);
  const known = migrationNames();
  const foreign = found.migrations.find((m) => !known.includes(m));
  if (foreign) throw new Error(`${command}: the database at ${where} has schema migration ${foreign}, which this version does not know; run the version of its nodes`);
  const missing = known.find((m) => !done.has(m));
  if (missing) throw new Error(`${command}: the database at ${where} is not at this version's schema (migration ${missing} has not run); start a node of this version on it first, or check ${env.databaseUrl ? 'DATABASE_URL' : 'KMS_DATA_DIR'}`);
  if (!found.liveMasterKeyVersions) throw new Error(`${command}: the database at ${where} holds no deployment (no master key version); check ${env.databaseUrl ? 'DATABASE_URL' : 'KMS_DATA_DIR'}`);
  if (!env.masterKey && !env.masterKeySeal && !existsSync(env.masterKeyFile)) {
    throw new Error(`${command}: no master key given: set KMS_MASTER_KEY, KMS_MASTER_KEY_FILE (${env.masterKeyFile} does not exist) or KMS_MASTER_KEY_SEAL_*`);
  }
}

async function verifyKeys(env: Env, args: readonly string[], print: Print): Promise<void> {
  const o = options(args, ['key', 'profile', 'zone', 'rate', 'batch']);
  await requireDeployment(env, 'verify-keys');
  const { app } = await createApp({ ...env, role: 'api' }, { logger: silentLogger, announce: false });
  try {
    let shown = 0;
    const report = await new KeyVerifier(app).run({
      keyUuid: o.key, profileUuid: o.profile, zoneUuid: o.zone, ratePerSec: positiveInt(o.rate, 'rate', 2000), batchSize: Math.max(1, positiveInt(o.batch, 'batch', 250)),
      progress: (p) => {
        if (Date.now() - shown < 2000 && p.checked < p.total) return;
        shown = Date.now();
        print(`checked ${p.checked}/${p.total} (${p.total ? Math.floor((p.checked * 100) / p.total) : 100}%), ${p.failed} failed`);
      },
    });
    for (const f of report.failures) print(describeFailure(f));
    const checked = report.deks + report.passphrases + report.masterKeyValues;
    print(`verified ${report.deks} wrapped DEKs, ${report.passphrases} legacy passphrases, ${report.masterKeyValues} master-key values: ${report.failures.length} failed`);
    if (report.standbyDeks || report.standbyMissing) print(`standby wraps: ${report.standbyDeks} verified, ${report.standbyMissing} not made yet (the background standby fill makes them)`);
    if (report.failures.length) throw new Error(`${report.failures.length} of ${checked} secrets cannot be opened (listed above)`);
    if (!checked) throw new Error('verify-keys found no secret to check: is DATABASE_URL / KMS_DATA_DIR (and --key/--profile/--zone) that of the deployment?');
  } finally {
    await app.close();
  }
}

async function purgeArchived(env: Env, args: readonly string[], print: Print): Promise<void> {
  const o = options(args, ['key']);
  await requireDeployment(env, 'purge-archived-keks');
  const { app } = await createApp({ ...env, role: 'api' }, { logger: silentLogger, announce: false });
  try {
    let keyId: number | undefined;
    if (o.key !== undefined) {
      const key = await app.repos.kmsKeys.byUuid(o.key);
      if (!key) throw new Error(`KMS key ${o.key} not found`);
      keyId = key.id;
    }
    const { destroyed, kept } = await app.kms.rewrap.purgeArchived(keyId);
    for (const d of destroyed) print(`destroyed the KEK of KMS key ${d.keyUuid} v${d.version}`);
    for (const k of kept) print(`kept KMS key ${k.keyUuid} v${k.version}: ${k.wrappedKeys} wrapped key(s) are under it (the background rewrap moves them first) or its backend refused (see listEvents)`);
    if (!destroyed.length && !kept.length) print('no Archived KEK version is waiting for destruction');
  } finally {
    await app.close();
  }
}

async function withRepos(env: Env, fn: (repos: Repositories) => Promise<void>): Promise<void> {
  const { repos, close } = await openRepositories({ databaseUrl: env.databaseUrl, dataDir: env.dataDir });
  try {
    await fn(repos);
  } finally {
    await close();
  }
}

async function rotate(env: Env, print: Print, wait: boolean): Promise<void> {
  const { app } = await createApp({ ...env, role: 'api' }, { logger: silentLogger, announce: false });
  try {
    const root = await app.repos.domains.byPath('/');
    const admin = root && (await app.repos.users.forLogin('admin', root.id));
    const caller = admin && (await app.directory.loadCaller(admin.id));
    if (!caller) throw new Error('The ROOT admin user is missing or disabled; the rotation job runs as that user');
    const { from, to } = await beginRotation(app.repos, app.masterKeys);
    const { jobId } = await app.jobs.submit({
      cmd: 'rotateMasterKey', kind: ROTATION_JOB, caller, args: { fromVersion: from, toVersion: to }, instanceType: 'MasterKey', instanceId: String(to),
    });
    print(`rotating the master key from version ${from} to ${to}: job ${jobId} (queryAsyncJobResult jobid=${jobId})`);
    if (!wait) return;
    let shown = -1;
    for (;;) {
      const job = (await app.repos.jobs.view(jobId))!; // written by submit above
      if (job.status !== JobStatus.InProgress) {
        if (job.status !== JobStatus.Succeeded) throw new Error(`the rotation job failed: ${job.result}`);
        print(`done: every value is on version ${to}; older versions are retired. Replace KMS_MASTER_KEY with the new key and drop KMS_MASTER_KEY_NEXT on every node at their next restart.`);
        return;
      }
      if (job.processStatus !== shown) print(`  ${(shown = job.processStatus)}%`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await app.close();
  }
}

async function seal(repos: Repositories, env: Env, print: Print): Promise<void> {
  if (!env.masterKeySeal) throw new Error('Set KMS_MASTER_KEY_SEAL_LIBRARY, _TOKEN_LABEL, _KEY_LABEL and _PIN_FILE to the token that will seal the master key');
  const live = (await listVersions(repos)).filter((r) => r.state !== 'Retired');
  if (!live.length) throw new Error('This database has no master key yet: start the server once, or start it sealed to make a sealed key');
  if (live.every((r) => r.sealedKey)) {
    print('the master key is already sealed');
    return;
  }
  const fromFile = !env.masterKey;
  if (fromFile && !existsSync(env.masterKeyFile)) throw new Error(`No master key to seal: set KMS_MASTER_KEY or KMS_MASTER_KEY_FILE (${env.masterKeyFile} does not exist)`);
  const { keys } = readMasterKeyMaterial({ fromEnv: env.masterKey, file: env.masterKeyFile, next: env.masterKeyNext });
  let hsm: MasterKeySeal;
  try {
    hsm = MasterKeySeal.open(env.masterKeySeal);
  } catch (e) {
    for (const k of keys) k.fill(0);
    throw e;
  }
  try {
    if (hsm.ensureKek()) print(`created the key '${hsm.keyLabel}' in the token`);
    for (const r of live) {
      const raw = keys.find((k) => isKeyOf(r, k));
      if (!raw) throw new Error(`The key of master key version ${r.version} is not among KMS_MASTER_KEY, KMS_MASTER_KEY_NEXT or ${env.masterKeyFile}`);
      const blob = hsm.wrap(raw);
      const back = hsm.unwrap(blob);
      const same = back.equals(raw);
      back.fill(0);
      if (!same) throw new Error(`The token did not give master key version ${r.version} back unchanged; nothing was sealed`);
      await repos.masterKeyVersions.seal(r.version, blob.toString('base64'), hsm.keyLabel);
      print(`sealed master key version ${r.version} (${r.state})`);
    }
  } finally {
    hsm.close();
    for (const k of keys) k.fill(0);
  }
  if (fromFile) {
    writeFileSync(env.masterKeyFile, Buffer.alloc(readFileSync(env.masterKeyFile).length)); // overwrite, then remove
    rmSync(env.masterKeyFile);
    print(`removed ${env.masterKeyFile}`);
  }
  print('Next: on every node remove KMS_MASTER_KEY, KMS_MASTER_KEY_NEXT and any master.key file, set KMS_MASTER_KEY_SEAL_* and restart it.');
}

async function unseal(repos: Repositories, env: Env, print: Print): Promise<void> {
  if (!env.masterKeySeal) throw new Error('Set KMS_MASTER_KEY_SEAL_* to the token that seals the master key');
  const live = (await listVersions(repos)).filter((r) => r.state !== 'Retired' && r.sealedKey);
  if (!live.length) {
    print('the master key is not sealed');
    return;
  }
  if (existsSync(env.masterKeyFile)) throw new Error(`${env.masterKeyFile} exists; move it away first (KMS_MASTER_KEY_FILE names where the key is written)`);
  const hsm = MasterKeySeal.open(env.masterKeySeal);
  const keys: Buffer[] = [];
  try {
    for (const r of live) {
      const raw = hsm.unwrap(Buffer.from(r.sealedKey!, 'base64'));
      keys.push(raw);
      if (!isKeyOf(r, raw)) throw new Error(`The sealed master key version ${r.version} does not match its check value; nothing was unsealed`);
    }
    writeMasterKeyFile(env.masterKeyFile, keys);
  } finally {
    hsm.close();
    for (const k of keys) k.fill(0);
  }
  await repos.masterKeyVersions.unseal(live.map((r) => r.version));
  print(`wrote master key version ${live.map((r) => r.version).join(', ')} to ${env.masterKeyFile} (mode 0600) and removed the seal`);
  print('Next: on every node unset KMS_MASTER_KEY_SEAL_*, give it this file (or its key in KMS_MASTER_KEY) and restart it.');
}

async function discardPending(repos: Repositories, print: Print): Promise<void> {
  const pending = (await listVersions(repos)).filter((r) => r.state === 'Pending').map((r) => r.version);
  if (!pending.length) {
    print('there is no pending master key version');
    return;
  }
  await repos.masterKeyVersions.discardPending(pending);
  print(`discarded pending master key version ${pending.join(', ')}; nodes drop it at their next heartbeat. Give every node the right KMS_MASTER_KEY_NEXT and restart them.`);
}

async function status(repos: Repositories, env: Env, print: Print): Promise<void> {
  const rows = await listVersions(repos);
  const active = rows.find((r) => r.state === 'Active');
  const left = active ? await countNotOn(repos, active.version) : {};
  for (const r of rows) print(`version ${r.version}: ${r.state}${r.sealedKey ? ', sealed' : ''}`);
  if (active) print(`values not yet on version ${active.version}: ${JSON.stringify(left)}`);
  for (const n of await liveNodes(repos, env.nodeStaleMs)) print(`node ${n.role} ${n.host} pid ${n.pid}: holds ${heldBy(n).join(', ')}, writes ${n.writeVersion}`);
}

if (require.main === module) {
  runAdmin(process.argv.slice(2)).then(() => process.exit(0), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}

/** Sets user admin's password to KMS_ADMIN_PASSWORD (which otherwise only applies when admin is first created). */
async function setAdminPassword(repos: Repositories, env: Env, print: Print): Promise<void> {
  if (env.adminPassword === 'password') throw new Error('Set KMS_ADMIN_PASSWORD to the new password of user admin (not the default "password")');
  const root = await repos.domains.byPath('/');
  const admin = root && (await repos.users.forLogin('admin', root.id));
  if (!admin) throw new Error('There is no user admin in the ROOT domain');
  await repos.users.setPasswordHash(admin.id, await hashPassword(env.adminPassword));
  // Whoever logged in with the old (perhaps default) password loses that session on every node.
  await repos.sessions.deleteOfUser(admin.id);
  await repos.credentialVersion.bump();
  print('the password of user admin is now KMS_ADMIN_PASSWORD; its sessions are ended on every node; its API keys are unchanged (registerUserKeys replaces them)');
}
