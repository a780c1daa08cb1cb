import { mkdirSync, renameSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { run } from './netns.js';

/** The lab's C programs: race generators and real resolvers, compiled here on first use. */
export type GeneratorName = 'snat-race' | 'dnat-clash' | 'dns-query' | 'resolve' | 'resolve-musl';

const sourceDir = fileURLToPath(new URL('./c/', import.meta.url));
export const defaultBuildDir = fileURLToPath(new URL('./.build/', import.meta.url));

const recipes: Record<GeneratorName, { source: string; compiler: string; flags: string[] }> = {
  'snat-race': { source: 'snat-race.c', compiler: 'gcc', flags: ['-pthread'] },
  'dnat-clash': { source: 'dnat-clash.c', compiler: 'gcc', flags: ['-pthread'] },
  'dns-query': { source: 'dns-query.c', compiler: 'gcc', flags: [] },
  resolve: { source: 'resolve.c', compiler: 'gcc', flags: [] },
  // Linked with musl, whose resolver sends and retries differently from glibc's.
  'resolve-musl': { source: 'resolve.c', compiler: 'musl-gcc', flags: ['-static'] },
};

function mtimeOf(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Path to the compiled generator, compiling it if it is missing or older than its source. */
export async function generatorPath(
  name: GeneratorName,
  buildDir: string = defaultBuildDir,
): Promise<string> {
  const recipe = recipes[name];
  const source = join(sourceDir, recipe.source);
  const header = join(sourceDir, 'lab-common.h');
  const binary = join(buildDir, name);
  const built = mtimeOf(binary);
  const newestSource = Math.max(mtimeOf(source) ?? 0, mtimeOf(header) ?? 0);
  if (built !== undefined && built >= newestSource) return binary;
  mkdirSync(buildDir, { recursive: true });
  // Compile to a private name and rename: a concurrent run never executes a half-written file.
  const partial = `${binary}.${process.pid}.tmp`;
  await run(recipe.compiler, ['-O2', '-Wall', '-Wextra', ...recipe.flags, '-o', partial, source]);
  renameSync(partial, binary);
  return binary;
}
