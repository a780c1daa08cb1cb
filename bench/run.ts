/*
 * `npm run bench`: every benchmark in one run (root required), figures printed and written to
 * docs/benchmarks.md. Each benchmark cleans up after itself, also when it fails.
 * `npm run bench -- --only series` runs the series benchmark alone (no root) and prints its
 * section without writing the report: a partial run cannot stand for the whole one.
 * `npm run bench -- --only kubernetes [--agent-main PATH] [--label TEXT]` runs the Kubernetes
 * scale benchmark alone (no root; it needs `npm run build` first), against this tree's
 * dist/main.js or another build's, and prints its section.
 * `npm run bench -- --only insert-storm` (root, `npm run build` first) and `--only map-bound`
 * (root) run sections 7 and 8 alone and print their figures; `--only dns-load` (root,
 * `npm run build` first) runs section 9 alone and prints its section; `--only storm-cost` (root,
 * `npm run build` first) runs the run-time measurement of section 4 alone and prints it;
 * `--only guest-start-up` (root, `npm run build` first) boots the 6.1 guest of section 7b alone
 * and prints its section (the agent started there on both bpftraces); `--only udp` (root,
 * `npm run build` first) runs section 4's packet rates alone and prints the kept fractions;
 * `--only idle` (root, `npm run build` first) runs sections 3, 3b and 3c, the agent at rest on
 * each bpftrace, and prints their figures. Sections 3, 4, 4b and 7b also run the agent on
 * Debian 13's bpftrace: the first run bundles it
 * (about 64 MB of packages, test/kernels/newer-bpftrace.ts), later ones find it in /var/cache.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { buildBenchPrograms } from './build-c.js';
import { measureCountMapBound, type CountMapBound } from './count-map-bound.js';
import { measureDecodeThroughput } from './decode-throughput.js';
import { measureDnsLoad } from './dns-load.js';
import { renderDnsLoadSection } from './dns-load-report.js';
import { measureEmitRate, type EmitRate } from './emit-rate.js';
import { measureIdleCost, type IdleCost } from './idle-cost.js';
import { measureInsertFailureStorm } from './insert-failure-storm.js';
import { measureGuestStartUp } from './guest-start-up.js';
import {
  GuestStartUpError,
  renderGuestStartUpSection,
  type GuestStartUpFailure,
  type GuestStartUpFigures,
} from './guest-start-up-result.js';
import { measureKubernetesScale } from './kubernetes-scale.js';
import { machineFacts } from './machine.js';
import { resolveNewerBpftrace, type NewerBpftrace } from './newer-bpftrace.js';
import {
  renderKubernetesSection,
  renderReport,
  renderSeriesSection,
  renderStormRunTime,
  renderUdpKept,
  seriesFlat,
  type DecodeFigures,
} from './report.js';
import { measureSeriesRetention } from './series-retention.js';
import { measureStormRunTime, type StormRunTime } from './storm-run-time.js';
import type { DnsLoadFigures } from './dns-load-result.js';
import { median } from './stats.js';
import { measureUdpThroughput, type UdpRun } from './udp-throughput.js';

const log = (line: string) => process.stdout.write(`${line}\n`);

/** Rounds of section 4, alone or in the whole run: the same figure either way. */
const UDP_ROUNDS = 7;

const SECTIONS_RUN_ALONE = [
  'series',
  'kubernetes',
  'insert-storm',
  'map-bound',
  'dns-load',
  'storm-cost',
  'guest-start-up',
  'udp',
  'idle',
] as const;

/** Section 8 with the machine's bpftrace, then the image's: each prints its map-full differently. */
async function measureMapBoundOnBoth(
  machineBpftrace: string,
  newer: NewerBpftrace,
): Promise<CountMapBound[]> {
  const runs: CountMapBound[] = [];
  for (const bpftrace of [{ path: 'bpftrace', version: machineBpftrace }, newer]) {
    const run = await measureCountMapBound(64, 100, bpftrace);
    log(`   ${JSON.stringify(run)}`);
    runs.push(run);
  }
  return runs;
}

function flagValue(argv: readonly string[], flag: string): string | undefined {
  const at = argv.indexOf(flag);
  return at === -1 ? undefined : argv[at + 1];
}

function onlySection(argv: readonly string[]): string | undefined {
  const at = argv.indexOf('--only');
  if (at === -1) return undefined;
  const section = argv[at + 1];
  if (!(SECTIONS_RUN_ALONE as readonly string[]).includes(section ?? '')) {
    throw new Error(
      `--only takes one of: ${SECTIONS_RUN_ALONE.join(', ')} (got ${section ?? 'nothing'})`,
    );
  }
  return section;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (onlySection(argv) === 'kubernetes') {
    log('6. Kubernetes mode at scale (the built agent, counters-only)');
    const run = await measureKubernetesScale({
      mainPath: flagValue(argv, '--agent-main'),
      label: flagValue(argv, '--label') ?? 'this build',
    });
    log(`   ${JSON.stringify(run)}`);
    log(renderKubernetesSection([run]));
    return;
  }
  if (onlySection(argv) === 'insert-storm') {
    log(
      '7. insert-failure storm and start-up (the built agent, tracepoint mode; npm run build first)',
    );
    log(`   ${JSON.stringify(await measureInsertFailureStorm(20))}`);
    return;
  }
  if (onlySection(argv) === 'map-bound') {
    log('8. count maps at their bound (the DNS-drop probe, a bound of 64 keys, each bpftrace)');
    const newer = await resolveNewerBpftrace((line) => log(`   ${line}`));
    const machineBpftrace = (await execa('bpftrace', ['--version'])).stdout.trim();
    await measureMapBoundOnBoth(machineBpftrace, newer);
    return;
  }
  if (onlySection(argv) === 'storm-cost') {
    log('4b. run time in the kernel per storm packet (npm run build first)');
    const newer = await resolveNewerBpftrace((line) => log(`   ${line}`));
    const programs = await buildBenchPrograms();
    try {
      log(renderStormRunTime(await measureStormRunTime(programs, newer)));
    } finally {
      programs.remove();
    }
    return;
  }
  if (onlySection(argv) === 'udp') {
    log('4. UDP packets/s between namespaces, and the storm (npm run build first)');
    const newer = await resolveNewerBpftrace((line) => log(`   ${line}`));
    const programs = await buildBenchPrograms();
    try {
      const runs = await measureUdpThroughput(programs, newer, UDP_ROUNDS, 4, (line) =>
        log(`   ${line}`),
      );
      log(renderUdpKept(runs));
    } finally {
      programs.remove();
    }
    return;
  }
  if (onlySection(argv) === 'guest-start-up') {
    if (process.getuid?.() !== 0) throw new Error('the guest needs root (QEMU, apt-get)');
    log('7b. start-up on a 6.1 guest (QEMU, software emulation; npm run build first)');
    const newer = await resolveNewerBpftrace((line) => log(`   ${line}`));
    const guest = await measureGuestStartUp({ newer, log: (line) => log(`   ${line}`) });
    log(`   ${JSON.stringify(guest)}`);
    log(renderGuestStartUpSection(guest));
    if (guest.result.failures.length > 0) process.exitCode = 1;
    return;
  }
  if (onlySection(argv) === 'idle') {
    log('3. idle cost of the built agent (30 s settle, 60 s window; npm run build first)');
    log(`   ${JSON.stringify(await measureIdleCost())}`);
    const newer = await resolveNewerBpftrace((line) => log(`   ${line}`));
    log(`3b. the same on ${newer.version}`);
    log(`   ${JSON.stringify(await measureIdleCost(60, 30, ['--bpftrace', newer.path]))}`);
    log(`3c. the same on ${newer.version} with its compiler left resident`);
    const resident = ['--bpftrace', newer.path, '--bpftrace-page-out', 'off'];
    log(`   ${JSON.stringify(await measureIdleCost(60, 30, resident))}`);
    return;
  }
  if (onlySection(argv) === 'dns-load') {
    log('9. DNS query load (the built agent with --dns-query-tracking on; npm run build first)');
    const programs = await buildBenchPrograms();
    try {
      const dnsLoad = await measureDnsLoad(programs, { log: (line) => log(`   ${line}`) });
      log(renderDnsLoadSection(dnsLoad));
    } finally {
      programs.remove();
    }
    return;
  }
  if (onlySection(argv) === 'series') {
    log('5. bounded series: 100,000 client addresses over time');
    const series = await measureSeriesRetention();
    log(renderSeriesSection(series));
    const retention = series.runs.find((run) => run.variant === 'retention');
    if (retention) log(`flat: ${JSON.stringify(seriesFlat(retention))}`);
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('npm run bench needs root (bpftrace, namespaces)');
  const started = Date.now();
  log('building the agent (npm run build)');
  await execa('npm', ['run', 'build'], { cwd: fileURLToPath(new URL('..', import.meta.url)) });
  const newer = await resolveNewerBpftrace((line) => log(`   ${line}`));
  const machine = await machineFacts(newer);
  log(JSON.stringify(machine));

  log('1. decode + attribute + count throughput');
  const decodeRuns = Array.from({ length: 5 }, () => measureDecodeThroughput(1_000_000));
  const decode: DecodeFigures = {
    runs: decodeRuns.map((r) => r.eventsPerSecond),
    median: median(decodeRuns.map((r) => r.eventsPerSecond)),
    linesPerRun: decodeRuns[0]!.lines,
    fixtures: decodeRuns[0]!.fixtures,
  };
  log(
    `   runs ${decode.runs.map((v) => Math.round(v)).join(', ')} events/s; median ${Math.round(decode.median)}`,
  );

  const programs = await buildBenchPrograms();
  let emit: EmitRate;
  let idle: IdleCost;
  let idleOnNewer: IdleCost;
  let idleCompilerResident: IdleCost;
  let udp: UdpRun[];
  let stormRunTime: StormRunTime[];
  let dnsLoad: DnsLoadFigures;
  try {
    log('2. bpftrace emit ceiling');
    emit = await measureEmitRate(programs, 5);
    log(`   ${JSON.stringify(emit)}`);
    log('3. idle cost of the built agent (30 s settle, 60 s window)');
    idle = await measureIdleCost();
    log(`   ${JSON.stringify(idle)}`);
    log(`3b. the same on ${newer.version}`);
    idleOnNewer = await measureIdleCost(60, 30, ['--bpftrace', newer.path]);
    log(`   ${JSON.stringify(idleOnNewer)}`);
    log(`3c. the same on ${newer.version} with its compiler left resident`);
    idleCompilerResident = await measureIdleCost(60, 30, [
      '--bpftrace',
      newer.path,
      '--bpftrace-page-out',
      'off',
    ]);
    log(`   ${JSON.stringify(idleCompilerResident)}`);
    log('4. UDP packets/s between namespaces, without and with the agent');
    udp = await measureUdpThroughput(programs, newer, UDP_ROUNDS, 4, (line) => log(`   ${line}`));
    log('4b. run time in the kernel per storm packet (kernel.bpf_stats_enabled)');
    stormRunTime = await measureStormRunTime(programs, newer);
    log(`   ${JSON.stringify(stormRunTime)}`);
    log('9. DNS query load, without and with the agent (--dns-query-tracking on)');
    dnsLoad = await measureDnsLoad(programs, { log: (line) => log(`   ${line}`) });
  } finally {
    programs.remove();
  }
  log('5. bounded series: 100,000 client addresses over time');
  const series = await measureSeriesRetention();
  log('6. Kubernetes mode at scale (the built agent, counters-only)');
  const kubernetes = await measureKubernetesScale({ label: 'this build' });
  log('7. insert-failure storm and start-up (the built agent, tracepoint mode)');
  const insertStorm = await measureInsertFailureStorm(20);
  log(`   ${JSON.stringify(insertStorm)}`);
  log('7b. start-up on a 6.1 guest (QEMU, software emulation)');
  let guestStartUp: GuestStartUpFigures | GuestStartUpFailure;
  try {
    guestStartUp = await measureGuestStartUp({ newer, log: (line) => log(`   ${line}`) });
    log(`   ${JSON.stringify(guestStartUp)}`);
  } catch (error) {
    // An emulated guest can be lost with nothing wrong in the agent: the report says so
    // rather than the whole run's figures being thrown away.
    if (!(error instanceof GuestStartUpError)) throw error;
    guestStartUp = { error: error.message };
    log(`   not measured: ${error.message}`);
  }
  log('8. count maps at their bound (the DNS-drop probe, a bound of 64 keys, each bpftrace)');
  const mapBound = await measureMapBoundOnBoth(machine.bpftrace, newer);
  const wallSeconds = (Date.now() - started) / 1000;
  const report = renderReport({
    date: new Date(),
    machine,
    decode,
    emit,
    idle,
    idleOnNewer,
    idleCompilerResident,
    udp,
    stormRunTime,
    series,
    kubernetes,
    insertStorm,
    guestStartUp,
    mapBound,
    dnsLoad,
    wallSeconds,
    loadAtEnd: loadavg()[0] ?? Number.NaN,
  });
  writeFileSync(new URL('../docs/benchmarks.md', import.meta.url), report);
  log(report);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
