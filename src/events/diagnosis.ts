/**
 * What the agent found out about a pod and the node, to tailor its advice. Plain data, produced
 * by src/diagnose/ in the background and attached to events by the pipeline; the sinks only
 * read it. Serialised as is into the JSON event log and the `doctor --json` report.
 */

export type LibcKind = 'musl' | 'glibc' | 'static' | 'unknown';

export interface LibcInfo {
  readonly kind: LibcKind;
  /** e.g. "2.36" for glibc; musl's version is read when the library names it. */
  readonly version?: string;
  /** The file the verdict was read from, relative to the container's root. */
  readonly evidence?: string;
}

/** The resolver options of resolv.conf(5) that change how queries race. */
export interface ResolverOptions {
  readonly ndots: number;
  readonly timeout: number;
  readonly attempts: number;
  readonly singleRequest: boolean;
  readonly singleRequestReopen: boolean;
  readonly useVc: boolean;
  readonly rotate: boolean;
  readonly edns0: boolean;
}

export interface ResolvConf {
  readonly nameservers: readonly string[];
  readonly search: readonly string[];
  readonly options: ResolverOptions;
  /** Lines the resolver ignores or limits it applies (more than 3 nameservers, …). */
  readonly warnings: readonly string[];
}

/**
 * nodelocal: NodeLocal DNSCache (a link-local 169.254.0.0/16 address or the node-local-dns
 * address given); cluster-dns: the kube-dns Service's ClusterIP; loopback: a resolver in the
 * pod itself; other: anything else (an upstream server, the node's resolver).
 */
export type NameserverKind = 'nodelocal' | 'cluster-dns' | 'loopback' | 'other';

export interface NameserverInfo {
  readonly address: string;
  readonly kind: NameserverKind;
}

export interface ContainerDiagnosis {
  /** The process whose root was read. */
  readonly pid: number;
  /** The container's name when the pod's status names its id; else the process's command. */
  readonly name: string;
  readonly libc: LibcInfo;
  /** Undefined when the container has no readable /etc/resolv.conf. */
  readonly resolvConf?: ResolvConf;
  readonly nameservers: readonly NameserverInfo[];
}

/** The pod's DNS settings from its spec (Kubernetes only). */
export interface PodDnsSpec {
  readonly dnsPolicy?: string;
  readonly hostNetwork: boolean;
  readonly dnsConfig?: {
    readonly nameservers?: readonly string[];
    readonly searches?: readonly string[];
    readonly options?: readonly { readonly name: string; readonly value?: string }[];
  };
}

export interface PodDiagnosis {
  readonly status: 'diagnosed';
  /** How the pod's processes were found. */
  readonly foundBy: 'pod-uid' | 'pod-ip' | 'netns';
  readonly netnsInode?: number;
  readonly containers: readonly ContainerDiagnosis[];
  readonly spec?: PodDnsSpec;
  /** Wall-clock ms of the reading. */
  readonly diagnosedAtMs: number;
}

/** Nothing read yet (the reading runs in the background), or nothing could be read. */
export interface PodDiagnosisUnknown {
  readonly status: 'unknown';
  readonly reason: string;
}

export type PodDiagnosisResult = PodDiagnosis | PodDiagnosisUnknown;

export interface NatRule {
  /** iptables-legacy, iptables-nft, their ip6tables twins, or nftables (native). */
  readonly backend:
    'iptables-legacy' | 'iptables-nft' | 'ip6tables-legacy' | 'ip6tables-nft' | 'nftables';
  /** The traffic the rule sees: an nftables `inet` table's rules see both. */
  readonly family: 'ipv4' | 'ipv6' | 'both';
  readonly table: string;
  readonly chain: string;
  readonly target: 'MASQUERADE' | 'SNAT';
  readonly randomFully: boolean;
  /** The rule as the tool printed it (iptables-save line or nft expression summary). */
  readonly text: string;
}

export type KubeProxyMode = 'iptables' | 'ipvs' | 'nftables' | 'none-visible';

/** What the running kernel does about these races, from its release. */
export interface KernelFacts {
  readonly release: string;
  /** Clashes of identical entries resolved (4.19+, ed07d9a021df). */
  readonly resolvesMatchingClashes: boolean;
  /** Clashes with different DNAT targets resolved for UDP (5.6+, IPS_NAT_CLASH). */
  readonly resolvesNatClashes: boolean;
  /** `clash_resolve` counted apart from insert_failed (5.10+). */
  readonly hasClashResolveCounter: boolean;
  /** skb:kfree_skb carries drop reasons (5.17+). */
  readonly hasDropReasons: boolean;
}

export interface ConntrackTable {
  readonly entries?: number;
  readonly max?: number;
  /** 1 - entries/max. */
  readonly headroom?: number;
  readonly udpTimeoutSeconds?: number;
  readonly udpStreamTimeoutSeconds?: number;
}

export interface NodeDiagnosis {
  readonly status: 'diagnosed';
  readonly kernel?: KernelFacts;
  readonly natRules: readonly NatRule[];
  /** Which NAT tools could be read; a tool missing is not an error. */
  readonly natSources: readonly {
    readonly backend: NatRule['backend'];
    readonly read: boolean;
    readonly detail?: string;
  }[];
  readonly kubeProxyMode: KubeProxyMode;
  readonly nodeLocalDns: { readonly present: boolean; readonly addresses: readonly string[] };
  readonly conntrack: ConntrackTable;
  readonly diagnosedAtMs: number;
}

export type NodeDiagnosisResult =
  NodeDiagnosis | { readonly status: 'unknown'; readonly reason: string };

/** What an event's advice was written from. */
export interface EventDiagnosis {
  readonly pod: PodDiagnosisResult;
  readonly node: NodeDiagnosisResult;
}
