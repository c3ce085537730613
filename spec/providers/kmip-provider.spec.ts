import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../src/core/logger';
import { createKmipProvider } from '../../src/providers/kmip/kmip-provider';
import type { HsmProfileConfig } from '../../src/providers/provider';
import { startPyKmip, type PyKmipServer } from '../support/pykmip';
import { kekProviderContract } from './kek-provider-contract';

const profile = (name: string, details: Record<string, string>): HsmProfileConfig => ({
  id: `p-${randomBytes(4).toString('hex')}`, name, protocol: 'kmip', details,
});

let server: PyKmipServer;
beforeAll(async () => {
  server = await startPyKmip();
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

kekProviderContract('kmip (PyKMIP)', async () => {
  const provider = createKmipProvider({ logger: silentLogger });
  return {
    provider,
    profile: profile('kmip-a', server.details()),
    otherProfile: profile('kmip-b', server.details({ max_connections: '2', batch_items: '7' }, { paths: true })),
    teardown: () => provider.close(),
  };
});
