import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { importCycles, importEdges, layerOf, readLayerRules, sourceFiles, type ImportEdge, type LayerRule } from '../support/import-graph';

const ROOT = join(__dirname, '..', '..');

/** Every import of `src/` that breaks a rule, as one line each (file:line → target: why). */
function violations(root: string, rules: readonly LayerRule[]): { cycles: string[][]; layers: string[]; knex: string[]; unplaced: string[] } {
  const files = sourceFiles(root, 'src');
  const edges = importEdges(root, files);
  const unplaced = files.filter((f) => layerOf(rules, f) === undefined);
  const layers: string[] = [];
  const knex: string[] = [];
  const at = (e: ImportEdge) => `${e.from}:${e.line} → ${e.to ?? e.specifier}`;
  for (const e of edges) {
    if ((e.specifier === 'knex' || e.specifier.startsWith('knex/')) && !e.from.startsWith('src/db/')) knex.push(`${at(e)}: knex outside src/db`);
    if (!e.to || !e.to.startsWith('src/')) continue;
    const from = layerOf(rules, e.from);
    const to = layerOf(rules, e.to);
    if (!from || !to || from === to) continue;
    const rule = rules.find((r) => r.layer === from)!;
    if (!rule.mayImport.has(to)) layers.push(`${at(e)}: ${from} may not import ${to}`);
  }
  return { cycles: importCycles(files, edges), layers, knex, unplaced };
}

function rulesOf(root: string): LayerRule[] {
  return readLayerRules(readFileSync(join(root, 'docs', 'architecture.md'), 'utf8'));
}

describe('the import graph of src/ (docs/architecture.md)', () => {
  const rules = rulesOf(ROOT);
  const found = violations(ROOT, rules);

  it('reads a layer table that names every layer it refers to, and places every file of src/ in a layer', () => {
    const names = new Set(rules.map((r) => r.layer));
    expect(names.size).toBeGreaterThanOrEqual(10);
    for (const r of rules) for (const m of r.mayImport) expect(`${r.layer} → ${m}: ${names.has(m) ? 'known' : 'unknown layer'}`).toBe(`${r.layer} → ${m}: known`);
    expect(found.unplaced).toEqual([]);
  });

  it('has no import cycle', () => {
    expect(found.cycles.map((c) => c.join(' ⇄ '))).toEqual([]);
  });

  it('has no import that runs against the layer rules', () => {
    expect(found.layers).toEqual([]);
  });

  it('imports knex only under src/db', () => {
    expect(found.knex).toEqual([]);
  });
});

describe('the import-graph checker', () => {
  // A small tree with one of each fault: it must report each, so a green run above means something.
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'kms-graph-'));
    const write = (p: string, text: string) => {
      mkdirSync(dirname(join(root, p)), { recursive: true });
      writeFileSync(join(root, p), text);
    };
    write('docs/architecture.md', [
      '<!-- layer-rules:begin -->', '| layer | paths | may import |', '|---|---|---|',
      '| top | `src/top.ts`, `src/cmd/` | low |', '| low | `src/low/` | |', '<!-- layer-rules:end -->',
    ].join('\n'));
    write('src/top.ts', "import { a } from './low/a';\nexport const t = a;\n");
    write('src/cmd/c.ts', "import type { T } from '../top';\nexport type C = T;\n");
    write('src/low/a.ts', "import { b } from './b';\nexport const a = b;\n");
    write('src/low/b.ts', "import { a } from './a';\nimport type { Knex } from 'knex';\nimport { t } from '../top';\nexport const b = 1; export type K = Knex; export const u = [a, t];\n");
    write('src/stray.ts', 'export const s = 1;\n');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('finds a cycle, a layer break (type imports included), knex outside src/db and a file in no layer', () => {
    const found = violations(root, rulesOf(root));
    expect(found.cycles).toEqual([['src/low/a.ts', 'src/low/b.ts', 'src/top.ts']]);
    expect(found.layers).toEqual(['src/low/b.ts:3 → src/top.ts: low may not import top']);
    expect(found.knex).toEqual(['src/low/b.ts:2 → knex: knex outside src/db']);
    expect(found.unplaced).toEqual(['src/stray.ts']);
  });
});
