import {
  accountedFor,
  countedExactly,
  summarizeMode,
  type DnsLoadFigures,
  type DnsLoadRun,
} from './dns-load-result.js';

const int = (value: number) => Math.round(value).toLocaleString('en-US');
const pct = (value: number) => `${(value * 100).toFixed(1)} %`;
const verdict = (pass: boolean) => (pass ? '**met**' : '**missed**');

/** The aims this section answers, as rows of the report's Aims table. */
export function dnsLoadAimRows(f: DnsLoadFigures): string[] {
  const paced = summarizeMode(f.runs, 'paced');
  const withAgent = f.runs.filter((run) => run.withAgent);
  const accounted = withAgent.filter(accountedFor).length;
  const bound = f.bound;
  const boundTotal = bound.agent.unanswered + bound.agent.untracked;
  return [
    `| DNS load: answered queries/s kept with \`--dns-query-tracking on\` ≥ 95 % at ${int(f.targetRate)} q/s (section 9) | ${pct(paced.kept)} (${int(paced.withAgent)} of ${int(paced.without)} answered/s) | ${verdict(paced.kept >= 0.95)} |`,
    `| DNS load at ${int(f.targetRate)} q/s: every query counted exactly (agent's answered and unanswered = the generator's, section 9) | ${paced.exactRuns} of ${paced.agentRuns} runs exact | ${verdict(paced.agentRuns > 0 && paced.exactRuns === paced.agentRuns)} |`,
    `| DNS load, every run: answered + unanswered + untracked = sent (section 9) | ${accounted} of ${withAgent.length} runs | ${verdict(withAgent.length > 0 && accounted === withAgent.length)} |`,
    `| DNS load at the pending map's bound: unanswered + untracked = sent (section 9) | ${int(bound.agent.unanswered)} + ${int(bound.agent.untracked)} = ${int(boundTotal)} of ${int(bound.load.sent)} | ${verdict(boundTotal === bound.load.sent && bound.agent.untracked > 0)} |`,
  ];
}

function runRow(run: DnsLoadRun, index: number): string {
  const agent = run.agent;
  const cells = [
    String(index),
    run.mode,
    run.withAgent ? 'on' : 'off',
    int(run.load.sent),
    int(run.load.answered),
    int(run.load.unanswered),
    int(run.answeredPerSecond),
    `${run.machineCpuPercent.toFixed(0)} %`,
    run.agentCpuPercent === undefined ? '' : `${run.agentCpuPercent.toFixed(1)} %`,
    agent ? int(agent.answered) : '',
    agent ? int(agent.unanswered) : '',
    agent ? int(agent.untracked) : '',
    agent ? (countedExactly(run) ? 'yes' : 'no') : '',
    agent ? (accountedFor(run) ? 'yes' : '**no**') : '',
    agent ? `${agent.settleSeconds.toFixed(1)} s` : '',
  ];
  return `| ${cells.join(' | ')} |`;
}

/** Section 9 of docs/benchmarks.md. */
export function renderDnsLoadSection(f: DnsLoadFigures): string {
  const modes = (['paced', 'max'] as const).map(
    (mode) => [mode, summarizeMode(f.runs, mode)] as const,
  );
  const b = f.bound;
  const beyond = f.ceilingAnsweredPerSecond < 20_000;
  return [
    '## 9. DNS query load',
    '',
    '`bench/dns-load.ts` on the lab of `test/lab/`: `bench/c/dns-load.c` in pod1 sends UDP DNS',
    `queries (type A, one name, \`load.test\`) to the kube-dns ClusterIP from ${f.sockets} sockets (one`,
    `source port each) for ${f.seconds} s and matches each answer to its query by (socket, DNS id); an answer not in 1 s is`,
    "unanswered. The ClusterIP is DNATed at random to the lab's two dnsmasq backends, started",
    'without query logging and answering the name from `--address=/load.test/192.0.2.1`. `paced`',
    `asks for ${int(f.targetRate)} queries/s; \`max\` sends as fast as the sockets take them. A first unpaced run`,
    `without the agent answered ${int(f.ceilingAnsweredPerSecond)} queries/s${beyond ? ': the backends answer less than 20,000/s on this machine, so the paced runs ask 90 % of that' : ''}.`,
    'Three rounds: both modes without the agent, then the built agent (`--netns-pid` of the lab',
    'node, `--dns-query-tracking on`, `/readyz` 200, 2 s settle) and both modes again. Machine CPU =',
    "busy time of all CPUs over the generator's run from `/proc/stat` (% of one core: the probe's",
    "in-kernel work runs in the sending and receiving threads' context and shows only here); agent",
    "CPU = run time of the agent's node process and its bpftrace children from",
    '`/proc/<pid>/task/*/schedstat` over the same window. Per 1,000 q/s = CPU % / (answered/s /',
    "1,000), medians. The machine's busy time moves with other work on it (the runs without the",
    'agent spread widely below), so the added machine CPU is within that noise; the',
    "agent's own CPU is exact.",
    "Exact = the agent's",
    "`conntrack_observer_dns_queries_total` delta for the pod equals the generator's answered",
    "count, its `dns_unanswered_queries_total` delta the generator's unanswered count, and",
    '`dns_queries_untracked_total` did not move. Accounted = answered + unanswered + untracked',
    'deltas add up to the queries sent, with no more answers than the generator received (read',
    'until they do, at most 25 s: unanswered queries are reported one to two periods of 5 s',
    "later, then once more 1.2 s on). Unpaced, the backends' sockets overflow and drop",
    "thousands of queries: those wait in the agent's pending map for a whole period, fill it",
    '(8,192 keys per generation), and the queries sent after that are untracked (counted, not',
    'followed) until the generation is cleared, answered or not. Unpaced, both CPUs are busy,',
    "so the probe's work in the kernel (at every device a query and its answer cross) comes out",
    "of the generator's and the backends' share: that is where answered/s falls with the agent.",
    '',
    '| mode | answered/s without | answered/s with | kept | agent CPU per 1,000 q/s | machine CPU without → with (added per 1,000 q/s) | exact runs | accounted runs |',
    '|---|---|---|---|---|---|---|---|',
    ...modes
      .filter(([, m]) => Number.isFinite(m.without))
      .map(
        ([mode, m]) =>
          `| ${mode} | ${int(m.without)} | ${int(m.withAgent)} | ${pct(m.kept)} | ${m.agentCpuPer1000.toFixed(3)} % | ${m.machineCpuWithout.toFixed(0)} % → ${m.machineCpuWith.toFixed(0)} % (${m.machineCpuPer1000.toFixed(2)} %) | ${m.exactRuns} of ${m.agentRuns} | ${m.accountedRuns} of ${m.agentRuns} |`,
      ),
    '',
    '| run | mode | agent | sent | answered | unanswered | answered/s | machine CPU | agent CPU | agent answered | agent unanswered | agent untracked | exact | accounted | settled after |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...f.runs.map((run, i) => runRow(run, i + 1)),
    '',
    `At the bound: a fresh agent, and ${int(b.load.sent)} queries in ${b.load.seconds.toFixed(1)} s from ${b.load.sockets} sockets`,
    `(distinct (port, id) keys) to ${'`192.0.2.66`'}, which the node's firewall drops (its DROP rule counted`,
    `${int(b.firewallDrops)}): none is ever answered, and more are pending within one period than the pending`,
    `maps hold (${int(b.mapKeys)} keys per generation, \`BPFTRACE_MAP_KEYS_MAX\`). The agent reported`,
    `${int(b.agent.unanswered)} unanswered (the keys the maps held) and ${int(b.agent.untracked)} untracked`,
    `(\`conntrack_observer_dns_queries_untracked_total\`): ${int(b.agent.unanswered + b.agent.untracked)} of ${int(b.load.sent)} sent, settled`,
    `after ${b.agent.settleSeconds.toFixed(1)} s. The kernel state at the bound is the two pending maps full: ${int(2 * b.mapKeys)} keys.`,
    '',
  ].join('\n');
}
