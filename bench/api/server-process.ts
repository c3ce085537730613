/**
 * One server process for bench/api.ts: `kms` (our server on a bench world: SQLite or DATABASE_URL,
 * 10 KMS keys, volumes with finished jobs) or `bare` (an Express handler answering a fixed JSON).
 * Prints one JSON line {url, opsUrl, volumeId, keyId, zoneId} on stdout when ready, then serves until killed.
 */
import express from 'express';
import type { AddressInfo } from 'node:net';
import { createOpsServer } from '../../src/api/ops-routes';
import { call, startBenchWorld, waitJob } from '../world';

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === 'bare') {
    const app = express();
    const body = JSON.stringify({ listkmskeysresponse: { count: 0 } });
    app.get('/client/api', (_req, res) => { res.type('application/json').send(body); });
    const s = app.listen(0, '127.0.0.1', () => {
      process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${(s.address() as AddressInfo).port}` })}\n`);
    });
    return;
  }
  const w = await startBenchWorld('database');
  const zoneId = (await call(w.client, { command: 'listZones' })).zone[0].id;
  const profileId = (await call(w.client, { command: 'listHSMProfiles', name: 'default', listall: true })).hsmprofile[0].id;
  for (let i = 0; i < 9; i++) await call(w.client, { command: 'createKMSKey', name: `k${i}`, zoneid: zoneId, hsmprofileid: profileId });
  const v = await call(w.client, { command: 'createVolume', name: 'bench', zoneid: zoneId, kmskeyid: w.keyUuid });
  await waitJob(w.client, v.jobid);
  // The ops endpoints on a port of their own, as KMS_OPS_PORT serves them (bench/metrics-flood.ts).
  const ops = createOpsServer(w.app).listen(0, '127.0.0.1');
  await new Promise((resolve) => ops.once('listening', resolve));
  const opsUrl = `http://127.0.0.1:${(ops.address() as AddressInfo).port}`;
  process.stdout.write(`${JSON.stringify({ url: w.client.baseUrl, opsUrl, volumeId: v.id, keyId: w.keyUuid, zoneId })}\n`);
}

process.on('SIGTERM', () => process.exit(0));
void main();
