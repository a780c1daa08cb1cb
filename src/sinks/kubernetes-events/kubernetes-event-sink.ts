import type { Logger } from 'pino';
import type { EventDiagnosis } from '../../events/diagnosis.js';
import type {
  AttributedEvent,
  DnsDropEvent,
  DnsNoDataEvent,
  DnsQueryEvent,
} from '../../events/types.js';
import { noDataStopOf } from '../../events/nodata-stop.js';
import { FanOutWindows, type FanOutOptions } from '../../events/fan-out.js';
import type { Lifecycle } from '../../shared/lifecycle.js';
import type { EventSink } from '../../event-pipeline.js';
import {
  explainDnsDrop,
  explainInsertFailure,
  explainLookupStoppedOnNoData,
  explainSearchListFanOut,
  explainTableFull,
  explainUnansweredQueries,
} from './event-messages.js';
import type { EventHold, EventRecorder, InvolvedObject } from './event-recorder.js';

export interface TableFullReport {
  readonly entries: number;
  readonly limit: number;
  /** Packets of new flows dropped since the previous report. */
  readonly drops: number;
  readonly wallTimeMs: number;
}

export interface KubernetesEventSinkOptions {
  readonly recorder: EventRecorder;
  /** This node's name: Events about the host network and the table go on the Node. */
  readonly nodeName: string;
  /** The Node's uid, once known. */
  readonly nodeUid: () => string;
  /** True for an address of this node: a race from it is the host network's. */
  readonly isNodeAddress: (ip: string) => boolean;
  readonly logger: Logger;
  /** How long stop() may spend writing what is still waiting. */
  readonly flushTimeoutMs: number;
  /**
   * When the diagnosis of an event's pod or node is still being read: resolves with the event
   * diagnosed and advised anew once it is read. A new Event waits for it (at most
   * `diagnosisWaitMs`) so that it carries the pod's own advice from its first write.
   */
  readonly whenDiagnosed?: (attributed: AttributedEvent) => Promise<AttributedEvent> | undefined;
  /** Bound on that wait; default 2 s. */
  readonly diagnosisWaitMs?: number;
  /** The DNS-query probe's period: how long an unanswered query went without an answer. */
  readonly dnsQueryTimeoutSeconds?: number;
  /** How many lookups a pod's fan-out is judged over; default events/fan-out.ts. */
  readonly fanOut?: FanOutOptions;
}

/**
 * Long enough for one pod's read (a /proc walk and a few small files: tens of milliseconds,
 * a few hundred on a busy node), short next to the seconds an Event takes to be looked at.
 */
const DEFAULT_DIAGNOSIS_WAIT_MS = 2_000;

/**
 * Turns attributed drops into Warning Events: on the pod they came from, or on the Node for the
 * host network and for a full table. Clash-resolved races (nothing dropped) and events blamable
 * on neither get none: the metrics count them. Never throws at the pipeline.
 */
export class KubernetesEventSink implements EventSink, Lifecycle {
  readonly name = 'kubernetes-events';
  private recordFailureLogged = false;
  private readonly fanOut: FanOutWindows;

  constructor(private readonly options: KubernetesEventSinkOptions) {
    this.fanOut = new FanOutWindows(options.fanOut);
  }

  start(signal: AbortSignal): void {
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.options.recorder.start();
  }

  /** Writes what is waiting for up to the flush timeout; the rest is counted as dropped. */
  stop(): Promise<void> {
    return this.options.recorder.stop(this.options.flushTimeoutMs);
  }

  handle(attributed: AttributedEvent): void {
    this.guarded(() => {
      const { event, attribution, wallTimeMs } = attributed;
      // Nothing was dropped: the metrics count these, no pod needs telling.
      if (event.kind === 'clash_resolved' || event.kind === 'snat_port_alloc') return;
      if (event.kind === 'dns_query' && event.outcome === 'lookup') {
        this.recordFanOut(event, attributed);
        return;
      }
      // Answered queries tell the pod nothing it needs to act on: the metrics count them.
      if (event.kind === 'dns_query' && event.outcome !== 'unanswered') return;
      if (event.kind === 'dns_drop' && !deservesDnsEvent(event)) return;
      if (event.kind === 'dns_nodata') {
        this.recordNoDataStop(event, attributed);
        return;
      }
      // Counted in the kernel: the Event counts what the counts say, not the examples.
      const occurrences = event.count ?? 1;
      if (occurrences === 0) return;
      const pod = attribution.pod;
      const hostNetwork = !pod && this.options.isNodeAddress(attribution.sourceIp);
      if (!pod && !hostNetwork) return;
      const involvedObject: InvolvedObject = pod
        ? { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid }
        : this.nodeRef();
      const explain = ({ advice }: AttributedEvent) => {
        const context = { hostNetwork, advice };
        return event.kind === 'insert_failed'
          ? explainInsertFailure(event, attribution, context)
          : event.kind === 'dns_query'
            ? explainUnansweredQueries(
                event,
                attribution,
                context,
                this.options.dnsQueryTimeoutSeconds ?? DEFAULT_DNS_QUERY_TIMEOUT_SECONDS,
              )
            : explainDnsDrop(event, attribution, context);
      };
      const aggregationKey =
        event.kind === 'insert_failed'
          ? event.race
          : event.kind === 'dns_query'
            ? `unanswered/${event.cause ?? 'none'}`
            : `${event.reason}/${event.direction}`;
      this.options.recorder.record({
        involvedObject,
        aggregationKey,
        wallTimeMs,
        occurrences,
        ...explain(attributed),
        ...this.holdFor(attributed, explain),
      });
    });
  }

  /**
   * A DNSLookupStoppedOnNoData Event on a pod whose musl lookup ended on a NODATA answer to a
   * search-list name, decided from the pod's diagnosis (its resolv.conf and C library). A pod
   * seen for the first time is decided once its diagnosis is read: without it there is nothing
   * to decide from, and its first failed lookup is the one its owner is looking for.
   */
  private recordNoDataStop(event: DnsNoDataEvent, attributed: AttributedEvent): void {
    const pod = attributed.attribution.pod;
    if (pod === undefined) return;
    const record = (diagnosis: EventDiagnosis | undefined): void => {
      const stop = noDataStopOf(event, diagnosis);
      if (stop === undefined) return;
      this.options.recorder.record({
        involvedObject: { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid },
        aggregationKey: `nodata/${stop.domain}`,
        wallTimeMs: attributed.wallTimeMs,
        occurrences: 1,
        ...explainLookupStoppedOnNoData(stop, event.tuple.dstIp),
      });
    };
    const until =
      attributed.diagnosis?.pod.status === 'diagnosed'
        ? undefined
        : this.options.whenDiagnosed?.(attributed);
    if (until === undefined) {
      record(attributed.diagnosis);
      return;
    }
    until.then(
      (diagnosed) => this.guarded(() => record(diagnosed.diagnosis)),
      () => undefined,
    );
  }

  /**
   * A DNSSearchListFanOut Event on a pod whose lookups cost many queries each (events/fan-out.ts),
   * aggregated: one per pod, its count the windows that showed it.
   */
  private recordFanOut(event: DnsQueryEvent, attributed: AttributedEvent): void {
    const pod = attributed.attribution.pod;
    if (pod === undefined) return;
    const fanOut = this.fanOut.observe(`${pod.namespace}/${pod.name}`, event, attributed.diagnosis);
    if (fanOut === undefined) return;
    this.options.recorder.record({
      involvedObject: { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid },
      aggregationKey: 'search_list_fan_out',
      wallTimeMs: attributed.wallTimeMs,
      occurrences: 1,
      ...explainSearchListFanOut(fanOut),
    });
  }

  /** A full conntrack table: a ConntrackTableFull Event on the Node. */
  recordTableFull(report: TableFullReport): void {
    this.guarded(() => {
      const explanation = explainTableFull({ nodeName: this.options.nodeName, ...report });
      this.options.recorder.record({
        involvedObject: this.nodeRef(),
        aggregationKey: 'table_full',
        wallTimeMs: report.wallTimeMs,
        ...explanation,
      });
    });
  }

  /** A hold on the Event's first write while its diagnosis is read; nothing when it is read. */
  private holdFor(
    attributed: AttributedEvent,
    explain: (attributed: AttributedEvent) => { message: string },
  ): { hold?: EventHold } {
    const until = this.options.whenDiagnosed?.(attributed);
    if (!until) return {};
    let latest = attributed;
    const read = until.then(
      (diagnosed) => {
        latest = diagnosed;
      },
      () => undefined,
    );
    return {
      hold: {
        until: read,
        maxWaitMs: this.options.diagnosisWaitMs ?? DEFAULT_DIAGNOSIS_WAIT_MS,
        message: () => explain(latest).message,
      },
    };
  }

  private nodeRef(): InvolvedObject {
    return {
      kind: 'Node',
      namespace: '',
      name: this.options.nodeName,
      uid: this.options.nodeUid(),
    };
  }

  private guarded(record: () => void): void {
    try {
      record();
    } catch (error) {
      // A bug here must not reach the probe pipeline; once is enough to find it.
      if (!this.recordFailureLogged)
        this.options.logger.error({ err: error }, 'recording a Kubernetes Event failed');
      this.recordFailureLogged = true;
    }
  }
}

/**
 * A DNS drop that tells the pod nothing new gets no Event (the metrics still count it): one
 * that lost a conntrack insertion race already has its ConntrackInsertFailed Event, and a
 * datagram freed unread from a closing socket (NOT_SPECIFIED) is a late answer the resolver
 * no longer wanted, not a drop on the network.
 */
/** The resolvers' default timeout, which is the probe's default period. */
const DEFAULT_DNS_QUERY_TIMEOUT_SECONDS = 5;

function deservesDnsEvent(event: DnsDropEvent): boolean {
  if (event.conntrack?.lostInsertRace) return false;
  return event.reason !== 'NOT_SPECIFIED';
}
