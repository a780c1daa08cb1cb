import { canonicalIp, isLinkLocal, isLoopback } from '../shared/canonical-ip.js';
import type { NameserverInfo, NameserverKind } from '../events/diagnosis.js';

export interface NameserverContext {
  /** The kube-dns Service's ClusterIPs (both families on a dual-stack cluster), when known. */
  readonly clusterDnsIps: ReadonlySet<string>;
  /** The node-local-dns address(es) the operator named, beyond link-local. */
  readonly nodeLocalDnsIps: ReadonlySet<string>;
}

/**
 * NodeLocal DNSCache listens on a link-local address (169.254.20.10 by default; an IPv6 cluster
 * names its own, link-local or not) or, in its kube-proxy-ipvs setup, on the kube-dns ClusterIP
 * itself, which it then answers locally: only the address the operator names tells that case
 * apart. Addresses of either family are compared in canonical form.
 */
export function classifyNameserver(written: string, context: NameserverContext): NameserverInfo {
  const address = canonicalIp(written);
  const has = (set: ReadonlySet<string>): boolean =>
    set.has(address) || [...set].some((ip) => canonicalIp(ip) === address);
  let kind: NameserverKind = 'other';
  if (has(context.nodeLocalDnsIps) || isLinkLocal(address)) kind = 'nodelocal';
  else if (has(context.clusterDnsIps)) kind = 'cluster-dns';
  else if (isLoopback(address)) kind = 'loopback';
  return { address, kind };
}
