/**
 * What test/kernels/prove-agent.ts finds on one kernel in one probe mode, as the JSON file it
 * writes (`prove-<mode>.json` in the guest's results) and the host-side table reads.
 */

/** One claim checked against the kernel's own counters or the lab's. */
export interface ProofCheck {
  readonly name: string;
  readonly passed: boolean;
  /** What the agent reported, where the check compares a count. */
  readonly agent?: number;
  /** What the kernel (or the lab) counted over the same window. */
  readonly expected?: number;
  /** The outcome in words: the figures, or why the check failed. */
  readonly detail: string;
}

/** A count the agent reported beside the kernel's, over one scenario's window. */
export interface CountFigure {
  readonly agent: number;
  /** The kernel's (or the lab's) count; null where the kernel has no such counter. */
  readonly kernel: number | null;
  /** Rounds (races) or queries the scenario sent. */
  readonly sent: number;
  readonly seconds: number;
}

/** DNS drops the agent counted, and how many of them it put on the address that sent them. */
export interface AttributedFigure extends CountFigure {
  /** Of the agent's, those labelled with `source`. */
  readonly attributed: number;
  /** The client address the drops belong to (canonical text form). */
  readonly source: string;
}

export interface ProofFigures {
  /** snat-race: agent insert failures and the node's insert_failed delta. */
  readonly insertFailures?: CountFigure;
  /** snat-race over IPv6: agent insert failures and the node's insert_failed delta. */
  readonly insertFailures6?: CountFigure & {
    /** Of the agent's, those it named a SNAT race of a lab pod's IPv6 address. */
    readonly snatOfPods: number;
  };
  /** dnat-clash (kprobe mode): agent clash_resolved and the node's clash_resolve delta. */
  readonly clashResolved?: CountFigure & {
    /** Distinct flows (source ports) among the resolved clashes the agent logged. */
    readonly flows: number;
  };
  /** dnat-clash to the IPv6 ClusterIP (kprobe mode): as clashResolved. */
  readonly clashResolved6?: CountFigure & {
    readonly flows: number;
  };
  /** Queries the node's firewall dropped: agent NETFILTER_DROP query drops and the rule's count. */
  readonly dnsFirewall?: CountFigure;
  /** Queries to an address with no listener: agent NO_SOCKET query drops and Udp NoPorts. */
  readonly dnsNoListener?: CountFigure;
  /** The firewall drop over IPv6: NETFILTER_DROP query drops and the ip6tables rule's count. */
  readonly dnsFirewall6?: AttributedFigure;
  /** No listener over IPv6: NO_SOCKET query drops and the upstream's Udp6NoPorts. */
  readonly dnsNoListener6?: AttributedFigure;
  /**
   * Queries a pod sent to the ClusterIP, all answered: the agent's answered queries of the pod
   * (`dns_queries_total`) and the answers the client received.
   */
  readonly dnsAnswered?: CountFigure;
  /**
   * Queries to the ClusterIP with one backend firewalled: the agent's unanswered queries of the
   * pod (`dns_unanswered_queries_total`) and the DROP rule's packet count.
   */
  readonly dnsUnanswered?: CountFigure & {
    /** Of the agent's, those it gave the firewall as their cause. */
    readonly firewall: number;
  };
  /** Agent's unexplained insert failures from readiness to the end. */
  readonly unexplained?: number;
}

export interface ProofResult {
  readonly schema: 1;
  /** Matrix id (5.10, 6.1, 6.12) or the release where the proof ran outside the matrix. */
  readonly kernel: string;
  readonly release: string;
  readonly requestedMode: string;
  /** The mode the agent runs in; null when it did not start. */
  readonly mode: string | null;
  /** The agent's own reason for the mode, as its start-up log says it. */
  readonly reason: string | null;
  readonly readyz: {
    readonly code: number | null;
    readonly body: string;
    /** From the agent's start to the first 200; null when it never came. */
    readonly afterSeconds: number | null;
  };
  /** Each probe run, as `name (script)`. */
  readonly probes: readonly string[];
  readonly unavailable: readonly string[];
  readonly unobservable: readonly string[];
  readonly figures: ProofFigures;
  readonly checks: readonly ProofCheck[];
  readonly passed: boolean;
  /** Seconds per phase: agent start to ready, each scenario, the whole proof of this mode. */
  readonly seconds: Readonly<Record<string, number>>;
  /** What the agents' bpftrace says of itself (`bpftrace v0.23.2`); absent in older results. */
  readonly bpftrace?: string;
}

export const proofFileName = (requestedMode: string): string => `prove-${requestedMode}.json`;

/** Reads a result file written by prove-agent; throws with the file's name on anything else. */
export function parseProofResult(text: string, file: string): ProofResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not JSON (${(error as Error).message})`);
  }
  const result = value as Partial<ProofResult> | null;
  if (
    result === null ||
    typeof result !== 'object' ||
    result.schema !== 1 ||
    typeof result.kernel !== 'string' ||
    typeof result.requestedMode !== 'string' ||
    !Array.isArray(result.checks) ||
    typeof result.passed !== 'boolean'
  ) {
    throw new Error(`${file}: not a kernel proof result (schema 1)`);
  }
  return result as ProofResult;
}
