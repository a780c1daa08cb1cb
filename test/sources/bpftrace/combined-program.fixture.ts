import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { probeCatalogue, type ProbeMode } from '../../../src/probes/catalogue.js';
import type { CombinableScript } from '../../../src/sources/bpftrace/combined-program.js';

export const probesDir = fileURLToPath(new URL('../../../probes/', import.meta.url));

/**
 * The scripts of a mode as the agent combines them, each probe's variant chosen by `variant`
 * (an index, the first by default); positional arguments need only be numbers.
 */
export async function modeScripts(
  mode: ProbeMode,
  variant: (probe: string) => number = () => 0,
): Promise<(CombinableScript & { script: string })[]> {
  return Promise.all(
    probeCatalogue
      .filter((probe) => probe.runsIn.includes(mode))
      .map(async (probe) => {
        const chosen = probe.variants[variant(probe.name)] ?? probe.variants[0];
        if (chosen === undefined) throw new Error(`${probe.name} has no variant`);
        return {
          name: probe.name,
          script: chosen.script,
          source: await readFile(join(probesDir, chosen.script), 'utf8'),
          args: chosen.positionalArgs({ dropReasonCode: () => 7 }),
          maps: probe.maps ?? [],
        };
      }),
  );
}
