import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { canonicalIp } from '../shared/canonical-ip.js';
import type { DnsQueryEvent, ProbeEvent } from '../events/types.js';
import type { Timers } from '../shared/timers.js';
import type { ConntrackUdpEntry } from '../sources/conntrack-table/conntrack-list.js';
import type { DnsFlowsResult } from '../sources/conntrack-table/dns-flows.js';

/** More backends than this for one client and server are not named (a Service's few pods are). */
export const MAX_BACKENDS_NAMED = 8;

/**
 * Who did not answer whom, from one dump: for each client and server address (the server as the
 * client asked it, a ClusterIP), the backends its unreplied flows to port 53 were DNATed to, the
 * reply tuple's source (conntrack keeps a UDP entry 30 s, nf_conntrack_udp_timeout; unanswered
 * queries are reported 5 to 11 s after they left). Built once per dump, so linking a report's
 * queries costs one pass over the table whatever the number of clients.
 */
export class UnrepliedBackends {
  private readonly byFlow = new Map<string, Set<string>>();

  constructor(entries: readonly ConntrackUdpEntry[]) {
    for (const { original, reply, replied } of entries) {
      if (replied || original.dstPort !== 53) continue;
      // Not translated: the server asked is the one that did not answer, nothing more to name.
      if (reply.srcIp === original.dstIp) continue;
      const key = flowKey(original.srcIp, original.dstIp);
      const backends = this.byFlow.get(key) ?? new Set<string>();
      backends.add(reply.srcIp);
      this.byFlow.set(key, backends);
    }
  }

  /** Sorted, without repeats, at most MAX_BACKENDS_NAMED. */
  of(clientIp: string, serverIp: string): string[] {
    const backends = this.byFlow.get(flowKey(canonicalIp(clientIp), canonicalIp(serverIp)));
    return backends ? [...backends].sort().slice(0, MAX_BACKENDS_NAMED) : [];
  }
}

function flowKey(clientIp: string, serverIp: string): string {
  return `${clientIp} ${serverIp}`;
}

export interface UnansweredBackendsOptions {
  /** One dump of the node's UDP port-53 conntrack entries; never throws. */
  readonly readFlows: () => Promise<DnsFlowsResult>;
  /** Where every event goes next, held ones once their backends are known. */
  readonly forward: (event: ProbeEvent) => void;
  readonly logger: Logger;
  readonly registry: Registry;
  /** Events held for one dump at most; past it they go on without backends. */
  readonly maxHeld: number;
  /**
   * Reads start at least this far apart: the probe's period. Its resent queries are reported
   * once a second while a backend stays silent; they wait for the period's read.
   */
  readonly minIntervalMs: number;
  readonly nowMs: () => number;
  readonly timers: Pick<Timers, 'after'>;
}

/**
 * Names the backends that did not answer: unanswered queries no drop on this node explains
 * (cause `none`) wait for one read of the conntrack table, then go on with the backends their
 * flows were DNATed to. One dump per report (the probe reports a period's unanswered queries
 * together, in one synchronous batch), at most one per period, and none at all while every
 * query is answered. Other events pass at once. A table that cannot be read leaves the
 * backends unknown, with one warning.
 */
export class UnansweredBackends {
  private held: DnsQueryEvent[] = [];
  /** A read is scheduled or running: what arrives meanwhile joins it or the next. */
  private draining = false;
  private lastReadAtMs = Number.NEGATIVE_INFINITY;
  private failing = false;
  private readonly malformedLines: Counter;
  private readonly failedReads: Counter;

  constructor(private readonly options: UnansweredBackendsOptions) {
    this.malformedLines = new Counter({
      name: 'conntrack_observer_conntrack_list_malformed_lines_total',
      help: 'Lines of `conntrack -L` (read to name the backends of unanswered DNS queries) not understood and skipped.',
      registers: [options.registry],
    });
    this.failedReads = new Counter({
      name: 'conntrack_observer_conntrack_list_failures_total',
      help: 'Reads of the conntrack table (to name the backends of unanswered DNS queries) that failed; those backends stay unknown.',
      registers: [options.registry],
    });
  }

  readonly handle = (event: ProbeEvent): void => {
    if (!awaitsBackends(event) || this.held.length >= this.options.maxHeld) {
      this.forward(event);
      return;
    }
    this.held.push(event);
    this.schedule();
  };

  private schedule(): void {
    if (this.draining || this.held.length === 0) return;
    this.draining = true;
    const waitMs = this.lastReadAtMs + this.options.minIntervalMs - this.options.nowMs();
    // After the rest of the batch at least: the whole period's queries share one dump.
    if (waitMs <= 0) queueMicrotask(() => void this.drain());
    else this.options.timers.after(waitMs, () => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      this.lastReadAtMs = this.options.nowMs();
      const result = await this.read();
      const unreplied = result.ok ? new UnrepliedBackends(result.list.entries) : undefined;
      // What arrived during the read joins it: those queries left before it started.
      const batch = this.held;
      this.held = [];
      for (const event of batch) {
        const backends = unreplied?.of(event.tuple.srcIp, event.tuple.dstIp);
        this.forward(backends ? { ...event, backends } : event);
      }
    } finally {
      this.draining = false;
    }
    this.schedule();
  }

  private async read(): Promise<DnsFlowsResult> {
    let result: DnsFlowsResult;
    try {
      result = await this.options.readFlows();
    } catch (error) {
      result = { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
    if (!result.ok) {
      this.failedReads.inc();
      if (!this.failing) {
        this.options.logger.warn(
          { error: result.error },
          'cannot read the conntrack table: the backends of unanswered DNS queries stay unknown',
        );
      }
      this.failing = true;
      return result;
    }
    if (this.failing) this.options.logger.info('the conntrack table is readable again');
    this.failing = false;
    if (result.list.malformed > 0) this.malformedLines.inc(result.list.malformed);
    return result;
  }

  private forward(event: ProbeEvent): void {
    try {
      this.options.forward(event);
    } catch (error) {
      this.options.logger.error({ err: error }, 'forwarding an event failed');
    }
  }
}

function awaitsBackends(event: ProbeEvent): event is DnsQueryEvent {
  return event.kind === 'dns_query' && event.outcome === 'unanswered' && event.cause === 'none';
}
