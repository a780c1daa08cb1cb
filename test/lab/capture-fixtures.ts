/**
 * Captures real `bpftrace -f json` output of the tracepoint probes against the lab, for the
 * decoder's tests and the benchmarks: `npx tsx test/lab/capture-fixtures.ts [DIR]`.
 *
 * Each capture keeps bpftrace's own records (attached_probes, the exit lines) and the event
 * records of this lab's namespaces only: other labs running on the same machine at the same
 * time would otherwise leak into the fixture. A `.meta.json` beside each file records what the
 * kernel counted over the same run.
 */
import { writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProbe } from './bpftrace.js';
import { dropReason, readDropReasons } from './drop-reasons.js';
import { createLab, type Lab } from './lab.js';
import { snatRaceUntil } from './scenarios/race-until.js';
import { runDnsBlocked, runNoListener } from './scenarios/dns-queries.js';

const outputDir =
  process.argv[2] ?? fileURLToPath(new URL('../fixtures/bpftrace/', import.meta.url));

function ownLines(lab: Lab, lines: readonly string[]): string[] {
  const inodes = [lab.node, lab.upstream, ...lab.pods].map((ns) => String(ns.netnsInode));
  return lines.filter((line) => {
    const match = /"data": "(?:insert_failed|dns_drop) 1 \d+ \d+ (\d+) /.exec(line);
    return match === null ? line.trim().length > 0 : inodes.includes(match[1]!);
  });
}

async function capture(
  lab: Lab,
  name: string,
  script: string,
  args: string[],
  scenario: () => Promise<unknown>,
): Promise<void> {
  const probe = await startProbe(script, args);
  let result: unknown;
  try {
    result = await scenario();
    await new Promise((resolve) => setTimeout(resolve, 1000));
  } finally {
    await probe.stop();
  }
  const lines = ownLines(lab, probe.lines);
  writeFileSync(join(outputDir, `${name}.jsonl`), `${lines.join('\n')}\n`);
  const meta = {
    script,
    args,
    kernel: release(),
    lab: { node: lab.node.netnsInode, upstream: lab.upstream.netnsInode, pods: lab.pods },
    result,
  };
  writeFileSync(join(outputDir, `${name}.meta.json`), `${JSON.stringify(meta, null, 2)}\n`);
  process.stdout.write(`${name}: ${lines.length} lines\n`);
}

const reasons = readDropReasons();
const netfilterDrop = String(dropReason(reasons, 'NETFILTER_DROP'));
const lab = await createLab();
try {
  await capture(
    lab,
    'conntrack-insert-failed-snat-race',
    'tracepoint/conntrack-insert-failed.bt',
    [netfilterDrop],
    // Until the kernel counted enough losers for a fixture worth decoding, however often a round races.
    () => snatRaceUntil(lab, { needed: 50, label: 'capture' }),
  );
  await capture(lab, 'dns-drops-dns-blocked', 'tracepoint/dns-drops.bt', [], () =>
    runDnsBlocked(lab, { queries: 20 }),
  );
  await capture(lab, 'dns-drops-no-listener', 'tracepoint/dns-drops.bt', [], () =>
    runNoListener(lab, { queries: 20 }),
  );
  await capture(lab, 'dns-drops-snat-race', 'tracepoint/dns-drops.bt', [], () =>
    snatRaceUntil(lab, { needed: 20, label: 'capture' }),
  );
} finally {
  await lab.destroy();
}
