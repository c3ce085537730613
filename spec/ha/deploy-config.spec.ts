/**
 * The HA deployment files (no Docker engine here to run them): HAProxy accepts its configuration
 * and checks /readyz on the port compose.yaml gives KMS_OPS_PORT; compose.yaml has 3 Galera
 * nodes, Redis with Sentinel, 2 API nodes and 2 workers, each API/worker node with a 3-host
 * DATABASE_URL and the sentinels, every one the same master key and queue prefix.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMysqlUrl } from '../../src/db/cluster';
import { redisTargetFromEnv } from '../../src/config/redis';

// js-yaml comes with jest's dependencies (no types of its own here).
// eslint-disable-next-line @typescript-eslint/no-var-requires
const yaml = require('js-yaml') as { load(s: string): any };
const ROOT = join(__dirname, '..', '..');

describe('deployment files', () => {
  const compose = yaml.load(readFileSync(join(ROOT, 'compose.yaml'), 'utf8'));
  const haproxy = readFileSync(join(ROOT, 'deploy', 'haproxy.cfg'), 'utf8');
  const env = (name: string): Record<string, string> => {
    const e = compose.services[name].environment as Record<string, string>;
    return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, String(v).replace(/\$\{[A-Z_]+:\?[^}]*\}/g, 'x')]));
  };

  it('HAProxy accepts deploy/haproxy.cfg, which checks /readyz on the ops port of every API node of compose.yaml', () => {
    const out = execFileSync('haproxy', ['-c', '-f', join(ROOT, 'deploy', 'haproxy.cfg')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toContain('Configuration file is valid');
    expect(haproxy).toMatch(/option httpchk GET \/readyz/);
    const port = /check port (\d+)/.exec(haproxy)![1];
    const servers = [...haproxy.matchAll(/^\s*server (\S+) (\S+):8080/gm)].map((m) => m[2]);
    expect(servers.sort()).toEqual(['api-1', 'api-2']);
    for (const s of servers) expect(env(s!).KMS_OPS_PORT).toBe(port);
  });

  it('compose.yaml: 3 Galera nodes, Redis + replica + 3 sentinels, 2 API nodes, 2 workers, each on every Galera host and the sentinels', () => {
    const names = Object.keys(compose.services);
    expect(names).toEqual(expect.arrayContaining(['galera-1', 'galera-2', 'galera-3', 'redis-1', 'redis-2', 'sentinel-1', 'sentinel-2', 'sentinel-3', 'api-1', 'api-2', 'worker-1', 'worker-2', 'haproxy']));
    const nodes = ['api-1', 'api-2', 'worker-1', 'worker-2'];
    const firsts = new Set<string>();
    for (const n of nodes) {
      const e = env(n);
      const url = parseMysqlUrl(e.DATABASE_URL!);
      expect(url.hosts.map((h) => h.host).sort()).toEqual(['galera-1', 'galera-2', 'galera-3']);
      firsts.add(url.hosts[0]!.host);
      const redis = redisTargetFromEnv(e);
      expect(redis).toMatchObject({ kind: 'sentinel', name: 'kms-redis' });
      expect(e.KMS_QUEUE_PREFIX).toBe('kms');
      expect(e.KMS_MASTER_KEY).toBeDefined();
    }
    expect(firsts.size).toBe(3); // the nodes spread their writes over the three Galera nodes
    expect(env('api-1').KMS_ROLE).toBe('api');
    expect(compose.services['worker-1'].command).toEqual(['node', 'dist/worker-main.js']);
  });

  it('DATABASE_URL with several hosts: parsed in order, first preferred; a bad one refused by name', () => {
    expect(parseMysqlUrl('mysql://u:p%40ss@h1:3306,h2:3307,h3/kms')).toEqual({
      user: 'u', password: 'p@ss', database: 'kms', hosts: [{ host: 'h1', port: 3306 }, { host: 'h2', port: 3307 }, { host: 'h3', port: 3306 }],
    });
    expect(() => parseMysqlUrl('postgres://h/kms')).toThrow('DATABASE_URL must start with mysql://');
    expect(() => redisTargetFromEnv({ REDIS_SENTINELS: 'a:1' })).toThrow('REDIS_SENTINELS needs REDIS_SENTINEL_NAME');
    expect(() => redisTargetFromEnv({ REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'm', REDIS_URL: 'redis://x' })).toThrow('not both');
    expect(() => redisTargetFromEnv({ REDIS_SENTINELS: 'a', REDIS_SENTINEL_NAME: 'm' })).toThrow('host:port');
  });
});
