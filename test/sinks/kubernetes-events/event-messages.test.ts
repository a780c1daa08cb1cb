import { describe, expect, it } from '@jest/globals';
import type {
  Attribution,
  DnsDropEvent,
  DnsQueryEvent,
  InsertFailureEvent,
  RaceKind,
} from '../../../src/events/types.js';
import { adviceForEvent } from '../../../src/diagnose/remedies.js';
import {
  EVENT_REASONS,
  MAX_MESSAGE_BYTES,
  explainDnsDrop as explainDnsDropWith,
  explainInsertFailure as explainInsertFailureWith,
  explainTableFull,
  explainUnansweredQueries,
  fitMessage,
  type ExplainContext,
  type Explanation,
} from '../../../src/sinks/kubernetes-events/event-messages.js';
import {
  dnsDrop as baseDnsDrop,
  dnsQuery as baseDnsQuery,
  insertFailure as baseInsertFailure,
} from '../../support/events.js';

const POD_ATTRIBUTION: Attribution = {
  sourceIp: '10.244.1.7',
  netnsInode: 4026532512,
  pod: { namespace: 'default', name: 'web-0', uid: 'u1', hostNetwork: false },
  service: { namespace: 'kube-system', name: 'kube-dns' },
  backendPod: {
    namespace: 'kube-system',
    name: 'coredns-5d78c9869d-q9w4t',
    uid: 'u2',
    hostNetwork: false,
  },
};

function insertFailure(
  race: RaceKind,
  changes: Partial<InsertFailureEvent> = {},
): InsertFailureEvent {
  const snat = race === 'snat' || race === 'snat_dnat';
  const dnat = race === 'dnat' || race === 'snat_dnat';
  return baseInsertFailure({
    race,
    original: { srcIp: '10.244.1.7', srcPort: 41522, dstIp: '10.96.0.10', dstPort: 53 },
    reply: {
      srcIp: dnat ? '10.244.2.3' : '10.96.0.10',
      srcPort: 53,
      dstIp: snat ? '192.0.2.1' : '10.244.1.7',
      dstPort: snat ? 61001 : 41522,
    },
    ...changes,
  });
}

function dnsDrop(reason: string, changes: Partial<DnsDropEvent> = {}): DnsDropEvent {
  return baseDnsDrop({
    reason,
    tuple: { srcIp: '10.244.1.7', srcPort: 41522, dstIp: '10.96.0.10', dstPort: 53 },
    location: 'nf_hook_slow',
    ...changes,
  });
}

const ON_POD = { hostNetwork: false };

/** As the sink explains an event: with the advice the pipeline writes when nothing is diagnosed. */
function withGenericAdvice<E extends InsertFailureEvent | DnsDropEvent>(
  explain: (event: E, attribution: Attribution, context: ExplainContext) => Explanation,
) {
  return (event: E, attribution: Attribution, context: ExplainContext): Explanation =>
    explain(event, attribution, { ...context, advice: adviceForEvent(event, undefined) });
}
const explainInsertFailure = withGenericAdvice(explainInsertFailureWith);
const explainDnsDrop = withGenericAdvice(explainDnsDropWith);

const GLIBC_ONLY = 'single-request-reopen (glibc only; musl/Alpine ignores it)';

describe('explainInsertFailure', () => {
  it('describes a DNAT race towards kube-dns with the backend, the symptom and its remedies', () => {
    const { reason, message } = explainInsertFailure(
      insertFailure('dnat'),
      POD_ATTRIBUTION,
      ON_POD,
    );
    expect(reason).toBe('ConntrackInsertFailed');
    expect(message).toContain(
      'UDP query 10.244.1.7:41522 → kube-dns 10.96.0.10:53, DNAT to 10.244.2.3:53 (coredns-5d78c9869d-q9w4t)',
    );
    expect(message).toContain('DNAT race towards a ClusterIP');
    expect(message).toContain('resolver timed out (typically 5 s) and then retried');
    expect(message).toContain(GLIBC_ONLY);
    expect(message).toContain('NodeLocal DNSCache');
    expect(message).toContain('4.19+; 5.6+');
    expect(message).toContain('trailing dot');
    expect(message).not.toContain('--random-fully');
  });

  it('writes IPv6 endpoints as [address]:port in canonical form', () => {
    const event = insertFailure('snat_dnat', {
      original: { srcIp: 'fd00:10:244:0::4', srcPort: 41522, dstIp: 'FD00:10:96::A', dstPort: 53 },
      reply: { srcIp: 'fd00:10:244:2::3', srcPort: 53, dstIp: '2001:db8:0:0::1', dstPort: 61001 },
    });
    const { message } = explainInsertFailure(event, POD_ATTRIBUTION, ON_POD);
    expect(message).toContain(
      'UDP query [fd00:10:244::4]:41522 → kube-dns [fd00:10:96::a]:53, DNAT to [fd00:10:244:2::3]:53 (coredns-5d78c9869d-q9w4t), SNAT to [2001:db8::1]:61001',
    );
  });

  it('describes an SNAT race leaving the node and proposes --random-fully', () => {
    const event = insertFailure('snat', {
      original: { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '192.0.2.53', dstPort: 53 },
      reply: { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1', dstPort: 40000 },
    });
    const { message } = explainInsertFailure(
      event,
      { sourceIp: '10.244.0.2', netnsInode: 1 },
      ON_POD,
    );
    expect(message).toContain(
      'UDP query 10.244.0.2:40000 → 192.0.2.53:53, SNAT to 192.0.2.1:40000',
    );
    expect(message).toContain('SNAT port-allocation race when leaving the node');
    expect(message).toContain('--random-fully on the MASQUERADE rule');
    expect(message).toContain(GLIBC_ONLY);
    expect(message).not.toContain('clash resolution');
  });

  it('names both rewrites and both families of remedies for an SNAT+DNAT race', () => {
    const { message } = explainInsertFailure(insertFailure('snat_dnat'), POD_ATTRIBUTION, ON_POD);
    expect(message).toContain('DNAT to 10.244.2.3:53');
    expect(message).toContain('SNAT to 192.0.2.1:61001');
    expect(message).toContain('SNAT and DNAT race');
    expect(message).toContain('--random-fully');
    expect(message).toContain('clash resolution');
  });

  it('explains a race without NAT as two packets of one flow', () => {
    const { message } = explainInsertFailure(insertFailure('none'), POD_ATTRIBUTION, ON_POD);
    expect(message).toContain('conntrack insert race without NAT');
    expect(message).not.toContain('--random-fully');
    expect(message).toContain('clash resolution');
  });

  it('leaves DNS remedies out for a non-DNS flow and says what a TCP sender saw', () => {
    const event = insertFailure('snat', {
      protocol: 'tcp',
      original: { srcIp: '10.244.0.2', srcPort: 51000, dstIp: '198.51.100.7', dstPort: 443 },
      reply: { srcIp: '198.51.100.7', srcPort: 443, dstIp: '192.0.2.1', dstPort: 51000 },
    });
    const { message } = explainInsertFailure(
      event,
      { sourceIp: '10.244.0.2', netnsInode: 1 },
      ON_POD,
    );
    expect(message).toContain('TCP packet 10.244.0.2:51000 → 198.51.100.7:443');
    expect(message).toContain('retransmission');
    expect(message).not.toContain('single-request-reopen');
    expect(message).not.toContain('resolver');
  });

  it('puts host-network races on the Node, saying why no pod is blamed', () => {
    const { reason, message } = explainInsertFailure(
      insertFailure('dnat'),
      { sourceIp: '192.0.2.1', netnsInode: 1 },
      { hostNetwork: true },
    );
    expect(reason).toBe('ConntrackInsertFailedHostNetwork');
    expect(message).toContain("node's network namespace");
    expect(message).toContain('The sender saw no answer');
  });
});

describe('explainDnsDrop', () => {
  it('tells a rule drop (nft_do_chain) from a conntrack drop (nf_hook_slow)', () => {
    const rule = explainDnsDrop(
      dnsDrop('NETFILTER_DROP', { location: 'nft_do_chain' }),
      POD_ATTRIBUTION,
      ON_POD,
    );
    expect(rule.reason).toBe('DNSQueryDropped');
    expect(rule.message).toContain('A firewall rule dropped it');
    expect(rule.message).toContain('NetworkPolicies');
    const hook = explainDnsDrop(dnsDrop('NETFILTER_DROP'), POD_ATTRIBUTION, ON_POD);
    expect(hook.message).toContain('conntrack lost a NAT insert race');
    expect(hook.message).toContain(GLIBC_ONLY);
    expect(hook.message).toContain('(reason NETFILTER_DROP, in nf_hook_slow)');
  });

  it('explains a query reaching no listener (NO_SOCKET) as a missing DNS backend', () => {
    const { message } = explainDnsDrop(
      dnsDrop('NO_SOCKET', {
        tuple: { srcIp: '10.244.1.7', srcPort: 41522, dstIp: '10.244.2.3', dstPort: 53 },
        location: '-',
      }),
      POD_ATTRIBUTION,
      ON_POD,
    );
    expect(message).toContain('Nothing listens on UDP 53 at 10.244.2.3');
    expect(message).toContain('stale conntrack entry');
    expect(message).toContain('resolver timed out');
    expect(message).not.toContain(', in -');
  });

  it('explains a response reaching a closed socket as a resolver that had given up', () => {
    const { message } = explainDnsDrop(
      dnsDrop('NO_SOCKET', {
        direction: 'response',
        tuple: { srcIp: '10.96.0.10', srcPort: 53, dstIp: '10.244.1.7', dstPort: 41522 },
      }),
      POD_ATTRIBUTION,
      ON_POD,
    );
    expect(message).toContain('UDP response kube-dns 10.96.0.10:53 → 10.244.1.7:41522');
    expect(message).toContain('already given up');
  });

  it('names any other kernel drop reason as it is', () => {
    const { message } = explainDnsDrop(dnsDrop('IP_RPFILTER'), POD_ATTRIBUTION, ON_POD);
    expect(message).toContain('drop reason IP_RPFILTER');
  });
});

describe('explainUnansweredQueries', () => {
  const unanswered = (changes: Partial<DnsQueryEvent> = {}): DnsQueryEvent =>
    baseDnsQuery({
      outcome: 'unanswered',
      answer: undefined,
      cause: 'none',
      count: 4,
      tuple: { srcIp: '10.244.1.7', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
      ...changes,
    });
  const coredns = POD_ATTRIBUTION.backendPod!;
  const attribution: Attribution = {
    ...POD_ATTRIBUTION,
    backendPod: undefined,
    backends: [{ ip: '10.244.2.3', pod: coredns }, { ip: '10.244.3.4' }],
  };

  it('names the backend pod that never answered when no drop on this node explains the queries', () => {
    const { reason, message } = explainUnansweredQueries(
      unanswered({ backends: ['10.244.2.3'] }),
      attribution,
      ON_POD,
      5,
    );
    expect(reason).toBe(EVENT_REASONS.dnsUnanswered);
    expect(message).toContain('No drop on this node explains it');
    expect(message).toContain(
      'sent to backend 10.244.2.3 (pod kube-system/coredns-5d78c9869d-q9w4t) after DNAT and never answered: check that backend',
    );
  });

  it('names several backends, by address where no pod is known, and none when the table named none or was not read', () => {
    const { message } = explainUnansweredQueries(
      unanswered({ backends: ['10.244.2.3', '10.244.3.4'] }),
      attribution,
      ON_POD,
      5,
    );
    expect(message).toContain(
      'backends 10.244.2.3 (pod kube-system/coredns-5d78c9869d-q9w4t), 10.244.3.4 after DNAT',
    );
    for (const backends of [[], undefined]) {
      const plain = explainUnansweredQueries(unanswered({ backends }), attribution, ON_POD, 5);
      expect(plain.message).not.toContain('conntrack table');
    }
    // A drop here is the cause: no backend is blamed.
    const firewalled = explainUnansweredQueries(
      unanswered({ cause: 'firewall', backends: ['10.244.2.3'] }),
      attribution,
      ON_POD,
      5,
    );
    expect(firewalled.message).not.toContain('conntrack table');
  });
});

describe('explainTableFull', () => {
  it('gives the fill level, the effect on every pod and the remedies', () => {
    const { reason, message } = explainTableFull({
      nodeName: 'lab-node',
      entries: 262144,
      limit: 262144,
      drops: 311,
    });
    expect(reason).toBe(EVENT_REASONS.tableFull);
    expect(message).toContain('262144 of 262144 entries');
    expect(message).toContain('311 packets');
    expect(message).toContain('nf_conntrack_max');
  });
});

describe('message size', () => {
  it('keeps every message under the 1 KiB Event limit, even with long names', () => {
    const long = 'x'.repeat(250);
    const attribution: Attribution = {
      ...POD_ATTRIBUTION,
      service: { namespace: long, name: long },
      backendPod: { namespace: long, name: long, uid: 'u', hostNetwork: false },
    };
    for (const race of ['snat', 'dnat', 'snat_dnat', 'none'] as const) {
      for (const hostNetwork of [false, true]) {
        const { message } = explainInsertFailure(insertFailure(race), attribution, { hostNetwork });
        expect(Buffer.byteLength(message)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
        // Long names are shortened so that the remedies, at the end, survive.
        expect(message).toMatch(/NodeLocal DNSCache[^…]*\.$/);
      }
    }
    expect(
      Buffer.byteLength(explainDnsDrop(dnsDrop('NETFILTER_DROP'), attribution, ON_POD).message),
    ).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });

  it('cuts on a character boundary', () => {
    const cut = fitMessage('→'.repeat(600));
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(cut.endsWith('→…')).toBe(true);
  });
});
