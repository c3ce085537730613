import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/** One import of a source file: what it names and, for a file of the tree, which file that is. */
export interface ImportEdge {
  readonly from: string;
  readonly specifier: string;
  /** Repo-relative path of the imported file; undefined for a package. */
  readonly to?: string;
  readonly line: number;
}

/** Every .ts file below `dir` (repo-relative, forward slashes). */
export function sourceFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(relative(root, p).split('\\').join('/'));
    }
  };
  walk(join(root, dir));
  return out.sort();
}

function resolveRelative(root: string, fromFile: string, specifier: string): string | undefined {
  const base = resolve(root, dirname(fromFile), specifier);
  for (const candidate of [`${base}.ts`, join(base, 'index.ts'), base]) {
    if (candidate.endsWith('.ts') && existsSync(candidate)) return relative(root, candidate).split('\\').join('/');
  }
  return undefined;
}

/**
 * The imports of each file, read by the TypeScript compiler's own pre-processor: static imports and
 * re-exports, `import type` included (a type import ties two files as much as a value import),
 * and dynamic `import()` with a literal.
 */
export function importEdges(root: string, files: readonly string[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    const info = ts.preProcessFile(text, true, true);
    for (const ref of info.importedFiles) {
      const line = text.slice(0, ref.pos).split('\n').length;
      const to = ref.fileName.startsWith('.') ? resolveRelative(root, file, ref.fileName) : undefined;
      edges.push({ from: file, specifier: ref.fileName, to, line });
    }
  }
  return edges;
}

/** The cycles of a graph: each strongly connected component with more than one file (or a self-import). */
export function importCycles(files: readonly string[], edges: readonly ImportEdge[]): string[][] {
  const next = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const e of edges) if (e.to && next.has(e.to)) next.get(e.from)!.push(e.to);
  // Tarjan's algorithm, iterative so a deep chain cannot overflow the stack.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  for (const start of files) {
    if (idx.has(start)) continue;
    const work: Array<{ node: string; i: number }> = [{ node: start, i: 0 }];
    idx.set(start, index); low.set(start, index); index++; stack.push(start); onStack.add(start);
    while (work.length) {
      const top = work[work.length - 1];
      const succ = next.get(top.node)!;
      if (top.i < succ.length) {
        const w = succ[top.i++];
        if (!idx.has(w)) {
          idx.set(w, index); low.set(w, index); index++; stack.push(w); onStack.add(w);
          work.push({ node: w, i: 0 });
        } else if (onStack.has(w)) {
          low.set(top.node, Math.min(low.get(top.node)!, idx.get(w)!));
        }
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.node)!));
      }
      if (low.get(top.node) === idx.get(top.node)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
        } while (w !== top.node);
        if (component.length > 1 || succ.includes(top.node)) cycles.push(component.sort());
      }
    }
  }
  return cycles;
}

/** One row of the layer table in docs/architecture.md. */
export interface LayerRule {
  readonly layer: string;
  /** `src/x/` (a folder) or `src/x.ts` (a file). */
  readonly paths: readonly string[];
  readonly mayImport: ReadonlySet<string>;
}

/** Reads the table between the layer-rules markers of docs/architecture.md. */
export function readLayerRules(markdown: string): LayerRule[] {
  const m = /<!-- layer-rules:begin -->([\s\S]*?)<!-- layer-rules:end -->/.exec(markdown);
  if (!m) throw new Error('docs/architecture.md has no layer-rules table');
  const rows = m[1].split('\n').map((l) => l.trim()).filter((l) => l.startsWith('|') && !/^\|\s*-/.test(l));
  return rows.slice(1).map((row) => {
    const [layer, paths, may] = row.split('|').slice(1, 4).map((c) => c.trim());
    return {
      layer,
      paths: [...paths.matchAll(/`([^`]+)`/g)].map((p) => p[1]),
      mayImport: new Set(may.split(',').map((s) => s.trim()).filter(Boolean)),
    };
  });
}

/** The layer a file belongs to: the longest matching path wins. */
export function layerOf(rules: readonly LayerRule[], file: string): string | undefined {
  let best: { layer: string; length: number } | undefined;
  for (const r of rules) {
    for (const p of r.paths) {
      const hit = p.endsWith('/') ? file.startsWith(p) : file === p;
      if (hit && (!best || p.length > best.length)) best = { layer: r.layer, length: p.length };
    }
  }
  return best?.layer;
}
