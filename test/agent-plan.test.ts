import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { probeDefinitions } from '../src/agent-plan.js';
import { parseOptions } from '../src/config/options.js';
import { detectCapabilities } from '../src/detect/capabilities.js';
import { createDropReasonTable } from '../src/detect/drop-reasons.js';
import { selectProbeMode } from '../src/detect/mode-selection.js';
import { planProcesses } from '../src/sources/bpftrace/process-plan.js';
import { fixtureSources } from './fixtures/capabilities/load.js';

const probesDir = fileURLToPath(new URL('../probes', import.meta.url));

/** The attach timeout --probe-attach-timeout gives, in milliseconds. */
function attachTimeoutOf(argv: string[]): number {
  const parsed = parseOptions(argv, {}, '1');
  if (parsed.kind !== 'run') throw new Error(`expected options, got ${JSON.stringify(parsed)}`);
  return parsed.options.probeAttachTimeoutMs;
}

/** The probe definitions the agent would give the supervisor on a recorded kernel. */
async function definitionsOn(fixture: string, attachTimeoutMs: number) {
  const capabilities = await detectCapabilities({
    ...(await fixtureSources(fixture)),
    bpftracePath: 'bpftrace',
  });
  const selected = selectProbeMode('auto', capabilities);
  if (!selected.ok) throw new Error(selected.error.message);
  const loaded = capabilities.tracefs.dropReasons;
  return probeDefinitions(
    selected.selection,
    loaded.ok ? loaded.table : createDropReasonTable([]),
    { probesDir, attachTimeoutMs },
    (path) => readFile(path, 'utf8'),
  );
}

describe('the probe attach timeout in the start plan', () => {
  it('gives every probe and the combined process the --probe-attach-timeout on a kernel with BTF', async () => {
    const definitions = await definitionsOn(
      '6.1-btf',
      attachTimeoutOf(['--probe-attach-timeout', '360']),
    );
    expect(definitions.length).toBeGreaterThan(1);
    for (const definition of definitions) expect(definition.attachTimeoutMs).toBe(360_000);
    expect(planProcesses(definitions).combined?.attachTimeoutMs).toBe(360_000);
  });

  it('gives 120 s by default', async () => {
    const definitions = await definitionsOn('6.1-btf', attachTimeoutOf([]));
    expect(definitions.map((definition) => definition.attachTimeoutMs)).toEqual(
      definitions.map(() => 120_000),
    );
  });

  it('keeps the longer bound of probes that compile kernel headers unless the option is longer still', async () => {
    const headers = (definitions: Awaited<ReturnType<typeof definitionsOn>>) =>
      definitions.filter((definition) =>
        (definition.bpftraceOptions ?? []).includes('net/netfilter/nf_conntrack.h'),
      );
    const byDefault = await definitionsOn('5.10-headers-only', attachTimeoutOf([]));
    // On this kernel the DNS-query probe reads only vmlinux BTF; the others compile headers.
    expect(headers(byDefault).length).toBeGreaterThan(0);
    for (const definition of byDefault) {
      expect(definition.attachTimeoutMs).toBe(
        headers(byDefault).includes(definition) ? 300_000 : 120_000,
      );
    }
    expect(planProcesses(byDefault).combined?.attachTimeoutMs).toBe(300_000);

    const raised = await definitionsOn(
      '5.10-headers-only',
      attachTimeoutOf(['--probe-attach-timeout', '600']),
    );
    for (const definition of raised) expect(definition.attachTimeoutMs).toBe(600_000);
    expect(planProcesses(raised).combined?.attachTimeoutMs).toBe(600_000);
  });
});
