import { COUNT_MAP_KEYS } from '../src/probes/catalogue.js';
import type { CountMapBound } from './count-map-bound.js';
import { dnsLoadAimRows, renderDnsLoadSection } from './dns-load-report.js';
import type { DnsLoadFigures } from './dns-load-result.js';
import type { EmitRate } from './emit-rate.js';
import {
  renderGuestStartUpSection,
  type GuestStartUpFailure,
  type GuestStartUpFigures,
} from './guest-start-up-result.js';
import type { InsertFailureStorm } from './insert-failure-storm.js';
import type { IdleCost } from './idle-cost.js';
import type { KubernetesScaleRun } from './kubernetes-scale.js';
import type { MachineFacts } from './machine.js';
import type { SeriesRetentionFigures, SeriesRun } from './series-retention.js';
import type { StormRunTime } from './storm-run-time.js';
import { median } from './stats.js';
import { keptFraction } from './paired-runs.js';
import { udpVariants, type UdpRun, type UdpVariant } from './udp-throughput.js';

export interface DecodeFigures {
  runs: number[];
  median: number;
  linesPerRun: number;
  fixtures: string[];
}

export interface BenchResults {
  date: Date;
  machine: MachineFacts;
  decode: DecodeFigures;
  emit: EmitRate;
  idle: IdleCost;
  /** The same idle window with the agent on the newer bpftrace (`--bpftrace`). */
  idleOnNewer: IdleCost;
  /** And once more on the newer bpftrace with its compiler left resident (`--bpftrace-page-out off`). */
  idleCompilerResident: IdleCost;
  udp: UdpRun[];
  stormRunTime: StormRunTime[];
  series: SeriesRetentionFigures;
  kubernetes: KubernetesScaleRun;
  insertStorm: InsertFailureStorm;
  guestStartUp: GuestStartUpFigures | GuestStartUpFailure;
  /** Section 8 on the machine's bpftrace, then on the image's. */
  mapBound: readonly CountMapBound[];
  dnsLoad: DnsLoadFigures;
  wallSeconds: number;
  loadAtEnd: number;
}

const int = (value: number) => Math.round(value).toLocaleString('en-US');
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const verdict = (pass: boolean) => (pass ? '**met**' : '**missed**');
/** The aim for the agent and its bpftrace together at rest, RSS. */
const IDLE_TOTAL_AIM = 180 * 1024 * 1024;
const idleTotal = (idle: IdleCost) => idle.agent.rssBytes + idle.bpftrace.rssBytes;

/** A run on the machine's bpftrace (or none): every figure but the newer bpftrace's own. */
const onMachineBpftrace = (run: UdpRun) => run.bpftrace === undefined;

function udpRow(runs: UdpRun[], variant: UdpVariant) {
  const of = (withAgent: boolean) =>
    runs.filter(
      (r) =>
        r.variant === variant &&
        r.withAgent === withAgent &&
        !r.withEmptyProbe &&
        onMachineBpftrace(r),
    );
  const pps = (list: UdpRun[]) => list.map((r) => r.pps);
  return {
    without: median(pps(of(false))),
    withAgent: median(pps(of(true))),
    kept: keptFraction(of(false), of(true)),
    all: { without: pps(of(false)), with: pps(of(true)) },
  };
}

const percent = (fraction: number) => `${(fraction * 100).toFixed(1)} %`;

/** The empty program's storm runs against the storm runs without any probe that bracket them. */
function floorKept(runs: UdpRun[]) {
  return keptFraction(
    runs.filter((u) => u.variant === 'dns-dropped' && !u.withAgent && !u.withEmptyProbe),
    runs.filter((u) => u.withEmptyProbe),
  );
}

/**
 * The storm runs with the agent on the newer bpftrace against the storm runs without any probe
 * that bracket them; undefined when the runs have none (section 4 then says nothing of it).
 */
function newerStorm(runs: UdpRun[]) {
  const storm = runs.filter((u) => u.variant === 'dns-dropped' && u.bpftrace !== undefined);
  const version = storm[0]?.bpftrace;
  if (version === undefined) return undefined;
  const without = runs.filter(
    (u) => u.variant === 'dns-dropped' && !u.withAgent && !u.withEmptyProbe && onMachineBpftrace(u),
  );
  return {
    version,
    storm,
    without: median(without.map((u) => u.pps)),
    withAgent: median(storm.map((u) => u.pps)),
    kept: keptFraction(without, storm),
    all: { without: without.map((u) => u.pps), with: storm.map((u) => u.pps) },
    dropped: storm.reduce((sum, u) => sum + u.arrived, 0),
    counted: storm.reduce((sum, u) => sum + (u.agentCounted ?? 0), 0),
    lost: storm.reduce((sum, u) => sum + (u.agentLost ?? 0), 0),
  };
}

/**
 * The share of its CPU the sender's work had in the storm runs (bench/sender-cpu.ts): its
 * lowest, median and highest. The newer bpftrace's runs are left out: the figure stays that of
 * the runs on the machine's bpftrace and without probes.
 */
function senderCpuShare(runs: readonly UdpRun[]): string {
  const shares = runs
    .filter((u) => u.variant === 'dns-dropped' && onMachineBpftrace(u))
    .map((u) => u.senderCpuSeconds / u.seconds);
  return `${percent(Math.min(...shares))} to ${percent(Math.max(...shares))}, median ${percent(median(shares))}`;
}

/** Section 4's kept fractions in a few lines, for `npm run bench -- --only udp`. */
export function renderUdpKept(runs: UdpRun[]): string {
  const floor = floorKept(runs);
  return [
    `floor (empty program), dns-dropped: kept ${percent(floor.median)} (rounds: ${floor.perRound.map(percent).join(', ')})`,
    ...udpVariants.map((variant) => {
      const row = udpRow(runs, variant);
      return `agent, ${variant}: kept ${percent(row.kept.median)} (rounds: ${row.kept.perRound.map(percent).join(', ')})`;
    }),
    ...newerKeptLines(runs),
    `the sender's share of its CPU in the dns-dropped runs: ${senderCpuShare(runs)}`,
  ].join('\n');
}

function newerKeptLines(runs: UdpRun[]): string[] {
  const newer = newerStorm(runs);
  if (newer === undefined) return [];
  return [
    `agent on ${newer.version}, dns-dropped: kept ${percent(newer.kept.median)} (rounds: ${newer.kept.perRound.map(percent).join(', ')}); ${int(newer.counted)} counted + ${int(newer.lost)} lost of ${int(newer.dropped)} dropped`,
  ];
}

/** The retention run's series and heap stayed flat while the addresses kept coming. */
export function seriesFlat(run: SeriesRun): {
  pass: boolean;
  maxSeries: number;
  heapGrowth: number;
} {
  // The last checkpoint is after the tail, once the idle series are gone: not a flatness point.
  const during = run.checkpoints.slice(0, -1);
  const first = during[0];
  const last = during[during.length - 1];
  const maxSeries = Math.max(...during.map((c) => c.series));
  const heapGrowth = first && last ? last.heapUsedBytes / first.heapUsedBytes : Number.NaN;
  const pass =
    first !== undefined &&
    maxSeries <= Math.min(run.retention.maxSeries, first.series * 1.1) &&
    heapGrowth <= 1.25;
  return { pass, maxSeries, heapGrowth };
}

export function renderSeriesSection(figures: SeriesRetentionFigures): string {
  const b = figures.bench;
  const lines = [
    '## 5. Bounded series',
    '',
    "`bench/series-retention.ts`: the agent's event metrics (standalone: one",
    '`conntrack_observer_dns_drops_total` series per client address, no pod label) fed',
    `${int(b.addresses)} distinct addresses over ${int(b.spreadSeconds / 60)} simulated minutes, one after the other;`,
    `each has one drop every ${b.eventEverySeconds} s for ${b.activeSeconds} s after it appears and never again (pod churn);`,
    `Prometheus scrapes every ${b.scrapeEverySeconds} s; ${int(b.tailSeconds / 60)} more minutes run after the last address. The clock is`,
    "the metrics' injected one, so the simulated hours take seconds. Each variant runs in its own",
    "Node process (tsx, `--expose-gc`, collected before each reading): with the agent's retention,",
    'and with retention off, as before. Series = series the counters hold (a scrape exports the',
    'same number); heap = V8 heap used; RSS includes the tsx loader and scrape buffers, so it is',
    'noisier than the heap.',
    '',
  ];
  for (const run of figures.runs) {
    const retention =
      run.variant === 'retention'
        ? `idle ${run.retention.idleMs / 60_000} min, cap ${int(run.retention.maxSeries)} series`
        : 'none';
    lines.push(
      `**${run.variant}** (retention: ${retention}): ${int(run.events)} drops, ${int(run.scrapes)} scrapes,`,
      `${int(run.forgottenIdle)} series forgotten idle, ${int(run.forgottenLimit)} evicted at the cap; ${run.wallSeconds.toFixed(1)} s.`,
      '',
      '| addresses seen | series held | series exported | heap MB | RSS MB |',
      '|---|---|---|---|---|',
      ...run.checkpoints.map(
        (c, i) =>
          `| ${int(c.addresses)}${i === run.checkpoints.length - 1 ? ` (+${int(b.tailSeconds / 60)} min)` : ''} | ${int(c.series)} | ${int(c.exportedSeries)} | ${mb(c.heapUsedBytes)} | ${mb(c.rssBytes)} |`,
      ),
      '',
    );
  }
  return lines.join('\n');
}

/** Section 4's run time in the kernel per storm packet, from `measureStormRunTime`. */
export function renderStormRunTime(runs: readonly StormRunTime[]): string {
  const of = (probe: StormRunTime['probe']) => runs.filter((run) => run.probe === probe);
  // The agent on the newer bpftrace is labelled with its version: rows after the two fixed ones.
  const newer = [...new Set(runs.map((run) => run.probe))].filter(
    (probe) => probe !== 'empty program' && probe !== 'agent',
  );
  const ns = (value: number) => (Number.isFinite(value) ? value.toFixed(0) : '?');
  const row = (probe: StormRunTime['probe']) => {
    const mine = of(probe);
    // A run whose program did not run has no per-run figure; it does not move the median.
    const middle = (values: number[]) => median(values.filter(Number.isFinite));
    return `| ${probe} | ${ns(middle(mine.map((run) => run.nsPerRun)))} | ${ns(middle(mine.map((run) => run.nsPerDropped)))} | ${mine.map((run) => `${ns(run.nsPerRun)} / ${ns(run.nsPerDropped)} (${int(run.dropped)} dropped)`).join(', ')} |`;
  };
  return [
    "Where the storm's time goes (`bench/storm-run-time.ts`): the same storm, 2 s per run, three runs",
    `with the empty program and three with the agent${newer.map((probe) => ` (and three with it on Debian 13's ${probe.slice('agent, '.length)})`).join('')}, with \`kernel.bpf_stats_enabled\` set (off`,
    'again after; it adds two clock reads per program run, so it is never on for the packet rates',
    "above). The kernel accounts each BPF program's runs and run time (`run_cnt`, `run_time_ns` in",
    "the fdinfo of the bpftrace processes' program descriptors). Per run: the program on",
    "`skb:kfree_skb` (it runs for every skb freed on the host, the storm's datagrams almost all of",
    "them); per dropped datagram: all the probe's programs together. The dispatch to the tracepoint",
    "itself is not in these figures: it is what the empty program's packet rate above shows.",
    '',
    '| probe | ns per run (median) | ns per dropped datagram (median) | runs: per run / per dropped |',
    '|---|---|---|---|',
    row('empty program'),
    row('agent'),
    ...newer.map(row),
  ].join('\n');
}

/**
 * The kernel's accounting against the packet rates: the sending CPU spends 1/pps per datagram
 * (it sends, forwards and frees each in its own softirq), so a program costing t ns per dropped
 * datagram leaves it (1/pps) / (1/pps + t) of its rate, if nothing else changed.
 */
function expectedKept(
  runTime: readonly StormRunTime[],
  ppsWithout: number,
  emptyKept: number,
  agentKept: number,
  newer?: { readonly version: string; readonly kept: number },
): string {
  const nsPerDatagram = 1e9 / ppsWithout;
  const nsOf = (probe: StormRunTime['probe']) =>
    median(
      runTime
        .filter((run) => run.probe === probe)
        .map((run) => run.nsPerDropped)
        .filter(Number.isFinite),
    );
  const keptIf = (ns: number) => percent(nsPerDatagram / (nsPerDatagram + ns));
  const nsOnNewer = newer ? nsOf(`agent, ${newer.version}`) : Number.NaN;
  return [
    `Cross-check with the kernel's accounting: without probes the sending CPU spends ${int(nsPerDatagram)} ns`,
    `per dropped datagram (1 / ${int(ppsWithout)} pps, the median above), so the empty program's ${int(nsOf('empty program'))} ns`,
    `would leave it ${keptIf(nsOf('empty program'))} of its rate (measured: ${percent(emptyKept)}) and the agent's ${int(nsOf('agent'))} ns`,
    `${keptIf(nsOf('agent'))} (measured: ${percent(agentKept)})${newer ? `, and the agent's ${int(nsOnNewer)} ns on ${newer.version}` : '.'}`,
    ...(newer ? [`${keptIf(nsOnNewer)} (measured: ${percent(newer.kept)}).`] : []),
  ].join('\n');
}

/** One storm run with the agent: dropped against the agent's counts, and how its probes fared. */
const stormAccountingRow = (round: number | string, u: UdpRun) =>
  `| ${round} | ${int(u.sent)} | ${int(u.arrived)} | ${int(u.agentCounted ?? 0)} | ${int(u.agentLost ?? 0)} | ${int(u.storm?.unaccounted ?? Number.NaN)} | ${int(u.storm?.countedAnyReason ?? Number.NaN)} | ${int(u.storm?.rejected ?? Number.NaN)} | ${int(u.storm?.restarts ?? Number.NaN)} | ${u.storm ? `${u.storm.minProbesUp} of ${u.storm.probes}` : '?'} | ${u.storm ? `${u.storm.settleSeconds.toFixed(1)} s` : '?'} |`;

/** The storm on Debian 13's bpftrace: how it was run, what it kept, what the agent counted. */
function renderNewerStorm(newer: NonNullable<ReturnType<typeof newerStorm>>): string[] {
  return [
    `The agent on Debian 13's bpftrace (${newer.version}; \`test/kernels/newer-bpftrace.ts\` unpacks the package`,
    "and every library it needs from trixie and runs it through that package set's own dynamic loader,",
    "the machine's glibc, LLVM and bpftrace left as they are), given with `--bpftrace`, the same",
    "build and probes, one `dns-dropped` run per round after the machine's bpftrace's runs, against",
    `the same bracketing windows: kept ${newer.kept.perRound.map(percent).join(', ')}: median`,
    `**${percent(newer.kept.median)}** (row \`dns-dropped, agent on ${newer.version}\` above). It increments a \`count()\``,
    'map in place, a lookup and a store into the value found, where 0.17 does a lookup and a map',
    "update: the kernel's accounting below shows what that takes off each dropped datagram.",
    `Counted: ${int(newer.counted)} + ${int(newer.lost)} lost of ${int(newer.dropped)} dropped, per round:`,
    '',
    '| round | sent | dropped | counted | lost | unaccounted | counted (any reason) | rejected | restarts | probes up (min) | settled after |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...newer.storm.map((u) =>
      stormAccountingRow('round' in u.position ? u.position.round : '?', u),
    ),
  ];
}

/** Section 4: the packet rates, the storm's accounting and where its time goes (4b). */
export function renderUdpSection(udp: UdpRun[], stormRunTime: readonly StormRunTime[]): string {
  const rows = udpVariants.map((variant) => ({ variant, ...udpRow(udp, variant) }));
  const storm = udp.filter(
    (u) => u.variant === 'dns-dropped' && u.withAgent && onMachineBpftrace(u),
  );
  const stormRow = rows.find((row) => row.variant === 'dns-dropped');
  const floorRuns = udp.filter((u) => u.withEmptyProbe);
  const floorPps = median(floorRuns.map((u) => u.pps));
  const floor = floorKept(udp);
  const stormKept = stormRow?.kept.median ?? Number.NaN;
  const newer = newerStorm(udp);
  return [
    '## 4. UDP packets/s between namespaces',
    '',
    '`bench/udp-throughput.ts` on the lab of `test/lab/` (docs/lab.md): `bench/c/udp-blast.c` in pod1',
    'sends 32-byte UDP datagrams from one unconnected socket as fast as it can for 4 s to',
    '192.0.2.99 in the upstream namespace, through the node namespace (bridge, forwarding,',
    'MASQUERADE). Variants: `dns`: `bench/c/udp-sink.c` listens on 192.0.2.99:53 and counts;',
    '`other`: the sink listens on port 9000; `dns-dropped`: nothing listens on 192.0.2.99:53, the',
    'upstream frees every datagram with reason NO_SOCKET (counted by its `Udp NoPorts`), and the',
    'DNS-drop probe counts every packet in the kernel: the storm. pps = datagrams that arrived (sink',
    'count, or NoPorts delta) / send duration.',
    '',
    'The sender is pinned to the last CPU (`taskset`): its datagrams are forwarded and freed in its',
    "own softirq on that CPU, so a probe's per-packet work comes out of that CPU's time. Rates on",
    'this shared machine drift by 5–15 % within minutes, more than the probes cost, so each run with',
    'a probe is compared with the runs without any probe just before and just after it: windows',
    `without (the three variants) alternate with ${floor.perRound.length} rounds, each: \`dns-dropped\` with an empty`,
    "`bpftrace -e 'tracepoint:skb:kfree_skb {}'` attached (the floor), then the agent started",
    `(\`--netns-pid\` of the lab node, \`/readyz\` 200), the three variants, the agent stopped${newer ? '' : '. A'}`,
    ...(newer
      ? [
          "(and then the agent started again on Debian 13's bpftrace, `dns-dropped` run once with it,",
          'that agent stopped: below). A',
        ]
      : []),
    "round's kept fraction is its rate over the mean of its two bracketing windows; the figure",
    'reported is the median over rounds (`bench/paired-runs.ts`). Medians of the raw rates are shown',
    'beside it.',
    '',
    "The sender's work (its thread, whose CPU time includes the softirq work its sends cause, probes",
    "included, and its CPU's ksoftirqd; the scheduler's run times, which leave out time the host",
    `steals) had its CPU for ${senderCpuShare(udp)} of each storm run's send duration`,
    '(`bench/sender-cpu.ts`). Where that stays near 100 % while rates move by 10 % and more between',
    'adjacent runs, the spread is neither other work on that CPU nor steal time but the virtual CPU',
    "running faster or slower (the host's other guests share its cores and caches): why each round",
    'is compared with its own bracket.',
    '',
    `Floor: dns-dropped with the empty program attached: ${floorRuns
      .map((u) => int(u.pps))
      .join(', ')} pps (median ${int(floorPps)}); kept per round ${floor.perRound
      .map(percent)
      .join(', ')}: median ${percent(floor.median)}.`,
    '',
    '| variant | pps without (median) | pps with agent (median) | kept (median of rounds) | kept per round | runs without | runs with |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (row) =>
        `| ${row.variant} | ${int(row.without)} | ${int(row.withAgent)} | ${percent(row.kept.median)} | ${row.kept.perRound.map(percent).join(', ')} | ${row.all.without.map(int).join(', ')} | ${row.all.with.map(int).join(', ')} |`,
    ),
    ...(newer
      ? [
          `| dns-dropped, agent on ${newer.version} | ${int(newer.without)} | ${int(newer.withAgent)} | ${percent(newer.kept.median)} | ${newer.kept.perRound.map(percent).join(', ')} | ${newer.all.without.map(int).join(', ')} | ${newer.all.with.map(int).join(', ')} |`,
        ]
      : []),
    '',
    `Storm, with the agent${newer ? " on the machine's bpftrace" : ''}, per round: packets dropped (upstream NoPorts) against the agent's`,
    '`conntrack_observer_dns_drops_total{reason="NO_SOCKET"}` and',
    '`conntrack_observer_probe_events_lost_total` deltas:',
    '',
    '| round | sent | dropped | counted | lost | unaccounted | counted (any reason) | rejected | restarts | probes up (min) | settled after |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...storm.map((u, i) => stormAccountingRow(i + 1, u)),
    '',
    ...(newer ? [...renderNewerStorm(newer), ''] : []),
    renderStormRunTime(stormRunTime),
    '',
    expectedKept(
      stormRunTime,
      stormRow?.without ?? Number.NaN,
      floor.median,
      stormKept,
      newer && { version: newer.version, kept: newer.kept.median },
    ),
  ].join('\n');
}

/**
 * The Aims rows of section 4. The storm's kept fraction names both bpftraces when the runs hold
 * the newer one's; every other figure is that of the machine's bpftrace alone.
 */
export function udpAimRows(udp: UdpRun[], machineBpftrace: string): string[] {
  const rows = udpVariants.map((variant) => ({ variant, ...udpRow(udp, variant) }));
  const storm = udp.filter(
    (u) => u.variant === 'dns-dropped' && u.withAgent && onMachineBpftrace(u),
  );
  const stormDropped = storm.reduce((s, u) => s + u.arrived, 0);
  const stormCounted = storm.reduce((s, u) => s + (u.agentCounted ?? 0), 0);
  const stormLost = storm.reduce((s, u) => s + (u.agentLost ?? 0), 0);
  const stormKept = rows.find((row) => row.variant === 'dns-dropped')?.kept.median ?? Number.NaN;
  const floor = floorKept(udp);
  const newer = newerStorm(udp);
  const stormAim = `storm: sender pps kept with the agent ≥ 90 % (an empty program on the same tracepoint keeps ${percent(floor.median)}: the floor)`;
  return [
    ...rows.map(
      (row) =>
        `| UDP pps kept with probes ≥ 98 %, ${row.variant} | ${percent(row.kept.median)} | ${verdict(row.kept.median >= 0.98)} |`,
    ),
    newer === undefined
      ? `| ${stormAim} | ${percent(stormKept)} | ${verdict(stormKept >= 0.9)} |`
      : `| ${stormAim} | ${machineBpftrace}: ${percent(stormKept)}; ${newer.version}: ${percent(newer.kept.median)} | ${machineBpftrace}: ${verdict(stormKept >= 0.9)}; ${newer.version}: ${verdict(newer.kept.median >= 0.9)} |`,
    `| storm: counted = dropped exactly, nothing lost | ${int(stormCounted)} counted + ${int(stormLost)} lost of ${int(stormDropped)} dropped | ${verdict(stormCounted === stormDropped && stormLost === 0)} |`,
  ];
}

export function renderReport(r: BenchResults): string {
  const decodePass = r.decode.median >= 500_000;
  const agentCpuPass = r.idle.agentExact.cpuPercent < 0.5;
  const agentRssPass = r.idle.agent.rssBytes < 60 * 1024 * 1024;
  const retentionRun = r.series.runs.find((run) => run.variant === 'retention');
  const seriesVerdict = retentionRun
    ? seriesFlat(retentionRun)
    : { pass: false, maxSeries: Number.NaN, heapGrowth: Number.NaN };
  const lines: string[] = [];
  const add = (...text: string[]) => lines.push(...text);
  add(
    '# Benchmarks',
    '',
    'Written by `npm run bench` (as root): every figure below comes from one run of that command;',
    'rerun it to replace them. Nothing here is tuned to meet an aim: a missed aim is reported as missed.',
    '',
    `- Date: ${r.date.toISOString()}`,
    `- Kernel: ${r.machine.kernel}`,
    `- CPU: ${r.machine.cpuModel}, nproc ${r.machine.nproc}`,
    `- Node: ${r.machine.node}; bpftrace: ${r.machine.bpftrace} (the machine's, Debian 12's: the agent's wherever no other is named) and ${r.machine.newerBpftrace} (Debian 13's, the image's: the agent's in the second idle window of section 3 and the storm runs of section 4 that name it)`,
    `- Whole run: ${r.wallSeconds.toFixed(0)} s; 1-minute load average ${r.machine.loadAtStart.toFixed(2)} at start, ${r.loadAtEnd.toFixed(2)} at end (on ${r.machine.nproc} CPUs; other work on the machine competes with every figure)`,
    '',
    '## Aims',
    '',
    '| aim | measured | verdict |',
    '|---|---|---|',
    `| decode + attribute + count ≥ 500,000 events/s on one core | ${int(r.decode.median)} events/s (median) | ${verdict(decodePass)} |`,
    `| idle agent < 0.5 % CPU | ${r.idle.agentExact.cpuPercent.toFixed(2)} % (${r.idle.decodedEvents} events in the window; bpftrace children apart: ${r.idle.bpftrace.cpuPercent.toFixed(2)} %) | ${verdict(agentCpuPass)} |`,
    `| idle agent < 60 MB RSS | ${mb(r.idle.agent.rssBytes)} MB (bpftrace children apart: ${mb(r.idle.bpftrace.rssBytes)} MB; on ${r.machine.newerBpftrace}: agent ${mb(r.idleOnNewer.agent.rssBytes)} MB, bpftrace ${mb(r.idleOnNewer.bpftrace.rssBytes)} MB) | ${verdict(agentRssPass)} |`,
    `| idle agent and bpftrace ≤ 180 MB RSS together | ${r.machine.bpftrace}: ${mb(idleTotal(r.idle))} MB; ${r.machine.newerBpftrace}: ${mb(idleTotal(r.idleOnNewer))} MB (${mb(idleTotal(r.idleCompilerResident))} MB with its compiler left resident) | ${r.machine.bpftrace}: ${verdict(idleTotal(r.idle) <= IDLE_TOTAL_AIM)}; ${r.machine.newerBpftrace}: ${verdict(idleTotal(r.idleOnNewer) <= IDLE_TOTAL_AIM)} |`,
    ...udpAimRows(r.udp, r.machine.bpftrace),
    `| insert-failure storm: agent = kernel \`insert_failed\` exactly, nothing unexplained (section 7) | ${int(r.insertStorm.agentCounted)} counted of ${int(r.insertStorm.kernelInsertFailed)} (${int(r.insertStorm.rounds)} rounds in ${r.insertStorm.seconds} s); ${int(r.insertStorm.unexplained)} unexplained | ${verdict(r.insertStorm.agentCounted === r.insertStorm.kernelInsertFailed && r.insertStorm.kernelInsertFailed > 0 && r.insertStorm.unexplained === 0)} |`,
    ...r.mapBound.map(
      (m) =>
        `| map bound reached on purpose: every drop counted, the shortfall reported (section 8), ${m.bpftrace} | ${int(m.countedByKey)} by key + ${int(m.uncounted)} uncounted of ${int(m.dropped)} dropped (${int(m.distinctKeys)} keys, bound ${int(m.mapKeys)}) | ${verdict(m.countedByKey + m.uncounted === m.dropped && m.uncounted > 0)} |`,
    ),
    `| series and heap stay flat over ${int(r.series.bench.addresses)} client addresses (section 5) | at most ${int(seriesVerdict.maxSeries)} series; heap ×${seriesVerdict.heapGrowth.toFixed(2)} from the first to the last reading | ${verdict(seriesVerdict.pass)} |`,
    ...dnsLoadAimRows(r.dnsLoad),
    '',
    'Where an aim is missed and why: delivered packets do not fire the drop tracepoint, so the few',
    'per cent between runs with and without the agent in the dns and other variants are of the order of the spread between runs of one variant (section 4 lists every run: other work on this shared machine moves them);',
    'in the storm every dropped DNS datagram is counted in a BPF map in the kernel (header parse,',
    'conntrack and namespace reads, two map updates and a lookup): no per-packet line leaves the kernel, so the',
    "counts are exact, and the agent's cost above the empty program's is that work per packet. The",
    'insert-failure probe shares that one program (one block per attach point in the combined program).',
    "Section 4 shows the run time per dropped datagram beside the empty program's: bpftrace 0.17",
    'reads every header and kernel field through a helper call (about a dozen per datagram: headers,',
    'device, namespace, conntrack entry) and does each `count()` as a map lookup and an update, with',
    'the generation and example lookups six map operations per datagram; that is the floor of counting',
    'in maps with this bpftrace.',
    `Debian 13's bpftrace (${r.machine.newerBpftrace}, run here through its own dynamic loader and libraries,`,
    "the machine's left as they are: `test/kernels/newer-bpftrace.ts`) increments a `count()` in place,",
    'a map lookup and a store into the value it finds, where 0.17 looks the key up and then updates the',
    'map; the agent runs on it unchanged (`--bpftrace`), and section 4 measures the storm with it too.',
    'The RSS figure is the standalone agent,',
    'which does not load @kubernetes/client-node; Kubernetes mode loads it and is not measured here.',
    '',
    '## 1. Decode, attribute, count',
    '',
    '`bench/decode-throughput.ts`: the recorded `printf` lines of the real probes',
    `(${r.decode.fixtures.map((f) => `\`${f}\``).join(', ')}, malformed fixtures excluded) repeated to`,
    `${int(r.decode.linesPerRun)} lines per run, each decoded, attributed (standalone resolver), counted in`,
    'the Prometheus metrics and offered to the rate-limited event log (pino to a null sink), in one',
    'thread after a 100,000-line warm-up. Five runs.',
    '',
    `- Runs: ${r.decode.runs.map(int).join(', ')} events/s`,
    `- Median: **${int(r.decode.median)} events/s**`,
    '',
    '## 2. bpftrace emit ceiling',
    '',
    '`bench/emit-rate.ts`: `bpftrace -f json -B line` on `tracepoint:syscalls:sys_enter_getppid`,',
    'filtered to the comm of `bench/c/getppid-loop.c`, printing per call one line with the format and',
    'argument types of an `insert_failed` record. The loop calls getppid() as fast as it can for',
    "5 s; Node reads bpftrace's stdout through the agent's own probe spawner (raw chunks split into lines), until it goes",
    "quiet. The rate is lines received over the time from the loop's start until the last line.",
    '',
    `- getppid() calls: ${int(r.emit.syscalls)}`,
    `- Lines received: ${int(r.emit.linesReceived)} in ${r.emit.seconds.toFixed(2)} s = **${int(r.emit.linesPerSecond)} lines/s**`,
    `- bpftrace \`lost_events\`: **${int(r.emit.lostEvents)}**`,
    `- CPU the agent's reader spent: ${r.emit.readerCpuSeconds.toFixed(2)} s (${((r.emit.readerCpuSeconds / Math.max(1, r.emit.linesReceived)) * 1e6).toFixed(2)} µs per line)`,
    `- Received + lost = ${int(r.emit.linesReceived + r.emit.lostEvents)} of ${int(r.emit.syscalls)} calls`,
    '',
    "This is the ceiling of the probe path on this machine: above it bpftrace's perf buffer",
    'overflows and the kernel reports the overflow as `lost_events`, which the agent counts in',
    '`conntrack_observer_probe_events_lost_total`.',
    '',
    '## 3. Idle cost',
    '',
    '`bench/idle-cost.ts`: the built agent (`node dist/main.js --listen 127.0.0.1:<free port>',
    '--probe-mode tracepoint`), its own network namespace, no Kubernetes API, started, waited on',
    `until \`/readyz\` answers 200, then ${r.idle.settleSeconds.toFixed(0)} s to settle (start-up work is not idle cost); then`,
    `${r.idle.seconds.toFixed(0)} s with no lab traffic (${r.idle.decodedEvents} probe events decoded in the window). Exact run time`,
    'is summed from `/proc/<pid>/task/*/schedstat`, wake-ups are voluntary context switches; the',
    'tick-sampled utime+stime from `/proc/<pid>/stat` is shown beside it. RSS is `VmRSS` at the end.',
    "The bpftrace processes are the agent's descendants. The same window is measured twice: with the",
    `machine's bpftrace (${r.machine.bpftrace}), then with the agent on Debian 13's (${r.machine.newerBpftrace}, \`--bpftrace\`,`,
    'as the image ships it), each with its own bare Node processes; on the latter a third time with',
    "`--bpftrace-page-out off`, to show what paging bpftrace's compiler out once it has attached saves",
    '(the default; README, "One bpftrace process"). Two bare Node processes run over the same',
    'window as the floor of this VM: each wake-up that runs JavaScript costs about 1–10 ms here,',
    "depending on the host's state, so the agent's figure moves with the machine.",
    '',
    '| process | pids | CPU % (exact) | wake-ups/s | ms per wake-up | CPU % (ticks) | RSS MB |',
    '|---|---|---|---|---|---|---|',
    `| agent (node) | ${r.idle.agent.pids.join(', ')} | ${r.idle.agentExact.cpuPercent.toFixed(2)} | ${r.idle.agentExact.wakeupsPerSecond.toFixed(2)} | ${r.idle.agentExact.msPerWakeup.toFixed(2)} | ${r.idle.agent.cpuPercent.toFixed(2)} | ${mb(r.idle.agent.rssBytes)} |`,
    `| probes (${[...new Set(r.idle.bpftrace.commands)].join(', ')}, ${r.machine.bpftrace}) | ${r.idle.bpftrace.pids.join(', ')} | | | | ${r.idle.bpftrace.cpuPercent.toFixed(2)} | ${mb(r.idle.bpftrace.rssBytes)} |`,
    `| agent (node), on ${r.machine.newerBpftrace} | ${r.idleOnNewer.agent.pids.join(', ')} | ${r.idleOnNewer.agentExact.cpuPercent.toFixed(2)} | ${r.idleOnNewer.agentExact.wakeupsPerSecond.toFixed(2)} | ${r.idleOnNewer.agentExact.msPerWakeup.toFixed(2)} | ${r.idleOnNewer.agent.cpuPercent.toFixed(2)} | ${mb(r.idleOnNewer.agent.rssBytes)} |`,
    `| probes (${[...new Set(r.idleOnNewer.bpftrace.commands)].join(', ')}, ${r.machine.newerBpftrace}) | ${r.idleOnNewer.bpftrace.pids.join(', ')} | | | | ${r.idleOnNewer.bpftrace.cpuPercent.toFixed(2)} | ${mb(r.idleOnNewer.bpftrace.rssBytes)} |`,
    `| probes (${[...new Set(r.idleCompilerResident.bpftrace.commands)].join(', ')}, ${r.machine.newerBpftrace}), compiler left resident (\`--bpftrace-page-out off\`) | ${r.idleCompilerResident.bpftrace.pids.join(', ')} | | | | ${r.idleCompilerResident.bpftrace.cpuPercent.toFixed(2)} | ${mb(r.idleCompilerResident.bpftrace.rssBytes)} |`,
    ...r.idle.baselines.map(
      (b) =>
        `| bare \`node -e '${b.script}'\` | ${b.tick.pids.join(', ')} | ${b.exact.cpuPercent.toFixed(2)} | ${b.exact.wakeupsPerSecond.toFixed(2)} | ${b.exact.msPerWakeup.toFixed(2)} | ${b.tick.cpuPercent.toFixed(2)} | ${mb(b.tick.rssBytes)} |`,
    ),
    '',
    'The machine is not otherwise quiet: `tracepoint:skb:kfree_skb` fires for every skb freed',
    "anywhere on the host, so the probes' idle CPU includes filtering the host's own traffic.",
    '',
    renderUdpSection(r.udp, r.stormRunTime),
    '',
    renderSeriesSection(r.series),
    '',
    renderKubernetesSection([r.kubernetes]),
    '',
    '## 7. Insert-failure storm and start-up',
    '',
    "`bench/insert-failure-storm.ts`: the lab's same-port SNAT race (`test/lab/scenarios/snat-race.ts`:",
    'two pods send from one source port to one upstream at the same instant, each on its own CPU),',
    `round after round with no pause for ${r.insertStorm.seconds} s, the built agent attached (tracepoint mode,`,
    "standalone). Truth: the kernel's `insert_failed` delta in the lab's node namespace (`conntrack -S`).",
    'Start-up: from spawning the agent to `/readyz` 200, which includes compiling and attaching the',
    "combined bpftrace program and the first reading of the kernel's counters.",
    '',
    '| rounds | kernel insert_failed | agent insert_failures_total | unexplained | settled after | start-up to ready |',
    '|---|---|---|---|---|---|',
    `| ${int(r.insertStorm.rounds)} | ${int(r.insertStorm.kernelInsertFailed)} | ${int(r.insertStorm.agentCounted)} | ${int(r.insertStorm.unexplained)} | ${r.insertStorm.settleSeconds.toFixed(1)} s | ${r.insertStorm.secondsToReady.toFixed(1)} s |`,
    '',
    renderGuestStartUpSection(r.guestStartUp, r.insertStorm.secondsToReady),
    '## 8. Count maps at their bound',
    '',
    '`bench/count-map-bound.ts`: the DNS-drop probe (`probes/tracepoint/dns-drops.bt`) with a map',
    `bound of ${int(r.mapBound[0]?.mapKeys ?? 0)} keys (\`BPFTRACE_MAP_KEYS_MAX\` and \`BPFTRACE_MAX_MAP_KEYS\`; the agent gives ${int(COUNT_MAP_KEYS)}) and one query from each lab pod to each of`,
    `${int(r.mapBound[0]?.distinctKeys ?? 0)} silent upstream addresses: one key per address (both pods leave masqueraded as the node), more keys than the map holds. Truth: the upstream's`,
    '`Udp NoPorts` delta. The printed maps are read as the agent reads them (`src/decode/dns-drop-counts.ts`):',
    "drops under a key, and the totals map's shortfall reported as uncounted",
    '(`dns_drops_total{direction="unknown",source_ip=""}` in the agent). Run on the machine\'s bpftrace,',
    "which says nothing when a map is full, then on the image's, which prints a `helper_error` record for",
    'each update the full map refused (the agent reads past them: the shortfall is what it counts).',
    '',
    '| bpftrace | bound | distinct keys | dropped | counted by key | keys held | uncounted | counted + uncounted | helper_error records |',
    '|---|---|---|---|---|---|---|---|---|',
    ...r.mapBound.map(
      (m) =>
        `| ${m.bpftrace} | ${int(m.mapKeys)} | ${int(m.distinctKeys)} | ${int(m.dropped)} | ${int(m.countedByKey)} | ${int(m.keysHeld)} | ${int(m.uncounted)} | ${int(m.countedByKey + m.uncounted)} | ${int(m.helperErrors)} |`,
    ),
    '',
    renderDnsLoadSection(r.dnsLoad),
  );
  return lines.join('\n');
}

/** Section 6: the agent in Kubernetes mode against a large cluster, one row per build measured. */
export function renderKubernetesSection(runs: readonly KubernetesScaleRun[]): string {
  const shape = runs[0]?.shape;
  const calls = (c: { lists: number; pages: number; watches: number }) =>
    `${c.lists} lists (${c.pages} pages), ${c.watches} watches`;
  return [
    '## 6. Kubernetes mode at scale',
    '',
    '`bench/kubernetes-scale.ts`: the built agent (`node dist/main.js --probe-mode counters-only',
    '--kubeconfig … --node-name …`: no bpftrace, the Kubernetes side alone) against the fake API',
    'server of `test/support/fake-apiserver.ts` (real HTTP and Kubernetes JSON) holding',
    shape
      ? `${int(shape.services)} Services and ${int(shape.endpointSlices)} EndpointSlices of ${shape.endpointsPerSlice} endpoints (with the managedFields and annotations a\nreal server returns) and ${shape.podsOnNode} pods on the node.`
      : '',
    'Ready = start of the process to `/readyz` 200; RSS (VmRSS) and heap (V8 heap used) after the',
    'settle window; calls = list and watch requests the fake server received. Then the server',
    'drops every connection and refuses for the outage, and the calls until the end of the',
    'count are those of the restart: a list there is a relist, a watch alone a resume.',
    '',
    '| build | ready | RSS | heap | calls at rest | calls after an API-server restart | RSS after |',
    '|---|---|---|---|---|---|---|',
    ...runs.map(
      (r) =>
        `| ${r.label} | ${r.readySeconds.toFixed(1)} s | ${mb(r.rssBytes)} MB | ${mb(r.heapUsedBytes)} MB | ${calls(r.atRest)} in ${r.settleSeconds} s | ${calls(r.afterRestart)} (${r.outageSeconds} s down, counted ${r.afterRestartSeconds} s) | ${mb(r.rssAfterRestartBytes)} MB |`,
    ),
    '',
  ].join('\n');
}
