import { clientIpOf } from './client-ip.js';
import type { ProbeEvent, UnansweredCause } from './types.js';

export type { UnansweredCause } from './types.js';

export const UNANSWERED_CAUSES: readonly UnansweredCause[] = [
  'race',
  'firewall',
  'no_socket',
  'other_drop',
  'none',
];

export interface UnansweredCausesOptions {
  /** How long a drop can explain a query reported unanswered after it (ms). */
  readonly windowMs: number;
  /** At most this many clients remembered; the least recently dropped leaves first. */
  readonly maxClients: number;
}

/**
 * Remembers the last drop of each client address (by address and time window: counted drops
 * carry no port, so a query cannot be matched to its own datagram) and names the cause of the
 * queries of that client reported unanswered afterwards. A race outranks a firewall drop,
 * which outranks a missing listener, within one window.
 */
export class UnansweredCauses {
  private readonly lastDrop = new Map<string, { cause: UnansweredCause; atMs: number }>();

  constructor(private readonly options: UnansweredCausesOptions) {}

  observe(event: ProbeEvent, atMs: number): void {
    const cause = dropCause(event);
    if (cause === undefined) return;
    const client = clientIpOf(event);
    const known = this.lastDrop.get(client);
    const keep =
      known !== undefined &&
      atMs - known.atMs < this.options.windowMs &&
      RANK[known.cause] < RANK[cause];
    this.lastDrop.delete(client);
    this.lastDrop.set(client, keep ? { cause: known.cause, atMs } : { cause, atMs });
    if (this.lastDrop.size > this.options.maxClients) {
      const oldest = this.lastDrop.keys().next();
      if (oldest.done !== true) this.lastDrop.delete(oldest.value);
    }
  }

  /** Records a drop, or gives an unanswered query its cause; other events pass unchanged. */
  link(event: ProbeEvent, atMs: number): ProbeEvent {
    if (event.kind !== 'dns_query') {
      this.observe(event, atMs);
      return event;
    }
    if (event.outcome !== 'unanswered') return event;
    return { ...event, cause: this.causeOf(event.tuple.srcIp, atMs) };
  }

  causeOf(clientIp: string, atMs: number): UnansweredCause {
    const known = this.lastDrop.get(clientIp);
    if (known === undefined || atMs - known.atMs > this.options.windowMs) return 'none';
    return known.cause;
  }
}

const RANK: Record<UnansweredCause, number> = {
  race: 0,
  firewall: 1,
  no_socket: 2,
  other_drop: 3,
  none: 4,
};

function dropCause(event: ProbeEvent): UnansweredCause | undefined {
  if (event.kind === 'insert_failed') {
    const { original } = event;
    const dns = event.protocol === 'udp' && (original.dstPort === 53 || original.srcPort === 53);
    return dns ? 'race' : undefined;
  }
  if (event.kind !== 'dns_drop') return undefined;
  // An example counts nothing; the counts' own events carry the drop.
  if (event.count === 0) return undefined;
  if (event.conntrack?.lostInsertRace) return 'race';
  if (event.reason === 'NETFILTER_DROP') return 'firewall';
  if (event.reason === 'NO_SOCKET') return 'no_socket';
  // A late answer freed from a closing socket follows the timeout, it does not cause it.
  if (event.reason === 'NOT_SPECIFIED') return undefined;
  return 'other_drop';
}
