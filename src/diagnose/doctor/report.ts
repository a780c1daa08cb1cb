import type { CommandRunner, CapabilityFiles } from '../../detect/capabilities.js';
import { detectCapabilities } from '../../detect/capabilities.js';
import { selectProbeMode } from '../../detect/mode-selection.js';
import type { NodeDiagnosis, PodDiagnosis } from '../../events/diagnosis.js';
import type { Clock } from '../../shared/clock.js';
import { parseConntrackStatFile } from '../../sources/kernel-stats/conntrack-stat-file.js';
import type { HostFiles } from '../host-files.js';
import type { NameserverContext } from '../nameserver-kind.js';
import { netnsAddressesOfPid } from '../netns-addresses.js';
import { diagnoseNode } from '../node-diagnoser.js';
import { diagnosePod } from '../pod-diagnoser.js';
import { listPids, netnsInodeOfPid } from '../pod-processes.js';
import { adviceFor, summaryOf } from '../remedies.js';
import type { Remedy } from '../../events/advice.js';
import type { ReproduceReport } from '../reproduce/run-reproduce.js';
import {
  readKubernetesPods,
  type DoctorKubernetes,
  type NodePodLister,
} from './kubernetes-pods.js';

export const DOCTOR_REPORT_VERSION = 1;

export interface Finding {
  readonly id: string;
  /** `node` or the pod (its addresses standalone). */
  readonly subject: string;
  readonly text: string;
  readonly remedies: readonly Remedy[];
}

export interface CounterRates {
  readonly intervalSeconds: number;
  readonly totals: Readonly<Record<string, number>>;
  readonly perSecond: Readonly<Record<string, number>>;
}

export interface DoctorPod {
  readonly subject: string;
  readonly addresses: readonly string[];
  readonly diagnosis: PodDiagnosis;
  readonly summary: string;
  readonly remedies: readonly Remedy[];
  readonly notes: readonly string[];
}

export interface DoctorReport {
  readonly version: typeof DOCTOR_REPORT_VERSION;
  readonly generatedAt: string;
  readonly probeMode:
    | { readonly mode: string; readonly reason: string }
    | { readonly mode: 'none'; readonly reason: string };
  readonly node: NodeDiagnosis;
  readonly counters?: CounterRates;
  /** `--reproduce`: what this kernel did in a throw-away lab. */
  readonly reproduce?: ReproduceReport;
  readonly pods: readonly DoctorPod[];
  /** `--kubeconfig`/in-cluster: this node's pods as the API has them, beside what they use. */
  readonly kubernetes?: DoctorKubernetes;
  readonly findings: readonly Finding[];
}

/** How the doctor reaches the API server, when it does. */
export interface DoctorKubernetesAccess {
  readonly nodeName: string;
  readonly source: string;
  readonly server: string;
  readonly listPods: NodePodLister;
}

export interface DoctorDependencies {
  readonly files: HostFiles;
  readonly capabilityFiles: CapabilityFiles;
  readonly procRoot: string;
  readonly netnsPid: number | 'self';
  readonly run: CommandRunner;
  readonly commandPrefix: readonly string[];
  readonly clock: Clock;
  readonly sleep: (ms: number) => Promise<void>;
  readonly bpftrace: string;
  readonly nodeLocalDnsIps: readonly string[];
  readonly clusterDnsIps: readonly string[];
  readonly intervalMs: number;
  /** Runs the lab experiment once the node is diagnosed (`--reproduce`); absent: no lab. */
  readonly reproduce?: (node: NodeDiagnosis) => Promise<ReproduceReport>;
  /** Lists this node's pods; absent: no Kubernetes section. */
  readonly kubernetes?: DoctorKubernetesAccess;
}

const RATE_COLUMNS = ['insert_failed', 'drop', 'early_drop', 'clash_resolve'] as const;
const HEADROOM_WARNING = 0.1;

/** One look at the node and every pod namespace on it: what `doctor` prints. */
export async function buildDoctorReport(deps: DoctorDependencies): Promise<DoctorReport> {
  const capabilities = await detectCapabilities({
    files: deps.capabilityFiles,
    run: deps.run,
    bpftracePath: deps.bpftrace,
  });
  const selected = selectProbeMode('auto', capabilities);
  const probeMode = selected.ok
    ? { mode: selected.selection.mode, reason: selected.selection.reason }
    : { mode: 'none' as const, reason: selected.error.message };
  const node = await diagnoseNode({ ...deps });
  const counters = await readRates(deps);
  const pods = await diagnosePods(deps, node);
  const kubernetes = deps.kubernetes
    ? await readKubernetes(deps, deps.kubernetes, node)
    : undefined;
  const reproduce = await deps.reproduce?.(node);
  return {
    version: DOCTOR_REPORT_VERSION,
    generatedAt: new Date(deps.clock.nowMs()).toISOString(),
    probeMode,
    node,
    ...(counters ? { counters } : {}),
    ...(reproduce ? { reproduce } : {}),
    pods,
    ...(kubernetes ? { kubernetes } : {}),
    findings: [
      ...nodeFindings(node, counters),
      ...pods.flatMap(podFindings),
      ...reproduceFindings(reproduce),
    ],
  };
}

async function readKubernetes(
  deps: DoctorDependencies,
  access: DoctorKubernetesAccess,
  node: NodeDiagnosis,
): Promise<DoctorKubernetes> {
  const pods = await readKubernetesPods(
    {
      files: deps.files,
      procRoot: deps.procRoot,
      clock: deps.clock,
      nodeName: access.nodeName,
      listPods: access.listPods,
      nameserverContext: nameserverContext(deps, node),
    },
    node,
  );
  return { nodeName: access.nodeName, source: access.source, server: access.server, pods };
}

function nameserverContext(deps: DoctorDependencies, node: NodeDiagnosis): NameserverContext {
  return {
    clusterDnsIps: new Set(deps.clusterDnsIps),
    nodeLocalDnsIps: new Set([...deps.nodeLocalDnsIps, ...node.nodeLocalDns.addresses]),
  };
}

async function readRates(deps: DoctorDependencies): Promise<CounterRates | undefined> {
  const path = `${deps.procRoot}/${deps.netnsPid}/net/stat/nf_conntrack`;
  const first = parseConntrackStatFile((await deps.files.readText(path)) ?? '');
  const startMs = deps.clock.nowMs();
  await deps.sleep(deps.intervalMs);
  const second = parseConntrackStatFile((await deps.files.readText(path)) ?? '');
  if (!first.ok || !second.ok) return undefined;
  const seconds = Math.max(0.001, (deps.clock.nowMs() - startMs) / 1000);
  const totals: Record<string, number> = {};
  const perSecond: Record<string, number> = {};
  for (const column of RATE_COLUMNS) {
    const after = second.stats.totals.get(column);
    const before = first.stats.totals.get(column);
    if (after === undefined || before === undefined) continue;
    totals[column] = after;
    perSecond[column] = Math.max(0, after - before) / seconds;
  }
  return { intervalSeconds: seconds, totals, perSecond };
}

async function diagnosePods(deps: DoctorDependencies, node: NodeDiagnosis): Promise<DoctorPod[]> {
  const hostInode = await netnsInodeOfPid(deps.files, deps.procRoot, 1);
  const nodeInode = await netnsInodeOfPid(deps.files, deps.procRoot, deps.netnsPid);
  const seen = new Set<number>();
  const pods: DoctorPod[] = [];
  for (const pid of await listPids(deps.files, deps.procRoot)) {
    const inode = await netnsInodeOfPid(deps.files, deps.procRoot, pid);
    if (inode === undefined || inode === hostInode || inode === nodeInode || seen.has(inode))
      continue;
    seen.add(inode);
    const addresses = (await netnsAddressesOfPid(deps.files, deps.procRoot, pid)) ?? [];
    if (addresses.length === 0) continue;
    const diagnosis = await diagnosePod(
      {
        files: deps.files,
        procRoot: deps.procRoot,
        clock: deps.clock,
        nameserverContext: () => nameserverContext(deps, node),
      },
      { target: { by: 'netns', inode }, foundBy: 'netns' },
    );
    if (!diagnosis || !diagnosis.containers.some((c) => c.resolvConf)) continue;
    // The advice for a DNS query of this pod lost in a race, the case the node is checked for.
    const advice = adviceFor(
      { race: 'snat_dnat', protocol: 'udp', dns: true, dnsRaceLike: true },
      { pod: diagnosis, node },
    );
    pods.push({
      subject: `netns ${inode} (${addresses.join(', ')})`,
      addresses,
      diagnosis,
      summary: summaryOf(diagnosis),
      remedies: advice.remedies.filter(
        (r) => r.id !== 'random-fully' && !r.id.startsWith('kernel'),
      ),
      notes: advice.notes,
    });
  }
  return pods;
}

function nodeFindings(node: NodeDiagnosis, counters: CounterRates | undefined): Finding[] {
  const findings: Finding[] = [];
  const lacking = node.natRules.filter((rule) => !rule.randomFully);
  if (lacking.length > 0) {
    const advice = adviceFor(
      { race: 'snat', protocol: 'udp', dns: false, dnsRaceLike: false },
      { pod: { status: 'unknown', reason: 'node' }, node },
    );
    findings.push({
      id: 'snat-without-random-fully',
      subject: 'node',
      text: `${lacking.length} MASQUERADE/SNAT rule(s) without --random-fully: ${lacking.map((r) => `${r.backend} ${r.chain}`).join(', ')}`,
      remedies: advice.remedies.filter((r) => r.id === 'random-fully'),
    });
  }
  if (node.kernel && !node.kernel.resolvesNatClashes) {
    findings.push({
      id: 'kernel-without-nat-clash-resolution',
      subject: 'node',
      text: `kernel ${node.kernel.release} drops UDP packets of one socket given different DNAT targets (fixed in 5.6${node.kernel.resolvesMatchingClashes ? '' : '; identical entries in 4.19'})`,
      remedies: adviceFor(
        { race: 'dnat', protocol: 'udp', dns: false, dnsRaceLike: false },
        { pod: { status: 'unknown', reason: 'node' }, node },
      ).remedies.filter((r) => r.id.startsWith('kernel')),
    });
  }
  const headroom = node.conntrack.headroom;
  if (headroom !== undefined && headroom < HEADROOM_WARNING) {
    findings.push({
      id: 'conntrack-table-nearly-full',
      subject: 'node',
      text: `conntrack table ${node.conntrack.entries} of ${node.conntrack.max} entries (${Math.round((1 - headroom) * 100)} % full)`,
      remedies: [],
    });
  }
  const failing = counters?.perSecond.insert_failed ?? 0;
  if (failing > 0) {
    findings.push({
      id: 'insert-failures-now',
      subject: 'node',
      text: `insert_failed rising at ${failing.toFixed(2)}/s over the last ${counters?.intervalSeconds.toFixed(1)} s`,
      remedies: [],
    });
  }
  return findings;
}

function podFindings(pod: DoctorPod): Finding[] {
  const findings: Finding[] = [];
  for (const container of pod.diagnosis.containers) {
    const conf = container.resolvConf;
    if (!conf) continue;
    const fanOut = conf.options.ndots >= 2 && conf.search.length > 0;
    const name = `${pod.subject} ${container.name}`;
    if (container.libc.kind === 'musl' && fanOut) {
      findings.push({
        id: 'musl-search-fan-out',
        subject: name,
        text: `musl with ndots:${conf.options.ndots} and ${conf.search.length} search domains: parallel A/AAAA from one socket for every candidate name, and lookups stop at a NODATA answer`,
        remedies: pod.remedies.filter(
          (r) => r.id === 'fewer-search-lookups' || r.id === 'tcp-resolver',
        ),
      });
    }
    if (
      container.libc.kind === 'glibc' &&
      !conf.options.singleRequestReopen &&
      !conf.options.singleRequest &&
      !conf.options.useVc
    ) {
      findings.push({
        id: 'glibc-without-single-request-reopen',
        subject: name,
        text: 'glibc sends A and AAAA in parallel from one socket (no single-request-reopen)',
        remedies: pod.remedies.filter((r) => r.id === 'single-request-reopen'),
      });
    }
    if (
      container.nameservers.length > 0 &&
      !container.nameservers.some((n) => n.kind === 'nodelocal' || n.kind === 'loopback')
    ) {
      findings.push({
        id: 'dns-through-nat',
        subject: name,
        text: `queries go to ${container.nameservers.map((n) => n.address).join(', ')} through the node's NAT, not a node-local cache`,
        remedies: pod.remedies.filter((r) => r.id.startsWith('nodelocal')),
      });
    }
  }
  return findings;
}

/** A drop seen in the lab is a finding: this kernel does it, whatever the pods do today. */
function reproduceFindings(reproduce: ReproduceReport | undefined): Finding[] {
  return (reproduce?.scenarios ?? [])
    .filter((scenario) => scenario.dropped > 0)
    .map((scenario) => ({
      id: `reproduced-${scenario.verdict.id}`,
      subject: `lab (${scenario.scenario})`,
      text: scenario.verdict.text,
      remedies: scenario.remedies,
    }));
}
