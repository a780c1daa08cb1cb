import type { Logger } from 'pino';
import type { AttributedEvent, DnsQueryEvent, ProbeEvent } from '../../events/types.js';
import { noDataStopOf } from '../../events/nodata-stop.js';
import { FanOutWindows, type FanOut } from '../../events/fan-out.js';
import type { EventSink } from '../../event-pipeline.js';
import { unrefTimers, type Timers } from '../../shared/timers.js';

export interface EventLogOptions {
  logger: Logger;
  /** Events logged one line each per window; past that, one summary line per window. */
  maxLinesPerWindow: number;
  windowMs: number;
  nowMs: () => number;
  /**
   * Runs the summary's flush once its window ends. Default: unref'd real timers, so that a
   * pending summary never holds the process open on exit. Armed only while a summary is
   * pending, so that an idle agent has no timer to wake for.
   */
  timers?: Pick<Timers, 'after'>;
}

interface StormTally {
  suppressed: number;
  byKind: Record<string, number>;
  bySource: Map<string, number>;
}

const TOP_SOURCES_IN_SUMMARY = 5;

/**
 * One JSON line per event, until a storm: then the lines stop for the rest of the window
 * and a single summary line tells how many were left out and whom they hit. A storm must
 * not turn the agent into the node's largest log producer.
 */
export class EventLog implements EventSink {
  readonly name = 'log';
  private windowStartMs: number;
  private linesInWindow = 0;
  private tally: StormTally = emptyTally();
  private cancelFlush: (() => void) | undefined;
  /** The search-list fan-out per pod (or client address standalone, where no Event is posted). */
  private readonly fanOut = new FanOutWindows();

  constructor(private readonly options: EventLogOptions) {
    this.windowStartMs = options.nowMs();
  }

  handle(attributed: AttributedEvent): void {
    this.record(attributed);
  }

  record(attributed: AttributedEvent): void {
    // The growth of a probe's in-kernel counts: the metrics hold it, and the probe's examples
    // of those drops (count 0) are what is logged, with their ports and times.
    const { event } = attributed;
    if ((event.kind === 'dns_drop' || event.kind === 'insert_failed') && (event.count ?? 0) > 0)
      return;
    // Counted in the kernel too: the metrics hold them and the agent logs one summary a period.
    // Lookups are news when a window of them shows search-list fan-out; unanswered queries
    // that name the backend that did not answer are logged too: no metric label carries the
    // backend (docs/metrics.md).
    if (event.kind === 'dns_query') {
      if (event.outcome === 'lookup') this.recordFanOut(attributed);
      if ((event.backends ?? []).length === 0) return;
    }
    // A NODATA answer is news only when it ended a lookup (a musl pod's search-list name).
    if (event.kind === 'dns_nodata' && noDataStopOf(event, attributed.diagnosis) === undefined)
      return;
    this.write(attributed, () => ({
      fields: { ...eventFields(attributed), ...adviceFields(attributed) },
      msg: describe(attributed.event),
    }));
  }

  private recordFanOut(attributed: AttributedEvent): void {
    if (attributed.event.kind !== 'dns_query') return;
    const { pod, sourceIp } = attributed.attribution;
    const fanOut = this.fanOut.observe(
      pod ? `${pod.namespace}/${pod.name}` : sourceIp,
      attributed.event,
      attributed.diagnosis,
    );
    if (fanOut === undefined) return;
    this.write(attributed, () => ({
      fields: { ...eventFields(attributed), fanOut },
      msg: describeFanOut(fanOut),
    }));
  }

  /**
   * One line while the window has room; past it, counted in the window's summary. The line is
   * built only when it is written: in a storm most events are only counted, and building their
   * fields would cost more than everything else they go through (docs/benchmarks.md, section 1).
   */
  private write(
    attributed: AttributedEvent,
    line: () => { fields: Record<string, unknown>; msg: string },
  ): void {
    this.rollWindowIfDue();
    if (this.linesInWindow < this.options.maxLinesPerWindow) {
      this.linesInWindow += 1;
      const { fields, msg } = line();
      this.options.logger.info(fields, msg);
      return;
    }
    const { tally } = this;
    if (tally.suppressed === 0) this.armFlush();
    tally.suppressed += 1;
    tally.byKind[attributed.event.kind] = (tally.byKind[attributed.event.kind] ?? 0) + 1;
    const source = attributed.attribution.pod
      ? `${attributed.attribution.pod.namespace}/${attributed.attribution.pod.name}`
      : attributed.attribution.sourceIp;
    tally.bySource.set(source, (tally.bySource.get(source) ?? 0) + 1);
  }

  /**
   * Writes the pending storm summary, if any. Called by itself when the window of the first
   * suppressed event ends, and by the owner at shutdown; leaves no timer behind.
   */
  flush(): void {
    this.cancelFlush?.();
    this.cancelFlush = undefined;
    if (this.tally.suppressed === 0) return;
    const topSources = [...this.tally.bySource.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP_SOURCES_IN_SUMMARY)
      .map(([source, events]) => ({ source, events }));
    this.options.logger.warn(
      {
        storm: {
          suppressedEvents: this.tally.suppressed,
          windowMs: this.options.windowMs,
          byKind: this.tally.byKind,
          topSources,
        },
      },
      `event storm: ${this.tally.suppressed} more events in this window were counted but not logged one by one`,
    );
    this.tally = emptyTally();
  }

  private armFlush(): void {
    const dueInMs = Math.max(0, this.windowStartMs + this.options.windowMs - this.options.nowMs());
    const timers = this.options.timers ?? unrefTimers;
    this.cancelFlush = timers.after(dueInMs, () => {
      this.cancelFlush = undefined;
      this.flush();
    });
  }

  private rollWindowIfDue(): void {
    const now = this.options.nowMs();
    if (now - this.windowStartMs < this.options.windowMs) return;
    this.flush();
    this.windowStartMs = now;
    this.linesInWindow = 0;
  }
}

function emptyTally(): StormTally {
  return { suppressed: 0, byKind: {}, bySource: new Map() };
}

function describeFanOut(fanOut: FanOut): string {
  const why =
    fanOut.ndots !== undefined && fanOut.search !== undefined
      ? `ndots:${fanOut.ndots} with ${fanOut.search.length} search domains`
      : 'resolv.conf not read';
  return `DNS lookups walk the search list: ${fanOut.meanQueries} queries each over ${fanOut.lookups} lookups (${why}); an FQDN with a trailing dot or a lower ndots costs 2`;
}

function describe(event: ProbeEvent): string {
  switch (event.kind) {
    case 'insert_failed':
      return `conntrack insert failed (${event.race} race): packet dropped`;
    case 'clash_resolved':
      return `conntrack clash resolved (${event.race} race): no drop`;
    case 'dns_drop':
      return `DNS ${event.direction} dropped (${event.reason})`;
    case 'snat_port_alloc':
      return `SNAT port allocation took ${event.attempts} attempts`;
    case 'dns_query':
      if ((event.backends ?? []).length > 0)
        return `${event.count} DNS queries unanswered, no drop on this node: sent to a backend that never answered`;
      return event.outcome === 'lookup'
        ? `${event.count} DNS lookups of ${event.queriesPerLookup} queries each, ended ${event.lookupEnd ?? 'unknown'}`
        : `${event.count} DNS queries ${event.outcome}`;
    case 'dns_nodata':
      return `DNS lookup stopped on NODATA for ${event.name}: musl ends its search-list walk there`;
  }
}

/**
 * The diagnosis the line's advice was written from and only the remedies that apply, as the
 * Event on the pod states them. Present when the diagnosis stage is wired; drops only.
 */
function adviceFields({ diagnosis, advice }: AttributedEvent): Record<string, unknown> {
  if (!diagnosis) return {};
  if (!advice) return { diagnosis };
  return { diagnosis, remedies: advice.remedies, notes: advice.notes };
}

function eventFields({
  event,
  attribution,
  wallTimeMs,
  diagnosis,
}: AttributedEvent): Record<string, unknown> {
  const common = {
    kind: event.kind,
    time: new Date(wallTimeMs).toISOString(),
    cpu: event.cpu,
    netns: event.netnsInode,
    protocol: event.protocol,
    probe: event.probe,
    sourceIp: attribution.sourceIp,
    pod: attribution.pod ? `${attribution.pod.namespace}/${attribution.pod.name}` : undefined,
    service: attribution.service
      ? `${attribution.service.namespace}/${attribution.service.name}`
      : undefined,
  };
  if (event.kind === 'dns_drop') {
    return {
      event: {
        ...common,
        reason: event.reason,
        direction: event.direction,
        tuple: event.tuple,
        location: event.location,
      },
    };
  }
  if (event.kind === 'snat_port_alloc') {
    return {
      event: {
        ...common,
        latencyNs: event.latencyNs,
        attempts: event.attempts,
        original: event.original,
        translated: { ip: event.translatedIp, port: event.translatedPort },
      },
    };
  }
  if (event.kind === 'dns_query') {
    return {
      event: { ...common, ...dnsQueryFields(event, attribution) },
    };
  }
  if (event.kind === 'dns_nodata') {
    const stop = noDataStopOf(event, diagnosis);
    return {
      event: {
        ...common,
        name: event.name,
        qtype: event.qtype,
        server: event.tuple.dstIp,
        ...(stop && {
          domain: stop.domain,
          requested: stop.requested,
          libc: stop.libc,
          container: stop.container,
          namesTried: stop.tried,
        }),
      },
    };
  }
  return {
    event: {
      ...common,
      race: event.race,
      ctStatus: `0x${event.ctStatus.toString(16)}`,
      original: event.original,
      reply: event.reply,
    },
  };
}

function dnsQueryFields(
  event: DnsQueryEvent,
  attribution: AttributedEvent['attribution'],
): Record<string, unknown> {
  return {
    outcome: event.outcome,
    answer: event.answer,
    count: event.count,
    cause: event.cause,
    server: event.tuple.dstIp,
    ...(event.backends && { backends: backendsOf(event.backends, attribution) }),
  };
}

/** Each backend address with the pod behind it, as `namespace/name`, where known. */
function backendsOf(
  ips: readonly string[],
  attribution: AttributedEvent['attribution'],
): { ip: string; pod?: string }[] {
  return ips.map((ip) => {
    const pod = attribution.backends?.find((backend) => backend.ip === ip)?.pod;
    return pod ? { ip, pod: `${pod.namespace}/${pod.name}` } : { ip };
  });
}
