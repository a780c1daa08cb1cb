import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  checkLayers,
  findCycles,
  findUpwardImports,
  importGraph,
} from '../../scripts/check-layers.js';

const LAYERS = [['low'], ['high']];

function treeOf(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'layers-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

describe('the layer check', () => {
  const roots: string[] = [];
  const tree = (files: Record<string, string>): string => {
    const root = treeOf(files);
    roots.push(root);
    return root;
  };
  afterAll(() => {
    for (const root of roots) rmSync(root, { recursive: true, force: true });
  });

  it('passes a tree whose imports only go down', () => {
    const root = tree({
      'low/a.ts': `export const a = 1;\n`,
      'high/b.ts': `import { a } from '../low/a.js';\nexport const b = a;\n`,
    });
    expect(checkLayers(root, LAYERS)).toEqual([]);
  });

  it('finds an import circle, also through a type import and a re-export', () => {
    const root = tree({
      'low/a.ts': `import type { B } from './b.js';\nexport type A = B;\n`,
      'low/b.ts': `export { c as b } from './c.js';\nexport type B = number;\n`,
      'low/c.ts': `import { a } from './a.js';\nexport const c = a;\n`,
    });
    expect(findCycles(importGraph(root))).toEqual([
      ['low/a.ts', 'low/b.ts', 'low/c.ts', 'low/a.ts'],
    ]);
    expect(checkLayers(root, LAYERS)).toEqual([
      'import circle: low/a.ts → low/b.ts → low/c.ts → low/a.ts',
    ]);
  });

  it('finds an import from a lower folder into a higher one, also a dynamic one', () => {
    const root = tree({
      'low/a.ts': `import { b } from '../high/b.js';\nexport const a = b;\n`,
      'low/lazy.ts': `export const load = () => import('../high/b.js');\n`,
      'high/b.ts': `export const b = 1;\n`,
    });
    expect(findUpwardImports(importGraph(root), LAYERS).upward).toEqual([
      { from: 'low/a.ts', to: 'high/b.ts', fromLayer: 'low', toLayer: 'high' },
      { from: 'low/lazy.ts', to: 'high/b.ts', fromLayer: 'low', toLayer: 'high' },
    ]);
  });

  it('accepts an allowed upward import, and reports the allowance once it is gone', () => {
    const root = tree({
      'low/a.ts': `import { b } from '../high/b.js';\nexport const a = b;\n`,
      'high/b.ts': `export const b = 1;\n`,
    });
    const allowed = { from: 'low/a.ts', to: 'high/b.ts', why: 'moving' };
    expect(checkLayers(root, LAYERS, [allowed])).toEqual([]);
    writeFileSync(join(root, 'low/a.ts'), `export const a = 1;\n`);
    expect(checkLayers(root, LAYERS, [allowed])).toEqual([
      'allowed upward import no longer exists: low/a.ts → high/b.ts; remove it',
    ]);
  });

  it('reports a file in a folder of no declared layer', () => {
    const root = tree({ 'elsewhere/x.ts': `export const x = 1;\n` });
    expect(checkLayers(root, LAYERS)).toEqual([
      'no declared layer: elsewhere/x.ts (add its folder to the layer order)',
    ]);
  });
});
