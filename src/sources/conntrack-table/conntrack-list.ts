import { isIP } from 'node:net';
import { canonicalIp } from '../../shared/canonical-ip.js';
import type { FlowTuple } from '../../events/types.js';

/** One UDP entry of the conntrack table, as `conntrack -L -p udp` prints it. */
export interface ConntrackUdpEntry {
  /** As the client sent it: a ClusterIP before DNAT. */
  readonly original: FlowTuple;
  /** As the answer would come back: after DNAT its source is the backend the flow went to. */
  readonly reply: FlowTuple;
  /** False while no packet came back (`[UNREPLIED]`): the server has not answered this flow. */
  readonly replied: boolean;
}

export interface ConntrackList {
  readonly entries: readonly ConntrackUdpEntry[];
  /** Lines that are not a UDP entry as conntrack prints it; skipped. */
  readonly malformed: number;
}

/**
 * Parses the text of `conntrack -L -p udp` (conntrack-tools 1.4), e.g.
 *   udp      17 27 src=10.244.0.2 dst=10.96.0.10 sport=40000 dport=53 [UNREPLIED] src=192.0.2.53 dst=10.244.0.2 sport=53 dport=40000 mark=0 use=1
 * The first src/dst/sport/dport are the original direction, the second the reply. Never throws:
 * a line not of that shape is counted and skipped; empty lines are not counted.
 */
export function parseConntrackList(text: string): ConntrackList {
  const entries: ConntrackUdpEntry[] = [];
  let malformed = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const entry = parseLine(line);
    if (entry === undefined) malformed += 1;
    else entries.push(entry);
  }
  return { entries, malformed };
}

function parseLine(line: string): ConntrackUdpEntry | undefined {
  const tokens = line.trim().split(/\s+/);
  if (tokens[0] !== 'udp' || tokens[1] !== '17') return undefined;
  const first: TupleFields = {};
  const second: TupleFields = {};
  let replied = true;
  for (const token of tokens.slice(2)) {
    if (token === '[UNREPLIED]') {
      replied = false;
      continue;
    }
    const equals = token.indexOf('=');
    if (equals <= 0) continue;
    const key = token.slice(0, equals);
    if (key !== 'src' && key !== 'dst' && key !== 'sport' && key !== 'dport') continue;
    // A key seen in the original tuple already belongs to the reply tuple.
    const tuple = first[key] === undefined ? first : second;
    if (tuple[key] !== undefined) return undefined;
    tuple[key] = token.slice(equals + 1);
  }
  const original = tupleOf(first);
  const reply = tupleOf(second);
  if (original === undefined || reply === undefined) return undefined;
  return { original, reply, replied };
}

type TupleFields = Partial<Record<'src' | 'dst' | 'sport' | 'dport', string>>;

function tupleOf(fields: TupleFields): FlowTuple | undefined {
  const { src, dst, sport, dport } = fields;
  if (src === undefined || dst === undefined || sport === undefined || dport === undefined)
    return undefined;
  if (isIP(src) === 0 || isIP(dst) === 0) return undefined;
  const srcPort = portOf(sport);
  const dstPort = portOf(dport);
  if (srcPort === undefined || dstPort === undefined) return undefined;
  return { srcIp: canonicalIp(src), srcPort, dstIp: canonicalIp(dst), dstPort };
}

function portOf(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65_535 ? port : undefined;
}
