// Checks the import layering of src/: no import circle, and no folder importing a folder
// declared above it. Run by `npm run lint`; prints each problem and exits 1 if any.
//
// The order is the order of imports, not of data flow: the event types in events/ are read by
// every stage, and the bpftrace source imports the pure decoder it feeds lines to, so both sit
// below the stages that use them.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Lowest first: a layer may import its own files and those of the layers before it. */
export const SRC_LAYERS: readonly (readonly string[])[] = [
  ['shared'],
  ['config'],
  ['events'],
  // The probe catalogue: what each bpftrace script needs, observes and prints.
  ['probes'],
  ['detect'],
  ['decode'],
  ['sources'],
  ['attribute'],
  ['diagnose'],
  ['event-pipeline.ts'],
  ['sinks'],
  // The kubectl plugin: reads what the agent serves, runs apart from it.
  ['kubectl'],
  // The composition root: only these wire the stages together.
  [
    'agent-dependencies.ts',
    'kubernetes-parts.ts',
    'agent-plan.ts',
    'agent-parts.ts',
    'agent.ts',
    'system-dependencies.ts',
    'main.ts',
  ],
];

export interface AllowedEdge {
  from: string;
  to: string;
  why: string;
}

/** Upward imports accepted for now, file to file, paths relative to src/. */
export const SRC_ALLOWED_UPWARD: readonly AllowedEdge[] = [];

/** File → the files of the same tree it imports (relative paths, `/` separators). */
export type ImportGraph = Map<string, string[]>;

function tsFilesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFilesUnder(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

function moduleSpecifiers(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022);
  const specifiers: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier !== undefined &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      specifiers.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      specifiers.push(node.arguments[0].text);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      specifiers.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return specifiers;
}

/** The .ts file a relative specifier names (NodeNext: `./x.js` is `./x.ts`), or undefined. */
function resolveRelative(fromFile: string, specifier: string): string | undefined {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, join(base, 'index.ts')];
  return candidates.find(
    (path) => path.endsWith('.ts') && existsSync(path) && statSync(path).isFile(),
  );
}

const toKey = (root: string, path: string): string => relative(root, path).split(sep).join('/');

/** The import graph of every .ts file under root; package imports are left out. */
export function importGraph(root: string): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of tsFilesUnder(root).sort()) {
    const targets = moduleSpecifiers(file)
      .filter((specifier) => specifier.startsWith('.'))
      .map((specifier) => resolveRelative(file, specifier))
      .filter(
        (path): path is string => path !== undefined && !relative(root, path).startsWith('..'),
      )
      .map((path) => toKey(root, path));
    graph.set(toKey(root, file), [...new Set(targets)]);
  }
  return graph;
}

/** Every import circle, each as the files around it (first file repeated at the end). */
export function findCycles(graph: ImportGraph): string[][] {
  // Tarjan's strongly connected components; a component of more than one file, or a file
  // importing itself, is a circle.
  const index = new Map<string, number>();
  const lowLink = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let next = 0;
  const connect = (file: string): void => {
    index.set(file, next);
    lowLink.set(file, next);
    next += 1;
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        connect(target);
        lowLink.set(file, Math.min(lowLink.get(file)!, lowLink.get(target)!));
      } else if (onStack.has(target)) {
        lowLink.set(file, Math.min(lowLink.get(file)!, index.get(target)!));
      }
    }
    if (lowLink.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      if (component.length > 1 || (graph.get(file) ?? []).includes(file)) {
        components.push(component);
      }
    }
  };
  for (const file of graph.keys()) if (!index.has(file)) connect(file);
  return components.map((component) => circleThrough(graph, new Set(component)));
}

/** One concrete circle inside a strongly connected component, for the message. */
function circleThrough(graph: ImportGraph, component: Set<string>): string[] {
  const start = [...component].sort()[0]!;
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const file = queue.shift()!;
    for (const target of graph.get(file) ?? []) {
      if (!component.has(target)) continue;
      if (target === start) {
        const path = [file];
        while (path[0] !== start) path.unshift(previous.get(path[0]!)!);
        return [...path, start];
      }
      if (!previous.has(target)) {
        previous.set(target, file);
        queue.push(target);
      }
    }
  }
  return [start, start];
}

export interface UpwardImport {
  from: string;
  to: string;
  fromLayer: string;
  toLayer: string;
}

/** The layer of a file: its first path segment, looked up in the declared order. */
function layerIndex(layers: readonly (readonly string[])[], file: string): number {
  const top = file.split('/')[0]!;
  return layers.findIndex((layer) => layer.includes(top));
}

/** Imports from a layer into a higher one, less the allowed ones; files in no layer are errors. */
export function findUpwardImports(
  graph: ImportGraph,
  layers: readonly (readonly string[])[],
  allowed: readonly AllowedEdge[] = [],
): { upward: UpwardImport[]; unlayered: string[] } {
  const upward: UpwardImport[] = [];
  const unlayered = new Set<string>();
  for (const [from, targets] of graph) {
    const fromIndex = layerIndex(layers, from);
    if (fromIndex < 0) unlayered.add(from);
    for (const to of targets) {
      const toIndex = layerIndex(layers, to);
      if (fromIndex < 0 || toIndex < 0 || toIndex <= fromIndex) continue;
      if (allowed.some((edge) => edge.from === from && edge.to === to)) continue;
      upward.push({
        from,
        to,
        fromLayer: layers[fromIndex]!.join(', '),
        toLayer: layers[toIndex]!.join(', '),
      });
    }
  }
  return { upward, unlayered: [...unlayered] };
}

/** Allow-list entries that no longer match an import, so the list cannot outlive its reason. */
export function staleAllowances(
  graph: ImportGraph,
  allowed: readonly AllowedEdge[],
): AllowedEdge[] {
  return allowed.filter((edge) => !(graph.get(edge.from) ?? []).includes(edge.to));
}

/** Every problem of the tree at root, one line each; empty when the layering holds. */
export function checkLayers(
  root: string,
  layers: readonly (readonly string[])[],
  allowed: readonly AllowedEdge[] = [],
): string[] {
  const graph = importGraph(root);
  const { upward, unlayered } = findUpwardImports(graph, layers, allowed);
  return [
    ...findCycles(graph).map((circle) => `import circle: ${circle.join(' → ')}`),
    ...upward.map(
      (edge) =>
        `upward import: ${edge.from} (${edge.fromLayer}) imports ${edge.to} (${edge.toLayer})`,
    ),
    ...unlayered.map((file) => `no declared layer: ${file} (add its folder to the layer order)`),
    ...staleAllowances(graph, allowed).map(
      (edge) => `allowed upward import no longer exists: ${edge.from} → ${edge.to}; remove it`,
    ),
  ];
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = fileURLToPath(new URL('../src', import.meta.url));
  const problems = checkLayers(src, SRC_LAYERS, SRC_ALLOWED_UPWARD);
  for (const problem of problems) console.error(problem);
  if (problems.length > 0) {
    console.error(
      `${problems.length} layering problem(s) in src/; the order is in ${toKey(process.cwd(), fileURLToPath(import.meta.url))}`,
    );
    process.exitCode = 1;
  } else {
    console.log('src/ layering: no import circle, no upward import');
  }
}
