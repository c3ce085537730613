import type { Knex } from 'knex';

/** A process of the deployment as it announces itself (`kms_node`): the master-key versions it holds. */
export interface KmsNode {
  id: string;
  role: string;
  host: string;
  pid: number;
  /** The master-key versions it holds, ascending. */
  keyVersions: number[];
  /** The version it writes new values with. */
  writeVersion: number;
  /** When it started and when it was last heard from (epoch ms). */
  startedAt: number;
  lastSeenAt: number;
}

const TABLE = 'kms_node';

/** The node table: heartbeats (insert or update), and the nodes heard from recently. */
export class NodeRepository {
  constructor(private readonly db: Knex) {}

  /** Records the node's heartbeat; `startedAt` is written only with its first one. */
  async announce(n: KmsNode): Promise<void> {
    const row = { role: n.role, host: n.host, pid: n.pid, key_versions: n.keyVersions.join(','), write_version: n.writeVersion, last_seen: n.lastSeenAt };
    await this.db(TABLE).insert({ id: n.id, started: n.startedAt, ...row }).onConflict('id').merge(row);
  }

  async remove(id: string): Promise<void> {
    await this.db(TABLE).where({ id }).delete();
  }

  /** The nodes heard from at or after `sinceMs`, oldest start first. */
  async seenSince(sinceMs: number): Promise<KmsNode[]> {
    const rows: Array<Record<string, any>> = await this.db(TABLE).where('last_seen', '>=', sinceMs).orderBy('started').select();
    return rows.map((r) => ({
      id: r.id, role: r.role, host: r.host, pid: Number(r.pid), keyVersions: String(r.key_versions).split(',').filter(Boolean).map(Number),
      writeVersion: Number(r.write_version), startedAt: Number(r.started), lastSeenAt: Number(r.last_seen),
    }));
  }
}
