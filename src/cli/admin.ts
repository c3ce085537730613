import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createApp } from '../app';
import { readEnv, type Env } from '../config/env';
import { readMasterKeyMaterial, writeMasterKeyFile } from '../config/master-key';
import { openDb, type Db } from '../db/knex';
import { silentLogger } from '../core/logger';
import { ROTATION_JOB, beginRotation, countNotOn } from '../kms/master-key-rotation';
import { MasterKeySeal } from '../kms/master-key-seal';
import { heldBy, isKeyOf, listVersions, liveNodes } from '../kms/master-key-versions';

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
  discard-pending-master-key     drop a Pending version (a wrong KMS_MASTER_KEY_NEXT) before any rotation uses it`;

type Print = (line: string) => void;

export async function runAdmin(args: readonly string[], env: Env = readEnv(), print: Print = (l) => process.stdout.write(`${l}\n`)): Promise<void> {
  switch (args[0]) {
    case 'rotate-master-key': return rotate(env, print, !args.includes('--no-wait'));
    case 'seal-master-key': return withDb(env, (db) => seal(db, env, print));
    case 'unseal-master-key': return withDb(env, (db) => unseal(db, env, print));
    case 'master-key-status': return withDb(env, (db) => status(db, env, print));
    case 'discard-pending-master-key': return withDb(env, (db) => discardPending(db, print));
    default: throw new Error(USAGE);
  }
}

async function withDb(env: Env, fn: (db: Db) => Promise<void>): Promise<void> {
  const db = await openDb({ databaseUrl: env.databaseUrl, dataDir: env.dataDir });
  try {
    await fn(db);
  } finally {
    await db.destroy();
  }
}

async function rotate(env: Env, print: Print, wait: boolean): Promise<void> {
  const { app } = await createApp({ ...env, role: 'api' }, { logger: silentLogger, announce: false });
  try {
    const admin = await app.db('user as u').join('account as a', 'a.id', 'u.account_id').join('domain as d', 'd.id', 'a.domain_id')
      .where({ 'u.username': 'admin', 'd.path': '/' }).whereNull('u.removed').first('u.id');
    const caller = admin && (await app.directory.loadCaller(admin.id));
    if (!caller) throw new Error('The ROOT admin user is missing or disabled; the rotation job runs as that user');
    const { from, to } = await beginRotation(app.db, app.masterKeys);
    const { jobId } = await app.jobs.submit({
      cmd: 'rotateMasterKey', kind: ROTATION_JOB, caller, args: { fromVersion: from, toVersion: to }, instanceType: 'MasterKey', instanceId: String(to),
    });
    print(`rotating the master key from version ${from} to ${to}: job ${jobId} (queryAsyncJobResult jobid=${jobId})`);
    if (!wait) return;
    let shown = -1;
    for (;;) {
      const job = await app.db('async_job').where({ uuid: jobId }).first('status', 'process_status', 'result');
      if (Number(job.status) !== 0) {
        if (Number(job.status) !== 1) throw new Error(`the rotation job failed: ${job.result}`);
        print(`done: every value is on version ${to}; older versions are retired. Replace KMS_MASTER_KEY with the new key and drop KMS_MASTER_KEY_NEXT on every node at their next restart.`);
        return;
      }
      if (Number(job.process_status) !== shown) print(`  ${(shown = Number(job.process_status))}%`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await app.close();
  }
}

async function seal(db: Db, env: Env, print: Print): Promise<void> {
  if (!env.masterKeySeal) throw new Error('Set KMS_MASTER_KEY_SEAL_LIBRARY, _TOKEN_LABEL, _KEY_LABEL and _PIN_FILE to the token that will seal the master key');
  const live = (await listVersions(db)).filter((r) => r.state !== 'Retired');
  if (!live.length) throw new Error('This database has no master key yet: start the server once, or start it sealed to make a sealed key');
  if (live.every((r) => r.sealed_key)) {
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
      await db('kms_master_key_versions').where({ version: r.version }).update({ sealed_key: blob.toString('base64'), seal_key_label: hsm.keyLabel });
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

async function unseal(db: Db, env: Env, print: Print): Promise<void> {
  if (!env.masterKeySeal) throw new Error('Set KMS_MASTER_KEY_SEAL_* to the token that seals the master key');
  const live = (await listVersions(db)).filter((r) => r.state !== 'Retired' && r.sealed_key);
  if (!live.length) {
    print('the master key is not sealed');
    return;
  }
  if (existsSync(env.masterKeyFile)) throw new Error(`${env.masterKeyFile} exists; move it away first (KMS_MASTER_KEY_FILE names where the key is written)`);
  const hsm = MasterKeySeal.open(env.masterKeySeal);
  const keys: Buffer[] = [];
  try {
    for (const r of live) {
      const raw = hsm.unwrap(Buffer.from(r.sealed_key!, 'base64'));
      keys.push(raw);
      if (!isKeyOf(r, raw)) throw new Error(`The sealed master key version ${r.version} does not match its check value; nothing was unsealed`);
    }
    writeMasterKeyFile(env.masterKeyFile, keys);
  } finally {
    hsm.close();
    for (const k of keys) k.fill(0);
  }
  await db('kms_master_key_versions').whereIn('version', live.map((r) => r.version)).update({ sealed_key: null, seal_key_label: null });
  print(`wrote master key version ${live.map((r) => r.version).join(', ')} to ${env.masterKeyFile} (mode 0600) and removed the seal`);
  print('Next: on every node unset KMS_MASTER_KEY_SEAL_*, give it this file (or its key in KMS_MASTER_KEY) and restart it.');
}

async function discardPending(db: Db, print: Print): Promise<void> {
  const pending = (await listVersions(db)).filter((r) => r.state === 'Pending').map((r) => r.version);
  if (!pending.length) {
    print('there is no pending master key version');
    return;
  }
  await db('kms_master_key_versions').whereIn('version', pending).where({ state: 'Pending' }).delete();
  print(`discarded pending master key version ${pending.join(', ')}; nodes drop it at their next heartbeat. Give every node the right KMS_MASTER_KEY_NEXT and restart them.`);
}

async function status(db: Db, env: Env, print: Print): Promise<void> {
  const rows = await listVersions(db);
  const active = rows.find((r) => r.state === 'Active');
  const left = active ? await countNotOn(db, active.version) : {};
  for (const r of rows) print(`version ${r.version}: ${r.state}${r.sealed_key ? ', sealed' : ''}`);
  if (active) print(`values not yet on version ${active.version}: ${JSON.stringify(left)}`);
  for (const n of await liveNodes(db, env.nodeStaleMs)) print(`node ${n.role} ${n.host} pid ${n.pid}: holds ${heldBy(n).join(', ')}, writes ${n.write_version}`);
}

if (require.main === module) {
  runAdmin(process.argv.slice(2)).then(() => process.exit(0), (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
