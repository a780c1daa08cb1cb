import { createLineDecoder } from '../../src/decode/decode.js';
import { DnsQueryCounts, isDnsQueryMap } from '../../src/decode/dns-query-counts.js';
import type { DnsQueryEvent } from '../../src/events/types.js';
import { probeKeyOfIpv4, probeKeyOfIpv6 } from '../support/probe-keys.js';

const decode = createLineDecoder('tracepoint/dns-queries', (code) => `UNKNOWN_${code}`);

const ip = probeKeyOfIpv4;
const POD = ip('10.244.0.2');
const OTHER_POD = ip('10.244.0.3');
const CLUSTER_IP = ip('10.96.0.10');
const NETNS = 4026532420;

function observe(counts: DnsQueryCounts, map: string, entries: Record<string, number>) {
  const decoded = decode(JSON.stringify({ type: 'map', data: { [map]: entries } }));
  if (decoded.type !== 'counts') throw new Error(`not counts: ${JSON.stringify(decoded)}`);
  return counts.observe(decoded.map, decoded.entries);
}

const tracker = (): DnsQueryCounts =>
  new DnsQueryCounts({ probe: 'tracepoint/dns-queries', monotonicNs: () => 9n });

/** A quiet-lookup map value as the probe keeps it: answer classes << 32 | answers << 16 | queries. */
const kept = (classes: number, answers: number, queries: number): number =>
  classes * 2 ** 32 + answers * 2 ** 16 + queries;

describe('DnsQueryCounts', () => {
  it('turns the growth of the answer counts into answered queries by class and latency bucket', () => {
    const counts = tracker();
    const first = observe(counts, '@dns_q_answers', {
      [`${NETNS},${POD},0,2`]: 4,
      [`${NETNS},${POD},1,0`]: 1,
    });
    expect(first.events).toEqual([
      expect.objectContaining({
        kind: 'dns_query',
        outcome: 'answered',
        answer: 'NOERROR',
        latencyBucketSeconds: 0.01,
        count: 4,
        netnsInode: NETNS,
        tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '0.0.0.0', dstPort: 53 },
      }),
      expect.objectContaining({ answer: 'NODATA', latencyBucketSeconds: 0.001, count: 1 }),
    ]);
    const second = observe(counts, '@dns_q_answers', {
      [`${NETNS},${POD},0,2`]: 6,
      [`${NETNS},${POD},1,0`]: 1,
      [`${NETNS},${POD},2,11`]: 3,
    });
    expect(
      second.events.map((event) => [event.answer, event.count, event.latencyBucketSeconds]),
    ).toEqual([
      ['NOERROR', 2, 0.01],
      ['NXDOMAIN', 3, Infinity],
    ]);
  });

  it('names every class the probe keys, in its order', () => {
    const counts = tracker();
    const entries = Object.fromEntries(
      [0, 1, 2, 3, 4, 5].map((klass) => [`${NETNS},${POD},${klass},5`, 1]),
    );
    const answers = observe(counts, '@dns_q_answers', entries).events.map((event) => event.answer);
    expect(answers).toEqual(['NOERROR', 'NODATA', 'NXDOMAIN', 'SERVFAIL', 'REFUSED', 'OTHER']);
  });

  it('counts each key of a printed pending generation as one unanswered query, summed per client and server', () => {
    const counts = tracker();
    const update = observe(counts, '@dns_q_pending_1', {
      [`${NETNS},${POD},40001,17,${CLUSTER_IP}`]: 1000,
      [`${NETNS},${POD},40001,18,${CLUSTER_IP}`]: 1001,
      [`${NETNS},${POD},40002,17,${CLUSTER_IP}`]: 1002,
      [`${NETNS},${OTHER_POD},40003,5,${CLUSTER_IP}`]: 1003,
    });
    const byClient = new Map(
      update.events.map((event: DnsQueryEvent) => [event.tuple.srcIp, event]),
    );
    expect(byClient.get('10.244.0.2')).toMatchObject({
      outcome: 'unanswered',
      count: 3,
      tuple: { dstIp: '10.96.0.10', dstPort: 53 },
    });
    expect(byClient.get('10.244.0.3')).toMatchObject({ outcome: 'unanswered', count: 1 });
    // Each print is a new generation: the same keys printed again are new queries.
    const again = observe(counts, '@dns_q_pending_0', {
      [`${NETNS},${POD},40001,17,${CLUSTER_IP}`]: 5000,
    });
    expect(again.events).toEqual([expect.objectContaining({ count: 1 })]);
    expect(observe(counts, '@dns_q_pending_0', {}).events).toEqual([]);
  });

  it('counts the growth of the resent count as unanswered queries of that client and server, and rejects other keys', () => {
    const counts = tracker();
    const first = observe(counts, '@dns_q_resent_0', {
      [`${NETNS},${POD},${CLUSTER_IP}`]: 2,
      [`${NETNS},${POD}`]: 1,
    });
    expect(first.events).toEqual([
      expect.objectContaining({
        kind: 'dns_query',
        outcome: 'unanswered',
        count: 2,
        netnsInode: NETNS,
        tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
      }),
    ]);
    expect(first.rejectedKeys).toEqual([`${NETNS},${POD}`]);
    // Cumulative: only the growth is new.
    const next = observe(counts, '@dns_q_resent_0', { [`${NETNS},${POD},${CLUSTER_IP}`]: 3 });
    expect(next.events).toEqual([expect.objectContaining({ outcome: 'unanswered', count: 1 })]);
    expect(
      observe(counts, '@dns_q_resent_0', { [`${NETNS},${POD},${CLUSTER_IP}`]: 3 }).events,
    ).toEqual([]);
    // Cleared after its last print: the generation's next writes count from zero.
    counts.cleared('@dns_q_resent_0');
    expect(
      observe(counts, '@dns_q_resent_0', { [`${NETNS},${POD},${CLUSTER_IP}`]: 2 }).events,
    ).toEqual([expect.objectContaining({ outcome: 'unanswered', count: 2 })]);
    // The other generation has its own keys.
    expect(
      observe(counts, '@dns_q_resent_1', { [`${NETNS},${POD},${CLUSTER_IP}`]: 1 }).events,
    ).toEqual([expect.objectContaining({ outcome: 'unanswered', count: 1 })]);
  });

  it('reports the growth of the untracked count: queries the pending map had no room for', () => {
    const counts = tracker();
    expect(observe(counts, '@dns_q_untracked', { [NETNS]: 3 }).untracked).toBe(3);
    expect(observe(counts, '@dns_q_untracked', { [NETNS]: 5 }).untracked).toBe(2);
  });

  it('turns the growth of the parallel counts into parallel queries per client, each generation from zero after its map_cleared', () => {
    const counts = tracker();
    const first = observe(counts, '@dns_q_parallel_0', {
      [`${NETNS},${POD}`]: 3,
      [`${NETNS},${OTHER_POD}`]: 1,
    });
    expect(first.events).toEqual([
      expect.objectContaining({
        kind: 'dns_query',
        outcome: 'parallel',
        count: 3,
        netnsInode: NETNS,
        tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '0.0.0.0', dstPort: 53 },
      }),
      expect.objectContaining({ outcome: 'parallel', count: 1 }),
    ]);
    expect(first.events[0]).not.toHaveProperty('answer');
    // The writers moved on to the other generation; the last print of this one adds 2.
    const other = observe(counts, '@dns_q_parallel_1', { [`${NETNS},${POD}`]: 1 });
    expect(other.events.map((event) => event.count)).toEqual([1]);
    const last = observe(counts, '@dns_q_parallel_0', {
      [`${NETNS},${POD}`]: 5,
      [`${NETNS},${OTHER_POD}`]: 1,
    });
    expect(last.events.map((event) => [event.tuple.srcIp, event.count])).toEqual([
      ['10.244.0.2', 2],
    ]);
    counts.cleared('@dns_q_parallel_0');
    const again = observe(counts, '@dns_q_parallel_0', { [`${NETNS},${POD}`]: 1 });
    expect(again.events.map((event) => event.count)).toEqual([1]);
    // The other generation was not cleared: its keys still count by growth.
    expect(observe(counts, '@dns_q_parallel_1', { [`${NETNS},${POD}`]: 1 }).events).toEqual([]);
  });

  it('turns the growth of the lookup counts into lookups per client by queries each and how they ended, past the cap as Infinity', () => {
    const counts = tracker();
    const first = observe(counts, '@dns_q_lookups_0', {
      [`${NETNS},${POD},8,4`]: 3,
      [`${NETNS},${POD},33,21`]: 1,
    });
    expect(first.events).toEqual([
      expect.objectContaining({
        kind: 'dns_query',
        outcome: 'lookup',
        queriesPerLookup: 8,
        lookupEnd: 'nxdomain',
        count: 3,
        netnsInode: NETNS,
        tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '0.0.0.0', dstPort: 53 },
      }),
      // Records seen: answered, though a query went unanswered (16) and one got NXDOMAIN (4).
      expect.objectContaining({
        outcome: 'lookup',
        queriesPerLookup: Infinity,
        lookupEnd: 'answered',
        count: 1,
      }),
    ]);
    const next = observe(counts, '@dns_q_lookups_0', {
      [`${NETNS},${POD},8,4`]: 5,
      [`${NETNS},${POD},33,21`]: 1,
    });
    expect(next.events.map((event) => [event.queriesPerLookup, event.count])).toEqual([[8, 2]]);
  });

  it('counts each key of a printed quiet-lookup generation as one lookup of its queries, summed per client, queries and end', () => {
    const update = observe(tracker(), '@dns_q_lookup_n_1', {
      // NXDOMAIN everywhere, every query answered.
      [`${NETNS},${POD},101`]: kept(4, 8, 8),
      [`${NETNS},${POD},102`]: kept(4, 8, 8),
      // NXDOMAIN then NODATA (musl stopping at a search-list name).
      [`${NETNS},${POD},103`]: kept(6, 6, 6),
      // Records: answered.
      [`${NETNS},${POD},104`]: kept(3, 2, 2),
      // One query of two without an answer, nothing with records.
      [`${NETNS},${POD},105`]: kept(2, 1, 2),
      // SERVFAIL.
      [`${NETNS},${POD},106`]: kept(8, 2, 2),
      [`${NETNS},${OTHER_POD},107`]: kept(1, 40, 40),
    });
    expect(update.rejectedKeys).toEqual([]);
    expect(
      update.events.map((event) => [
        event.tuple.srcIp,
        event.queriesPerLookup,
        event.lookupEnd,
        event.count,
      ]),
    ).toEqual([
      ['10.244.0.2', 8, 'nxdomain', 2],
      ['10.244.0.2', 6, 'nodata', 1],
      ['10.244.0.2', 2, 'answered', 1],
      ['10.244.0.2', 2, 'unanswered', 1],
      ['10.244.0.2', 2, 'failed', 1],
      ['10.244.0.3', Infinity, 'answered', 1],
    ]);
  });

  it('leaves out lookup keys and values that are not as the probe prints them, and says which', () => {
    const lookups = observe(tracker(), '@dns_q_lookups_0', {
      [`${NETNS},${POD},2`]: 1,
      [`${NETNS},${POD},0,1`]: 1,
      [`${NETNS},${POD},34,1`]: 1,
      [`${NETNS},${POD},2,32`]: 1,
      [`${NETNS},${POD},2,1`]: 1,
    });
    expect(lookups.rejectedKeys).toHaveLength(4);
    expect(lookups.events).toEqual([
      expect.objectContaining({ queriesPerLookup: 2, lookupEnd: 'answered', count: 1 }),
    ]);
    const quiet = observe(tracker(), '@dns_q_lookup_n_0', {
      [`${NETNS},${POD}`]: 1,
      [`${NETNS},${POD},7`]: 0,
      [`${NETNS},${POD},8`]: 65536,
      [`${NETNS},x,9`]: 1,
      [`${NETNS},${POD},11`]: 2 ** 36,
      [`${NETNS},${POD},10`]: 4,
    });
    expect(quiet.rejectedKeys).toHaveLength(5);
    expect(quiet.events).toEqual([expect.objectContaining({ queriesPerLookup: 4, count: 1 })]);
  });

  it('leaves out parallel keys that are not (namespace, client), and says which', () => {
    const update = observe(tracker(), '@dns_q_parallel_1', {
      [`${NETNS},${POD},53`]: 1,
      [`${NETNS}`]: 1,
      [`x,${POD}`]: 1,
      [`${NETNS},4294967296`]: 1,
      [`${NETNS},${POD}`]: 2,
    });
    expect(update.rejectedKeys).toHaveLength(4);
    expect(update.events).toEqual([expect.objectContaining({ outcome: 'parallel', count: 2 })]);
  });

  it('leaves out keys that are not as the probe prints them, and says which', () => {
    const counts = tracker();
    const answers = observe(counts, '@dns_q_answers', {
      [`${NETNS},${POD},6,0`]: 1,
      [`${NETNS},${POD},0,12`]: 1,
      [`${NETNS},${POD},0`]: 1,
      [`${NETNS},${POD},0,1`]: 2,
    });
    expect(answers.rejectedKeys).toHaveLength(3);
    expect(answers.events).toEqual([expect.objectContaining({ count: 2 })]);
    const pending = observe(counts, '@dns_q_pending_0', {
      [`${NETNS},${POD},70000,1,${CLUSTER_IP}`]: 1,
      [`${NETNS},${POD},1,1`]: 1,
      [`x,${POD},1,1,${CLUSTER_IP}`]: 1,
    });
    expect(pending.rejectedKeys).toHaveLength(3);
    expect(pending.events).toEqual([]);
  });

  it('ignores maps that are not its own, and knows its own by name', () => {
    expect(observe(tracker(), '@dns_drops_0', { a: 1 }).events).toEqual([]);
    expect(isDnsQueryMap('@dns_q_pending_0')).toBe(true);
    expect(isDnsQueryMap('@dns_drops_0')).toBe(false);
  });
});

describe('DnsQueryCounts: IPv6 clients, each address keyed as two u64 halves', () => {
  const POD6 = probeKeyOfIpv6('fd00:10:244::2').join(',');
  const OTHER_POD6 = probeKeyOfIpv6('fd00:10:244::3').join(',');
  const CLUSTER_IP6 = probeKeyOfIpv6('fd00:10:96::a').join(',');
  const BACKEND6 = probeKeyOfIpv6('2001:db8::99').join(',');

  it('keys as the probe does: the halves bpftrace printed for 2001:db8::99', () => {
    expect(probeKeyOfIpv6('2001:db8::99')).toEqual(['3087860000', '-7421932185906577408']);
  });

  it('turns the growth of the IPv6 answer counts into answered queries of the client, in canonical text', () => {
    const counts = tracker();
    observe(counts, '@dns_q_answers6', { [`${NETNS},${POD6},0,2`]: 4 });
    const update = observe(counts, '@dns_q_answers6', {
      [`${NETNS},${POD6},0,2`]: 6,
      [`${NETNS},${POD6},2,11`]: 1,
    });
    expect(update.rejectedKeys).toEqual([]);
    expect(update.events).toEqual([
      expect.objectContaining({
        outcome: 'answered',
        answer: 'NOERROR',
        latencyBucketSeconds: 0.01,
        count: 2,
        netnsInode: NETNS,
        tuple: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: '::', dstPort: 53 },
      }),
      expect.objectContaining({ answer: 'NXDOMAIN', latencyBucketSeconds: Infinity, count: 1 }),
    ]);
  });

  it('counts each key of a printed IPv6 pending generation as one unanswered query, summed per client and server', () => {
    const counts = tracker();
    const update = observe(counts, '@dns_q_pending6_0', {
      [`${NETNS},${POD6},40001,17,${CLUSTER_IP6}`]: 1000,
      [`${NETNS},${POD6},40001,18,${CLUSTER_IP6}`]: 1001,
      [`${NETNS},${POD6},40002,17,${BACKEND6}`]: 1002,
      [`${NETNS},${OTHER_POD6},40003,5,${CLUSTER_IP6}`]: 1003,
    });
    expect(update.rejectedKeys).toEqual([]);
    const of = (client: string, server: string) =>
      update.events.find((event) => event.tuple.srcIp === client && event.tuple.dstIp === server);
    expect(of('fd00:10:244::2', 'fd00:10:96::a')).toMatchObject({
      outcome: 'unanswered',
      count: 2,
    });
    expect(of('fd00:10:244::2', '2001:db8::99')).toMatchObject({ count: 1 });
    expect(of('fd00:10:244::3', 'fd00:10:96::a')).toMatchObject({ count: 1 });
    expect(update.events).toHaveLength(3);
  });

  it('counts the growth of the IPv6 resent count as unanswered queries of that client and server, each generation from zero after its map_cleared', () => {
    const counts = tracker();
    const key = `${NETNS},${POD6},${CLUSTER_IP6}`;
    expect(observe(counts, '@dns_q_resent6_1', { [key]: 2 }).events).toEqual([
      expect.objectContaining({
        outcome: 'unanswered',
        count: 2,
        tuple: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: 'fd00:10:96::a', dstPort: 53 },
      }),
    ]);
    expect(observe(counts, '@dns_q_resent6_1', { [key]: 2 }).events).toEqual([]);
    counts.cleared('@dns_q_resent6_1');
    expect(observe(counts, '@dns_q_resent6_1', { [key]: 1 }).events).toEqual([
      expect.objectContaining({ count: 1 }),
    ]);
  });

  it('turns the growth of the IPv6 parallel counts into parallel queries of the client, each generation from zero after its map_cleared', () => {
    const counts = tracker();
    const key = `${NETNS},${POD6}`;
    expect(observe(counts, '@dns_q_parallel6_0', { [key]: 3 }).events).toEqual([
      expect.objectContaining({
        outcome: 'parallel',
        count: 3,
        tuple: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: '::', dstPort: 53 },
      }),
    ]);
    expect(observe(counts, '@dns_q_parallel6_0', { [key]: 4 }).events).toEqual([
      expect.objectContaining({ count: 1 }),
    ]);
    counts.cleared('@dns_q_parallel6_0');
    expect(observe(counts, '@dns_q_parallel6_0', { [key]: 1 }).events).toEqual([
      expect.objectContaining({ count: 1 }),
    ]);
    expect(observe(counts, '@dns_q_parallel6_1', { [`${NETNS},${POD}`]: 1 }).rejectedKeys).toEqual([
      `${NETNS},${POD}`,
    ]);
  });

  it('turns the growth of the IPv6 lookup counts into lookups of the client by queries each and how they ended, each generation from zero after its map_cleared', () => {
    const counts = tracker();
    const first = observe(counts, '@dns_q_lookups6_0', {
      [`${NETNS},${POD6},8,4`]: 3,
      [`${NETNS},${POD6},33,21`]: 1,
    });
    expect(first.rejectedKeys).toEqual([]);
    expect(first.events).toEqual([
      expect.objectContaining({
        kind: 'dns_query',
        outcome: 'lookup',
        queriesPerLookup: 8,
        lookupEnd: 'nxdomain',
        count: 3,
        netnsInode: NETNS,
        tuple: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: '::', dstPort: 53 },
      }),
      expect.objectContaining({ queriesPerLookup: Infinity, lookupEnd: 'answered', count: 1 }),
    ]);
    const next = observe(counts, '@dns_q_lookups6_0', {
      [`${NETNS},${POD6},8,4`]: 5,
      [`${NETNS},${POD6},33,21`]: 1,
    });
    expect(next.events.map((event) => [event.queriesPerLookup, event.count])).toEqual([[8, 2]]);
    counts.cleared('@dns_q_lookups6_0');
    expect(
      observe(counts, '@dns_q_lookups6_0', { [`${NETNS},${POD6},2,1`]: 1 }).events.map((event) => [
        event.queriesPerLookup,
        event.lookupEnd,
        event.count,
      ]),
    ).toEqual([[2, 'answered', 1]]);
  });

  it('counts each key of a printed IPv6 quiet-lookup generation as one lookup of its queries, summed per client, queries and end', () => {
    const update = observe(tracker(), '@dns_q_lookup_n6_1', {
      [`${NETNS},${POD6},101`]: kept(4, 8, 8),
      [`${NETNS},${POD6},102`]: kept(4, 8, 8),
      [`${NETNS},${POD6},103`]: kept(6, 6, 6),
      [`${NETNS},${OTHER_POD6},104`]: kept(3, 2, 2),
    });
    expect(update.rejectedKeys).toEqual([]);
    expect(
      update.events.map((event) => [
        event.tuple.srcIp,
        event.tuple.dstIp,
        event.queriesPerLookup,
        event.lookupEnd,
        event.count,
      ]),
    ).toEqual([
      ['fd00:10:244::2', '::', 8, 'nxdomain', 2],
      ['fd00:10:244::2', '::', 6, 'nodata', 1],
      ['fd00:10:244::3', '::', 2, 'answered', 1],
    ]);
  });

  it('leaves out IPv6 lookup keys that are not as the probe prints them, IPv4-shaped ones included', () => {
    const lookups = observe(tracker(), '@dns_q_lookups6_1', {
      [`${NETNS},${POD},2,1`]: 1,
      [`${NETNS},${POD6},2`]: 1,
      [`${NETNS},${POD6},0,1`]: 1,
      [`${NETNS},${POD6},34,1`]: 1,
      [`${NETNS},${POD6},2,32`]: 1,
      [`${NETNS},${POD6},2,1`]: 1,
    });
    expect(lookups.rejectedKeys).toHaveLength(5);
    expect(lookups.events).toEqual([
      expect.objectContaining({ queriesPerLookup: 2, lookupEnd: 'answered', count: 1 }),
    ]);
    const quiet = observe(tracker(), '@dns_q_lookup_n6_0', {
      [`${NETNS},${POD},7`]: 4,
      [`${NETNS},${POD6}`]: 4,
      [`${NETNS},${POD6},8`]: 65536,
      [`${NETNS},${POD6},11`]: 2 ** 36,
      [`${NETNS},${POD6},10`]: 4,
    });
    expect(quiet.rejectedKeys).toHaveLength(4);
    expect(quiet.events).toEqual([
      expect.objectContaining({ tuple: expect.objectContaining({ srcIp: 'fd00:10:244::2' }) }),
    ]);
    expect(quiet.events[0]).toMatchObject({ queriesPerLookup: 4, count: 1 });
  });

  it('leaves out IPv6 keys that are not as the probe prints them, IPv4-shaped ones included', () => {
    const counts = tracker();
    const answers = observe(counts, '@dns_q_answers6', {
      [`${NETNS},${POD},0,1`]: 1,
      [`${NETNS},${POD6},0`]: 1,
      [`${NETNS},x,1,0,1`]: 1,
      [`${NETNS},${POD6},6,0`]: 1,
    });
    expect(answers.rejectedKeys).toHaveLength(4);
    expect(answers.events).toEqual([]);
    const pending = observe(counts, '@dns_q_pending6_1', {
      [`${NETNS},${POD},40001,17,${CLUSTER_IP}`]: 1,
      [`${NETNS},${POD6},70000,17,${CLUSTER_IP6}`]: 1,
      [`${NETNS},${POD6},40001,17,${CLUSTER_IP6},1`]: 1,
    });
    expect(pending.rejectedKeys).toHaveLength(3);
    expect(pending.events).toEqual([]);
    const resent = observe(counts, '@dns_q_resent6_0', { [`${NETNS},${POD},${CLUSTER_IP}`]: 1 });
    expect(resent.rejectedKeys).toHaveLength(1);
  });
});
