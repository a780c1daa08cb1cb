import { canonicalIp } from '../shared/canonical-ip.js';
import type { KubeProxyMode, NatRule } from '../events/diagnosis.js';

/** What iptables-save shows besides the SNAT rules: kube-proxy's and NodeLocal DNSCache's marks. */
export interface IptablesView {
  readonly rules: NatRule[];
  readonly chains: ReadonlySet<string>;
  /** Addresses of NOTRACK / CT --notrack rules in the raw table (NodeLocal DNSCache sets these). */
  readonly notrackAddresses: ReadonlySet<string>;
}

/**
 * Parses `iptables-save` (or `iptables-legacy-save`, or either `ip6tables` twin) output: MASQUERADE and SNAT rules of the
 * nat table, whether each has `--random-fully`, the chains present, and the raw table's
 * NOTRACK destinations. Never throws; lines it does not know are skipped.
 */
export function parseIptablesSave(
  text: string,
  backend: 'iptables-legacy' | 'iptables-nft' | 'ip6tables-legacy' | 'ip6tables-nft',
): IptablesView {
  const family = backend.startsWith('ip6') ? 'ipv6' : 'ipv4';
  const rules: NatRule[] = [];
  const chains = new Set<string>();
  const notrackAddresses = new Set<string>();
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      table = line.slice(1);
      continue;
    }
    if (line.startsWith(':')) {
      const chain = line.slice(1).split(/\s+/)[0];
      if (chain) chains.add(chain);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const words = line.split(/\s+/);
    const chain = words[1] ?? '';
    const target = words[words.indexOf('-j') + 1];
    if (table === 'nat' && (target === 'MASQUERADE' || target === 'SNAT')) {
      rules.push({
        backend,
        family,
        table,
        chain,
        target,
        randomFully: words.includes('--random-fully'),
        text: line,
      });
    }
    if (
      table === 'raw' &&
      (target === 'NOTRACK' || (target === 'CT' && words.includes('--notrack')))
    ) {
      for (const flag of ['-d', '-s']) {
        const at = words.indexOf(flag);
        const address = at >= 0 ? words[at + 1]?.replace(/\/(32|128)$/, '') : undefined;
        if (address) notrackAddresses.add(canonicalIp(address));
      }
    }
  }
  return { rules, chains, notrackAddresses };
}

// The parts of `nft -j list ruleset` (libnftables-json(5)) read here.
interface NftTable {
  readonly family: string;
  readonly name: string;
}
interface NftNatStatement {
  readonly addr?: unknown;
  readonly port?: unknown;
  readonly flags?: string | readonly string[];
}
type NftExpression = Readonly<Record<string, unknown>> & {
  readonly masquerade?: NftNatStatement | null;
  readonly snat?: NftNatStatement | null;
  readonly xt?: { readonly type: string; readonly name: string };
};
interface NftRule {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly handle?: number;
  readonly expr?: readonly NftExpression[];
}
type NftObject = { readonly table?: NftTable; readonly rule?: NftRule } & Readonly<
  Record<string, unknown>
>;
interface NftRuleset {
  readonly nftables: readonly NftObject[];
}

export interface NftView {
  readonly rules: NatRule[];
  readonly tables: readonly string[];
}

export type NftParseResult = { ok: true; view: NftView } | { ok: false; error: string };

function isRuleset(value: unknown): value is NftRuleset {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as { nftables?: unknown }).nftables)
  );
}

/** The traffic each nftables family's NAT rules see (`inet` is both; `ip` and `ip6` one). */
const NFT_FAMILIES: Readonly<Record<string, NatRule['family']>> = {
  ip: 'ipv4',
  ip6: 'ipv6',
  inet: 'both',
};

/**
 * Parses `nft -j list ruleset` (tables of every family: `ip`, `ip6`, `inet`): native `masquerade` and `snat` statements and whether their
 * flags hold `fully-random`. Rules written by iptables-nft appear as `xt` targets and are
 * left to the iptables-save reading, which shows their options.
 */
export function parseNftRuleset(json: string): NftParseResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    return { ok: false, error: `nft printed no JSON: ${(error as Error).message}` };
  }
  if (!isRuleset(parsed)) return { ok: false, error: 'nft JSON has no "nftables" array' };
  const rules: NatRule[] = [];
  const tables: string[] = [];
  for (const object of parsed.nftables) {
    if (object.table) tables.push(`${object.table.family} ${object.table.name}`);
    const rule = object.rule;
    if (!rule?.expr) continue;
    for (const expression of rule.expr) {
      for (const target of ['masquerade', 'snat'] as const) {
        if (!(target in expression)) continue;
        const statement = expression[target];
        const flags = statement?.flags === undefined ? [] : [statement.flags].flat();
        rules.push({
          backend: 'nftables',
          family: NFT_FAMILIES[rule.family] ?? 'ipv4',
          table: `${rule.family} ${rule.table}`,
          chain: rule.chain,
          target: target === 'masquerade' ? 'MASQUERADE' : 'SNAT',
          randomFully: flags.includes('fully-random'),
          text: `${rule.family} ${rule.table} ${rule.chain} handle ${rule.handle ?? '?'}: ${target}${flags.length > 0 ? ` ${flags.join(',')}` : ''}`,
        });
      }
    }
  }
  return { ok: true, view: { rules, tables } };
}

/**
 * kube-proxy's mode from what it leaves in the rule sets: an `ip kube-proxy` nftables table
 * (nftables mode), `KUBE-SERVICES` with `KUBE-SVC-*` chains (iptables mode), or the
 * `KUBE-SERVICES` chain with the `kube-ipvs0` interface (ipvs mode; its Services are in IPVS,
 * not in iptables).
 */
export function kubeProxyModeOf(input: {
  readonly iptablesChains: ReadonlySet<string>;
  readonly nftTables: readonly string[];
  readonly interfaces: readonly string[];
}): KubeProxyMode {
  if (input.nftTables.some((table) => table.endsWith(' kube-proxy'))) return 'nftables';
  if (input.interfaces.includes('kube-ipvs0')) return 'ipvs';
  const chains = [...input.iptablesChains];
  if (chains.includes('KUBE-SERVICES') && chains.some((c) => c.startsWith('KUBE-SVC-')))
    return 'iptables';
  return 'none-visible';
}
