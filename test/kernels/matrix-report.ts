/**
 * Turns the matrix's per-kernel proof results (OUT/<kernel>/results/prove-<mode>.json, written
 * by prove-agent.ts inside each guest) into the table of docs/probe-matrix.md and a summary
 * for the CI log. The table is regenerated between its markers on every run, never typed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelSpec } from './catalogue.js';
import type { GuestRunResult } from './guest-run.js';
import {
  parseProofResult,
  proofFileName,
  type AttributedFigure,
  type CountFigure,
  type ProofFigures,
  type ProofResult,
} from './proof-result.js';

export const tableBegin =
  '<!-- kernel-matrix:begin — produced by `npm run test:kernels:ci`; edits here are overwritten -->';
export const tableEnd = '<!-- kernel-matrix:end -->';

/** One expected (kernel, mode) cell: its result, or why there is none. */
export interface MatrixEntry {
  readonly spec: KernelSpec;
  readonly requestedMode: string;
  readonly result: ProofResult | undefined;
  /** Why there is no result (the guest timed out, the file is missing or unreadable). */
  readonly missing: string | undefined;
}

export interface MatrixReport {
  readonly entries: readonly MatrixEntry[];
  readonly guests: readonly GuestRunResult[];
  readonly passed: boolean;
}

function readGuests(out: string): GuestRunResult[] {
  const file = join(out, 'summary.json');
  if (!existsSync(file)) return [];
  return JSON.parse(readFileSync(file, 'utf8')) as GuestRunResult[];
}

function guestOutcome(guest: GuestRunResult | undefined): string {
  if (guest === undefined) return 'the guest did not run';
  const outcome = guest.outcome;
  switch (outcome.kind) {
    case 'exited':
      return `the command exited ${outcome.exitCode}`;
    case 'timed-out':
      return `the guest timed out after ${outcome.afterSeconds} s`;
    case 'interrupted':
      return 'the run was interrupted';
    case 'guest-failed':
      return `the guest failed (${outcome.ranCommand ? 'command started' : 'no boot'})`;
  }
}

/** Reads every expected result of `specs` under `out`; a missing one fails the report. */
export function loadMatrix(out: string, specs: readonly KernelSpec[]): MatrixReport {
  const guests = readGuests(out);
  const entries: MatrixEntry[] = [];
  for (const spec of specs) {
    const guest = guests.find((g) => g.kernel === spec.id);
    for (const mode of ['auto', ...spec.proof.explicitModes]) {
      const file = join(out, spec.id, 'results', proofFileName(mode));
      let result: ProofResult | undefined;
      let missing: string | undefined;
      if (!existsSync(file)) {
        missing = `no result: ${guestOutcome(guest)}`;
      } else {
        try {
          result = parseProofResult(
            readFileSync(file, 'utf8'),
            `${spec.id}/${proofFileName(mode)}`,
          );
        } catch (error) {
          missing = (error as Error).message;
        }
      }
      entries.push({ spec, requestedMode: mode, result, missing });
    }
  }
  const passed = entries.every((entry) => entry.result?.passed === true);
  return { entries, guests, passed };
}

const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

function pair(figure: CountFigure | undefined, unit: string): string {
  if (figure === undefined) return '—';
  if (figure.kernel === null) return `${figure.agent} / no counter`;
  const mark = figure.agent === figure.kernel ? '' : ' **≠**';
  return `${figure.agent} / ${figure.kernel}${mark} (${figure.sent} ${unit})`;
}

/** An IPv6 DNS-drop cell: the count pair, then how many the agent put on the client's address. */
function attributed(figure: AttributedFigure | undefined): string {
  if (figure === undefined) return '—';
  const mark = figure.attributed === figure.kernel ? '' : ' **≠**';
  return `${pair(figure, 'queries')}, ${figure.attributed} on ${figure.source}${mark}`;
}

/**
 * The unanswered-queries cell: the count pair, then how many the agent gave the firewall as
 * cause (all of them, when it linked each query to the rule's drop).
 */
function unansweredCell(figure: ProofFigures['dnsUnanswered']): string {
  if (figure === undefined) return '—';
  const mark = figure.firewall === figure.kernel ? '' : ' **≠**';
  return `${pair(figure, 'queries')}, ${figure.firewall} firewall${mark}`;
}

function row(entry: MatrixEntry): string {
  const { spec, requestedMode, result } = entry;
  const kernel = `${spec.id} (${spec.runBy})`;
  if (result === undefined) {
    return `| ${kernel} | ${requestedMode} | — | — | — | — | — | — | — | — | — | — | — | — | — | **FAIL**: ${cell(entry.missing ?? '')} |`;
  }
  const f = result.figures;
  const ready =
    result.readyz.afterSeconds === null ? 'never ready' : `ready ${result.readyz.afterSeconds} s`;
  const clash = (figure: typeof f.clashResolved): string =>
    figure === undefined
      ? result.mode === 'kprobe'
        ? '—'
        : 'not observable'
      : `${pair(figure, 'rounds')}, ${figure.flows} flows`;
  // Results from before the IPv6 race have no IPv6 figures: a dash, not a failure.
  const ipv6 = f.insertFailures6;
  const ipv6Named =
    ipv6 === undefined
      ? '—'
      : `${ipv6.snatOfPods} / ${ipv6.kernel ?? 'no counter'}${ipv6.snatOfPods === ipv6.kernel ? '' : ' **≠**'}`;
  const failed = result.checks.filter((check) => !check.passed);
  const verdict = result.passed
    ? `PASS (${result.checks.length} checks)`
    : `**FAIL**: ${cell(failed.map((check) => `${check.name}: ${check.detail}`).join('; '))}`;
  return [
    '',
    kernel,
    requestedMode,
    `${result.mode ?? 'none'}, ${ready}`,
    pair(f.insertFailures, 'rounds'),
    pair(ipv6, 'rounds'),
    ipv6Named,
    clash(f.clashResolved),
    // A dash in kprobe mode for results from before the IPv6 ClusterIP race.
    clash(f.clashResolved6),
    pair(f.dnsFirewall, 'queries'),
    pair(f.dnsNoListener, 'queries'),
    // Results from before the IPv6 DNS checks have no such figures: a dash, as above.
    attributed(f.dnsFirewall6),
    attributed(f.dnsNoListener6),
    // Results from before DNS query tracking was proven have neither: a dash, as above.
    pair(f.dnsAnswered, 'queries'),
    unansweredCell(f.dnsUnanswered),
    f.unexplained === undefined ? '—' : String(f.unexplained),
    verdict,
    '',
  ]
    .join(' | ')
    .trim();
}

/** The bpftrace versions the results name; results from before they did were 0.17's. */
function bpftraceOf(report: MatrixReport): string {
  const versions = new Set(
    report.entries.flatMap((entry) =>
      entry.result === undefined ? [] : [entry.result.bpftrace ?? 'bpftrace v0.17.0'],
    ),
  );
  return versions.size === 0 ? 'bpftrace' : [...versions].sort().join(' and ');
}

/** The generated section of docs/probe-matrix.md, markers included. */
export function renderTable(report: MatrixReport, date: string): string {
  const lines = [
    tableBegin,
    '',
    `Last run: ${date}, Debian's kernel builds under QEMU (software emulation, 2 vCPUs), ${bpftraceOf(report)},`,
    'the agent in the lab (`test/kernels/prove-agent.ts`). Counts are agent / kernel over',
    "each scenario's window, the kernel's counted in the lab's node namespace with `conntrack -S`",
    "(insert failures: `insert_failed`; resolved clashes: `clash_resolve`), the DNS drops' by the",
    "lab (the firewall rule's packet count; the upstream's Udp `NoPorts`); unexplained is the",
    "agent's `unexplained_insert_failures_total` from readiness on. The lab is dual-stack: the IPv6",
    'columns are the same SNAT race over IPv6 (`ip6tables` MASQUERADE on the node), its insert',
    'failures as the agent counted them and as it named them SNAT races of the pods’ IPv6 addresses,',
    "the one-socket DNAT race from a pod's IPv6 address to an IPv6 ClusterIP (`ip6tables` DNAT),",
    "and the same two DNS drops over IPv6 (the node's `ip6tables` DROP rule's packet count; the",
    "upstream's `Udp6NoPorts`), with how many the agent put on the client's IPv6 address: the pod's",
    "for the firewall, the node's upstream address for the silent server (it masqueraded the query).",
    'The agents run with `--dns-query-tracking on` (see above): the DNS query columns are the queries a pod',
    'sent to the ClusterIP that the agent counted answered (`dns_queries_total`) against the answers',
    'the client received, then, with one of its two backends firewalled (a DROP rule after DNAT),',
    "those it counted unanswered (`dns_unanswered_queries_total`) against the rule's packet count,",
    'with how many it gave the firewall as cause.',
    '',
    '| kernel | `--probe-mode` | mode, ready after agent start | insert failures (snat-race) | IPv6 insert failures (snat-race over IPv6) | IPv6: SNAT races named by pod IPv6 address | resolved clashes (dnat-clash) | IPv6 resolved clashes (dnat-clash to an IPv6 ClusterIP) | DNS drops: firewall (`NETFILTER_DROP`) | DNS drops: no listener (`NO_SOCKET`) | IPv6 DNS drops: firewall (`NETFILTER_DROP`), on the client | IPv6 DNS drops: no listener (`NO_SOCKET`), on the client | DNS queries answered (via the ClusterIP), agent / client | DNS queries unanswered (a backend firewalled), agent / DROP rule | unexplained | result |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...report.entries.map(row),
    '',
    'Why each mode, in the agent’s words, and what it could not run:',
    '',
  ];
  for (const entry of report.entries) {
    const result = entry.result;
    if (result === undefined) continue;
    lines.push(
      `- **${entry.spec.id}** (${result.release}), \`${entry.requestedMode}\` → ${result.mode ?? 'none'}: ${cell(result.reason ?? 'did not start')}`,
    );
    if (result.probes.length > 0) lines.push(`  Probes: ${cell(result.probes.join(', '))}.`);
    if (result.unavailable.length > 0)
      lines.push(`  Unavailable: ${cell(result.unavailable.join('; '))}.`);
  }
  const notProven = [...new Set(report.entries.map((e) => e.spec))].filter(
    (spec) => spec.proof.notProven !== undefined,
  );
  if (notProven.length > 0) {
    lines.push('', 'Not proven, and why:', '');
    for (const spec of notProven) lines.push(`- ${spec.id}: ${spec.proof.notProven}`);
  }
  if (report.guests.length > 0) {
    lines.push('', 'Durations (host wall):', '');
    for (const guest of report.guests) {
      const modes = report.entries
        .filter((entry) => entry.spec.id === guest.kernel && entry.result !== undefined)
        .map(
          (entry) =>
            `${entry.requestedMode} ${entry.result!.seconds['total']} s (${entry.result!.seconds['toReady'] === undefined ? 'never ready' : `ready after ${entry.result!.seconds['toReady']} s`})`,
        );
      lines.push(
        `- ${guest.kernel}: boot ${guest.bootSeconds?.toFixed(0) ?? '—'} s, whole guest ${guest.durationSeconds.toFixed(0)} s; ${modes.join(', ')}`,
      );
    }
  }
  lines.push('', tableEnd);
  return lines.join('\n');
}

/** `doc` with its generated section replaced; throws when the markers are not there once each. */
export function replaceTable(doc: string, table: string): string {
  const begin = doc.indexOf(tableBegin);
  const end = doc.indexOf(tableEnd);
  if (begin < 0 || end < begin || doc.indexOf(tableBegin, begin + 1) >= 0) {
    throw new Error(`the document needs the markers "${tableBegin}" and "${tableEnd}", once each`);
  }
  return doc.slice(0, begin) + table + doc.slice(end + tableEnd.length);
}

/** Lines for the CI log: one per kernel and mode, then every failed check. */
export function summaryLines(report: MatrixReport): string[] {
  const lines: string[] = [];
  for (const entry of report.entries) {
    const head = `kernel ${entry.spec.id} --probe-mode ${entry.requestedMode}`;
    const result = entry.result;
    if (result === undefined) {
      lines.push(`${head}: FAIL ${entry.missing ?? ''}`);
      continue;
    }
    const f = result.figures;
    const figure = (name: string, value: CountFigure | undefined): string =>
      value === undefined ? '' : `, ${name} ${value.agent}/${value.kernel ?? '-'}`;
    lines.push(
      `${head}: ${result.passed ? 'PASS' : 'FAIL'} mode ${result.mode ?? 'none'}` +
        (result.readyz.afterSeconds === null
          ? ', never ready'
          : `, ready after ${result.readyz.afterSeconds} s`) +
        figure('insert failures', f.insertFailures) +
        figure('IPv6 insert failures', f.insertFailures6) +
        figure('clash resolved', f.clashResolved) +
        figure('IPv6 clash resolved', f.clashResolved6) +
        figure('DNS firewall', f.dnsFirewall) +
        figure('DNS no listener', f.dnsNoListener) +
        figure('IPv6 DNS firewall', f.dnsFirewall6) +
        figure('IPv6 DNS no listener', f.dnsNoListener6) +
        figure('DNS answered', f.dnsAnswered) +
        figure('DNS unanswered', f.dnsUnanswered) +
        (f.unexplained === undefined ? '' : `, unexplained ${f.unexplained}`) +
        ` (agent/kernel; ${result.seconds['total']} s)`,
    );
    if (entry.requestedMode === 'auto') lines.push(`  why: ${result.reason ?? 'did not start'}`);
    for (const check of result.checks.filter((c) => !c.passed))
      lines.push(`  FAILED ${check.name}: ${check.detail}`);
  }
  return lines;
}
