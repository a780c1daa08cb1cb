import type { EventDiagnosis } from './diagnosis.js';
import type { DnsQueryEvent } from './types.js';

/**
 * The search-list fan-out of a pod's lookups: with `ndots:N` a name with fewer dots is tried
 * with every search domain before itself, each name once per type, so an external name costs
 * (search domains + 1) × 2 queries instead of 2. Measured from the kernel's count of queries per
 * lookup (probes/tracepoint/dns-queries.bt), explained from the pod's resolv.conf.
 */
export interface FanOut {
  /** Lookups of the window. */
  readonly lookups: number;
  /** Their mean queries per lookup, one decimal; past the probe's cap counted as 33. */
  readonly meanQueries: number;
  /** Lookups of the window that ended NXDOMAIN: every name tried does not exist. */
  readonly nxdomain: number;
  /** Read from the pod's resolv.conf; undefined when it was not read. */
  readonly ndots?: number;
  readonly search?: readonly string[];
  /** Whether the pod already asks NodeLocal DNSCache. */
  readonly nodeLocal: boolean;
}

export interface FanOutOptions {
  /** Lookups a window needs before its mean is judged. */
  readonly minLookups: number;
  /** Pods kept at most; the oldest window is dropped past it. */
  readonly maxPods: number;
}

/**
 * At least 5 lookups: one slow name alone does not make a pattern, and a pod that looks names
 * up every few seconds fills a window within a minute.
 */
export const DEFAULT_FAN_OUT_OPTIONS: FanOutOptions = { minLookups: 5, maxPods: 4096 };

/** Kubernetes' own search list (ClusterFirst): `<ns>.svc.<zone> svc.<zone> <zone>`. */
const KUBERNETES_SEARCH_DOMAINS = 3;
/** The probe keys more than 32 queries as 33. */
const OVERFLOW_QUERIES = 33;

interface Window {
  lookups: number;
  queries: number;
  nxdomain: number;
}

/**
 * Windows of lookups per pod. A window is judged once it holds `minLookups` lookups, then
 * starts again: a pod whose lookups cost at least 2 × (search domains) queries each on average
 * (the search list was walked for most of them) has fan-out; one whose lookups cost 1 per type
 * has none. The threshold takes at least 2 domains, so that 2 queries (A and AAAA of one name)
 * never count as fan-out.
 */
export class FanOutWindows {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly options: FanOutOptions = DEFAULT_FAN_OUT_OPTIONS) {}

  /** Adds lookups of a pod; returns the fan-out when this completes a window that shows it. */
  observe(
    podKey: string,
    event: DnsQueryEvent,
    diagnosis: EventDiagnosis | undefined,
  ): FanOut | undefined {
    const perLookup = event.queriesPerLookup;
    if (event.outcome !== 'lookup' || perLookup === undefined || event.count <= 0) return;
    let window = this.windows.get(podKey);
    if (window === undefined) {
      if (this.windows.size >= this.options.maxPods) {
        const oldest = this.windows.keys().next();
        if (oldest.done !== true) this.windows.delete(oldest.value);
      }
      window = { lookups: 0, queries: 0, nxdomain: 0 };
      this.windows.set(podKey, window);
    }
    window.lookups += event.count;
    window.queries += event.count * (Number.isFinite(perLookup) ? perLookup : OVERFLOW_QUERIES);
    if (event.lookupEnd === 'nxdomain') window.nxdomain += event.count;
    if (window.lookups < this.options.minLookups) return;
    this.windows.delete(podKey);
    const settings = resolverSettingsOf(diagnosis);
    const domains = settings.search?.length ?? KUBERNETES_SEARCH_DOMAINS;
    const mean = window.queries / window.lookups;
    if (mean < 2 * Math.max(domains, 2)) return;
    return {
      lookups: window.lookups,
      meanQueries: Math.round(mean * 10) / 10,
      nxdomain: window.nxdomain,
      ...settings,
    };
  }

  /** Forgets a pod that is gone. */
  forget(podKey: string): void {
    this.windows.delete(podKey);
  }
}

/** The first container's resolv.conf that was read: the pod's containers share the pod's DNS. */
function resolverSettingsOf(
  diagnosis: EventDiagnosis | undefined,
): Pick<FanOut, 'ndots' | 'search' | 'nodeLocal'> {
  const pod = diagnosis?.pod;
  if (pod?.status !== 'diagnosed') return { nodeLocal: false };
  const nodeLocal = pod.containers.some((container) =>
    container.nameservers.some((nameserver) => nameserver.kind === 'nodelocal'),
  );
  const resolvConf = pod.containers.find((container) => container.resolvConf)?.resolvConf;
  if (resolvConf === undefined) return { nodeLocal };
  return { ndots: resolvConf.options.ndots, search: resolvConf.search, nodeLocal };
}
