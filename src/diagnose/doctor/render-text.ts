import type { ReproduceReport } from '../reproduce/run-reproduce.js';
import type { DoctorKubernetes } from './kubernetes-pods.js';
import type { DoctorReport } from './report.js';

/** The report for a person at a terminal: the node first, then each pod, then what to do. */
export function renderDoctorText(report: DoctorReport): string {
  const { node } = report;
  const lines: string[] = [];
  const kernel = node.kernel;
  lines.push(`Kernel        ${kernel?.release ?? 'unknown'}`);
  if (kernel) {
    lines.push(
      `              clash resolution for identical entries: ${yes(kernel.resolvesMatchingClashes)} (4.19+); for different DNAT targets: ${yes(kernel.resolvesNatClashes)} (5.6+)`,
      `              clash_resolve counter: ${yes(kernel.hasClashResolveCounter)} (5.10+); drop reasons: ${yes(kernel.hasDropReasons)} (5.17+)`,
    );
  }
  lines.push(`Probe mode    ${report.probeMode.mode}: ${report.probeMode.reason}`);
  const table = node.conntrack;
  lines.push(
    `Conntrack     ${table.entries ?? '?'} of ${table.max ?? '?'} entries${table.headroom !== undefined ? ` (${Math.round(table.headroom * 100)} % headroom)` : ''}; UDP timeouts ${table.udpTimeoutSeconds ?? '?'} s / ${table.udpStreamTimeoutSeconds ?? '?'} s (stream)`,
  );
  if (report.counters) {
    const rates = Object.entries(report.counters.perSecond)
      .map(([name, rate]) => `${name} ${report.counters?.totals[name]} (+${rate.toFixed(2)}/s)`)
      .join(', ');
    lines.push(`Counters      ${rates} over ${report.counters.intervalSeconds.toFixed(1)} s`);
  }
  lines.push(`kube-proxy    ${node.kubeProxyMode}`);
  lines.push(
    `NodeLocal DNS ${node.nodeLocalDns.present ? `present ${node.nodeLocalDns.addresses.join(', ')}` : 'not seen'}`,
  );
  lines.push('NAT rules');
  if (node.natRules.length === 0) lines.push('              no MASQUERADE or SNAT rule');
  for (const rule of node.natRules) {
    lines.push(
      `              ${rule.randomFully ? 'random-fully   ' : 'NO random-fully'} ${rule.backend}: ${rule.text}`,
    );
  }
  for (const source of node.natSources.filter((s) => !s.read)) {
    lines.push(`              (${source.backend} not read: ${source.detail ?? 'unknown'})`);
  }
  if (report.reproduce) lines.push('', ...renderReproduce(report.reproduce));
  lines.push('', `Pods          ${report.pods.length} network namespace(s) with a resolver`);
  for (const pod of report.pods)
    lines.push(`  ${pod.subject}: ${pod.summary.replace(/^diagnosis: /, '')}`);
  if (report.kubernetes) lines.push('', ...renderKubernetes(report.kubernetes));
  lines.push('');
  if (report.findings.length === 0) {
    lines.push('No findings: nothing on this node is at risk of these races.');
  } else {
    lines.push(`Findings (${report.findings.length})`);
    for (const finding of report.findings) {
      lines.push(`  - [${finding.subject}] ${finding.text}`);
      for (const remedy of finding.remedies) {
        lines.push(`      remedy: ${remedy.text}`, `              (${remedy.source})`);
        if (remedy.yaml)
          lines.push(
            ...remedy.yaml
              .trimEnd()
              .split('\n')
              .map((l) => `        ${l}`),
          );
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

function yes(value: boolean): string {
  return value ? 'yes' : 'no';
}

/** The lab's verdicts, one scenario per line with the counter deltas they rest on. */
export function renderReproduce(reproduce: ReproduceReport): string[] {
  const lines = [
    `Reproduced    in a throw-away lab (${reproduce.namespaces.length} namespaces, removed), at most ${reproduce.secondsPerScenario} s per scenario; race generators ${reproduce.generators.origin} in ${reproduce.generators.dir}`,
  ];
  if (reproduce.staleRemoved.length > 0) {
    lines.push(
      `              removed first what a killed run left: ${reproduce.staleRemoved.join(', ')}`,
    );
  }
  for (const scenario of reproduce.scenarios) {
    const counters = Object.entries(scenario.kernel)
      .map(([name, value]) => `${name} +${value}`)
      .join(', ');
    lines.push(
      `  ${scenario.scenario.padEnd(11)} ${scenario.verdict.text}`,
      `              dropped ${scenario.dropped}, resolved ${scenario.resolved} (lab node: ${counters}); ${scenario.datagramsSent} datagrams sent${scenario.enough ? '' : '; stopped at the time bound'}`,
    );
    for (const note of scenario.notes) lines.push(`              ${note}`);
  }
  return lines;
}

/** Per pod of the node: what its spec asks for, what its containers use, what to change. */
export function renderKubernetes(kubernetes: DoctorKubernetes): string[] {
  const lines = [
    `Kubernetes    ${kubernetes.pods.length} pod(s) on node ${kubernetes.nodeName} (${kubernetes.server}, ${kubernetes.source})`,
  ];
  for (const pod of kubernetes.pods) {
    const { spec } = pod;
    const config = spec.dnsConfig;
    const asked = [
      `dnsPolicy ${spec.dnsPolicy ?? 'ClusterFirst'}`,
      spec.hostNetwork ? 'hostNetwork' : '',
      config?.nameservers?.length ? `nameservers ${config.nameservers.join(', ')}` : '',
      config?.searches?.length ? `searches ${config.searches.join(', ')}` : '',
      config?.options?.length
        ? `options ${config.options.map((o) => (o.value === undefined ? o.name : `${o.name}:${o.value}`)).join(', ')}`
        : '',
    ].filter((part) => part !== '');
    lines.push(`  ${pod.namespace}/${pod.name}`, `      spec:     ${asked.join('; ')}`);
    if (!pod.read) lines.push(`      uses:     not read (${pod.notRead ?? 'unknown'})`);
    for (const container of pod.containers) {
      const conf = container.resolvConf;
      const libc = `${container.libc.kind}${container.libc.version ? ` ${container.libc.version}` : ''}`;
      const detail = conf
        ? `nameserver ${container.nameservers.map((n) => `${n.address} (${n.kind})`).join(', ') || 'none'}; search ${conf.search.join(' ') || 'none'}; ndots:${conf.options.ndots}${conf.options.singleRequestReopen ? ', single-request-reopen' : ''}${conf.options.singleRequest ? ', single-request' : ''}${conf.options.useVc ? ', use-vc' : ''}`
        : 'resolv.conf not read';
      lines.push(`      uses:     ${container.name}: ${libc}, ${detail}`);
    }
    for (const note of pod.notes) lines.push(`      note:     ${note}`);
    for (const remedy of pod.remedies) {
      lines.push(`      remedy:   ${remedy.text}`);
      if (remedy.yaml)
        lines.push(
          ...remedy.yaml
            .trimEnd()
            .split('\n')
            .map((l) => `          ${l}`),
        );
    }
  }
  return lines;
}
