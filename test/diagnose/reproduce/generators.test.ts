import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReproduceError } from '../../../src/diagnose/reproduce/errors.js';
import { locateRaceGenerators } from '../../../src/diagnose/reproduce/generators.js';
import type { LabRunner } from '../../../src/diagnose/reproduce/lab-runner.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'cro-generators-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function dirs(withSources: boolean, withInstalled: boolean) {
  const locations = {
    sourceDir: join(root, 'src'),
    installedDir: join(root, 'installed'),
    cacheDir: join(root, 'cache'),
  };
  for (const [dir, present, suffix] of [
    [locations.sourceDir, withSources, '.c'],
    [locations.installedDir, withInstalled, ''],
  ] as const) {
    if (!present) continue;
    mkdirSync(dir, { recursive: true });
    for (const name of ['snat-race', 'dnat-clash'])
      writeFileSync(join(dir, `${name}${suffix}`), '');
  }
  return locations;
}

/** A compiler that writes its -o file, or fails like a machine without gcc. */
function compiler(works: boolean): { run: LabRunner; calls: string[][] } {
  const calls: string[][] = [];
  const run: LabRunner = async (file, args) => {
    calls.push([file, ...args]);
    if (!works) return { exitCode: undefined, stdout: '', stderr: '', failure: 'spawn gcc ENOENT' };
    writeFileSync(args[args.indexOf('-o') + 1]!, 'binary');
    return { exitCode: 0, stdout: '', stderr: '', failure: undefined };
  };
  return { run, calls };
}

describe('the race generators of doctor --reproduce', () => {
  it('from a checkout: compiled with gcc into the cache dir once, then reused', async () => {
    const locations = dirs(true, true);
    const gcc = compiler(true);
    const found = await locateRaceGenerators(gcc.run, locations);
    expect(found).toEqual({
      origin: 'built',
      dir: locations.cacheDir,
      paths: {
        'snat-race': join(locations.cacheDir, 'snat-race'),
        'dnat-clash': join(locations.cacheDir, 'dnat-clash'),
      },
    });
    expect(gcc.calls.map((call) => call[0])).toEqual(['gcc', 'gcc']);
    expect(gcc.calls[0]).toContain('-pthread');
    await locateRaceGenerators(gcc.run, locations);
    expect(gcc.calls).toHaveLength(2);
  });

  it('from the image (no sources): the installed ones, nothing compiled', async () => {
    const locations = dirs(false, true);
    const gcc = compiler(true);
    expect(await locateRaceGenerators(gcc.run, locations)).toMatchObject({
      origin: 'installed',
      dir: locations.installedDir,
    });
    expect(gcc.calls).toEqual([]);
  });

  it('falls back to the installed ones when the checkout cannot compile, and fails with a code when neither is there', async () => {
    expect(await locateRaceGenerators(compiler(false).run, dirs(true, true))).toMatchObject({
      origin: 'installed',
    });
    rmSync(join(root, 'installed'), { recursive: true });
    const failure = await locateRaceGenerators(compiler(false).run, dirs(true, false)).catch(
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(ReproduceError);
    expect((failure as ReproduceError).code).toBe('REPRODUCE_NO_GENERATORS');
  });
});
