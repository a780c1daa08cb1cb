import type { CommandRunner } from '../detect/capabilities.js';
import { canonicalIp, isLinkLocal } from '../shared/canonical-ip.js';
import type { NatRule, NodeDiagnosis } from '../events/diagnosis.js';
import type { Clock } from '../shared/clock.js';
import { parseConntrackStatFile } from '../sources/kernel-stats/conntrack-stat-file.js';
import type { HostFiles } from './host-files.js';
import { kernelFactsOf } from './kernel-facts.js';
import { kubeProxyModeOf, parseIptablesSave, parseNftRuleset } from './nat-rules.js';

export interface NodeDiagnoserOptions {
  readonly files: HostFiles;
  readonly procRoot: string;
  /** A process in the node's network namespace (`self`: the agent's own). */
  readonly netnsPid: number | 'self';
  readonly run: CommandRunner;
  /** Prepended to iptables-save and nft, e.g. `nsenter -t PID -n` for another namespace. */
  readonly commandPrefix: readonly string[];
  /** node-local-dns addresses named by the operator (besides what the node shows). */
  readonly nodeLocalDnsIps: readonly string[];
  readonly clock: Clock;
}

const COMMAND_TIMEOUT_MS = 10_000;
/** NodeLocal DNSCache's interface (a dummy device holding its listen addresses). */
const NODELOCAL_INTERFACE = 'nodelocaldns';

/**
 * Reads the node: kernel release, the conntrack table and UDP timeouts, the SNAT rules of
 * every backend (iptables-legacy, iptables-nft, native nftables), kube-proxy's mode and
 * NodeLocal DNSCache. Needs root (iptables-save and nft read the rule sets through netlink,
 * which needs CAP_NET_ADMIN). A tool that is missing is noted, not fatal.
 */
export async function diagnoseNode(options: NodeDiagnoserOptions): Promise<NodeDiagnosis> {
  const { files, procRoot } = options;
  const release = await files.readText(`${procRoot}/sys/kernel/osrelease`);
  const number = async (path: string): Promise<number | undefined> => {
    const text = await files.readText(`${procRoot}/sys/net/netfilter/${path}`);
    const value = text === undefined ? Number.NaN : Number.parseInt(text.trim(), 10);
    return Number.isFinite(value) ? value : undefined;
  };
  const stat = await files.readText(`${procRoot}/${options.netnsPid}/net/stat/nf_conntrack`);
  const parsedStat = stat === undefined ? undefined : parseConntrackStatFile(stat);
  const entries = parsedStat?.ok ? parsedStat.stats.entries : await number('nf_conntrack_count');
  const max = await number('nf_conntrack_max');
  const interfaces = interfacesOf(await files.readText(`${procRoot}/${options.netnsPid}/net/dev`));

  const natRules: NatRule[] = [];
  const natSources: NodeDiagnosis['natSources'][number][] = [];
  const chains = new Set<string>();
  const notrack = new Set<string>();
  // IPv6 NAT lives in rule sets of its own (ip6tables), read beside the IPv4 ones.
  for (const [backend, tool] of [
    ['iptables-nft', 'iptables-nft-save'],
    ['iptables-legacy', 'iptables-legacy-save'],
    ['ip6tables-nft', 'ip6tables-nft-save'],
    ['ip6tables-legacy', 'ip6tables-legacy-save'],
  ] as const) {
    const outcome = await runTool(options, tool, ['-t', 'nat']);
    const raw = outcome.ok ? await runTool(options, tool, ['-t', 'raw']) : outcome;
    natSources.push({
      backend,
      read: outcome.ok,
      ...(outcome.ok ? {} : { detail: outcome.detail }),
    });
    if (!outcome.ok) continue;
    const view = parseIptablesSave(`${outcome.stdout}\n${raw.ok ? raw.stdout : ''}`, backend);
    natRules.push(...view.rules);
    for (const chain of view.chains) chains.add(chain);
    for (const address of view.notrackAddresses) notrack.add(address);
  }
  const nft = await runTool(options, 'nft', ['-j', 'list', 'ruleset']);
  let nftTables: readonly string[] = [];
  if (nft.ok) {
    const parsed = parseNftRuleset(nft.stdout);
    if (parsed.ok) {
      natRules.push(...parsed.view.rules);
      nftTables = parsed.view.tables;
      natSources.push({ backend: 'nftables', read: true });
    } else {
      natSources.push({ backend: 'nftables', read: false, detail: parsed.error });
    }
  } else {
    natSources.push({ backend: 'nftables', read: false, detail: nft.detail });
  }

  const nodeLocalAddresses = new Set(options.nodeLocalDnsIps.map(canonicalIp));
  for (const address of notrack) if (isLinkLocal(address)) nodeLocalAddresses.add(address);
  const kernel = release === undefined ? undefined : kernelFactsOf(release);
  return {
    status: 'diagnosed',
    ...(kernel ? { kernel } : {}),
    natRules,
    natSources,
    kubeProxyMode: kubeProxyModeOf({ iptablesChains: chains, nftTables, interfaces }),
    nodeLocalDns: {
      present: interfaces.includes(NODELOCAL_INTERFACE) || nodeLocalAddresses.size > 0,
      addresses: [...nodeLocalAddresses].sort(),
    },
    conntrack: {
      ...(entries !== undefined ? { entries } : {}),
      ...(max !== undefined ? { max } : {}),
      ...(entries !== undefined && max !== undefined && max > 0
        ? { headroom: Math.max(0, 1 - entries / max) }
        : {}),
      ...optional('udpTimeoutSeconds', await number('nf_conntrack_udp_timeout')),
      ...optional('udpStreamTimeoutSeconds', await number('nf_conntrack_udp_timeout_stream')),
    },
    diagnosedAtMs: options.clock.nowMs(),
  };
}

function optional<K extends string>(key: K, value: number | undefined): { [P in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number };
}

/** Interface names of /proc/<pid>/net/dev (two header lines, then `name: counters`). */
export function interfacesOf(text: string | undefined): string[] {
  if (!text) return [];
  return text
    .split('\n')
    .slice(2)
    .map((line) => line.split(':')[0]?.trim() ?? '')
    .filter((name) => name !== '');
}

type ToolOutcome = { ok: true; stdout: string } | { ok: false; detail: string };

async function runTool(
  options: NodeDiagnoserOptions,
  tool: string,
  args: readonly string[],
): Promise<ToolOutcome> {
  const [file, ...prefixArgs] = [...options.commandPrefix, tool];
  const outcome = await options.run(file as string, [...prefixArgs, ...args], {
    timeoutMs: COMMAND_TIMEOUT_MS,
  });
  if (outcome.startError)
    return { ok: false, detail: `${tool} not available: ${outcome.startError}` };
  if (outcome.timedOut) return { ok: false, detail: `${tool} timed out` };
  if (outcome.exitCode !== 0) {
    return {
      ok: false,
      detail: `${tool} exited ${outcome.exitCode}: ${outcome.stderr.trim().slice(0, 200)}`,
    };
  }
  return { ok: true, stdout: outcome.stdout };
}
