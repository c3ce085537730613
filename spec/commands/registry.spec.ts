import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateApidocs } from '../../src/commands/apidocs';
import { ALL_COMMANDS, createRegistry } from '../../src/commands/registry';

describe('the command registry', () => {
  it('declares every command once, case-insensitively', () => {
    expect(() => createRegistry(ALL_COMMANDS)).not.toThrow();
    const names = ALL_COMMANDS.map((c) => c.name.toLowerCase());
    expect(new Set(names).size).toBe(names.length);
  });

  it('gives every async command its declared job, one kind per command, and no sync command a job', () => {
    const kinds = new Map<string, string>();
    for (const c of ALL_COMMANDS) {
      expect({ command: c.name, hasJob: c.job !== undefined }).toEqual({ command: c.name, hasJob: c.isAsync === true });
      if (!c.job) continue;
      expect({ kind: c.job.kind, alsoDeclaredBy: kinds.get(c.job.kind) }).toEqual({ kind: c.job.kind, alsoDeclaredBy: undefined });
      kinds.set(c.job.kind, c.name);
    }
    expect(kinds.size).toBeGreaterThanOrEqual(12);
  });

  it('describes every command, parameter and response field', () => {
    for (const c of ALL_COMMANDS) {
      expect(c.description.length).toBeGreaterThan(5);
      for (const [name, p] of Object.entries(c.params)) {
        expect(name).toBe(name.toLowerCase());
        expect(`${c.name}.${name}: ${p.description}`.length).toBeGreaterThan(`${c.name}.${name}: `.length + 3);
      }
      for (const f of c.response) expect(f.description.length).toBeGreaterThan(0);
    }
  });

  it('has committed apidocs/ equal to a fresh generation (run `npm run apidocs`)', () => {
    const dir = join(__dirname, '..', '..', 'apidocs');
    const fresh = generateApidocs(ALL_COMMANDS);
    expect(readdirSync(dir).sort()).toEqual([...fresh.keys()].sort());
    for (const [name, content] of fresh) expect({ name, content: readFileSync(join(dir, name), 'utf8') }).toEqual({ name, content });
  });
});
