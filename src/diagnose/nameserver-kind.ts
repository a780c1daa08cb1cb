import type { NameserverInfo, NameserverKind } from '../events/diagnosis.js';

export interface NameserverContext {
  /** The kube-dns Service's ClusterIPs, when known. */
  readonly clusterDnsIps: ReadonlySet<string>;
  /** The node-local-dns address(es) the operator named, beyond link-local. */
  readonly nodeLocalDnsIps: ReadonlySet<string>;
}

/**
 * NodeLocal DNSCache listens on a link-local address (169.254.20.10 by default) or, in its
 * kube-proxy-ipvs setup, on the kube-dns ClusterIP itself, which it then answers locally: only
 * the address the operator names tells that case apart.
 */
export function classifyNameserver(address: string, context: NameserverContext): NameserverInfo {
  let kind: NameserverKind = 'other';
  if (context.nodeLocalDnsIps.has(address) || address.startsWith('169.254.')) kind = 'nodelocal';
  else if (context.clusterDnsIps.has(address)) kind = 'cluster-dns';
  else if (address.startsWith('127.') || address === '::1') kind = 'loopback';
  return { address, kind };
}
