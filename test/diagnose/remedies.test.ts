import { describe, expect, it } from '@jest/globals';
import yaml from 'js-yaml';
import type {
  ContainerDiagnosis,
  EventDiagnosis,
  NodeDiagnosis,
  PodDiagnosis,
} from '../../src/events/diagnosis.js';
import { adviceForEvent } from '../../src/diagnose/remedies.js';
import { parseResolvConf } from '../../src/diagnose/resolv-conf.js';
import { kernelFactsOf } from '../../src/diagnose/kernel-facts.js';
import {
  explainInsertFailure,
  MAX_MESSAGE_BYTES,
} from '../../src/sinks/kubernetes-events/event-messages.js';
import { insertFailure } from '../support/events.js';

const SNAT_RACE = insertFailure({
  race: 'snat',
  original: { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '192.0.2.53', dstPort: 53 },
  reply: { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1', dstPort: 40000 },
});
const DNAT_RACE = insertFailure({
  race: 'dnat',
  original: { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '10.96.0.10', dstPort: 53 },
  reply: { srcIp: '192.0.2.54', srcPort: 53, dstIp: '10.244.0.2', dstPort: 40000 },
});

function container(
  libc: 'musl' | 'glibc',
  resolvConf: string,
  nameserverKind: 'cluster-dns' | 'nodelocal' = 'cluster-dns',
): ContainerDiagnosis {
  const conf = parseResolvConf(resolvConf);
  return {
    pid: 10,
    name: `${libc}-app`,
    libc: { kind: libc, ...(libc === 'glibc' ? { version: '2.36' } : {}) },
    resolvConf: conf,
    nameservers: conf.nameservers.map((address) => ({ address, kind: nameserverKind })),
  };
}

function pod(containers: ContainerDiagnosis[], spec?: PodDiagnosis['spec']): PodDiagnosis {
  return {
    status: 'diagnosed',
    foundBy: 'pod-uid',
    containers,
    diagnosedAtMs: 0,
    ...(spec ? { spec } : {}),
  };
}

function node(changes: Partial<NodeDiagnosis> = {}): NodeDiagnosis {
  return {
    status: 'diagnosed',
    kernel: kernelFactsOf('6.18.0'),
    natRules: [
      {
        backend: 'iptables-nft',
        family: 'ipv4',
        table: 'nat',
        chain: 'POSTROUTING',
        target: 'MASQUERADE',
        randomFully: false,
        text: '-A POSTROUTING -j MASQUERADE',
      },
    ],
    natSources: [],
    kubeProxyMode: 'iptables',
    nodeLocalDns: { present: false, addresses: [] },
    conntrack: {},
    diagnosedAtMs: 0,
    ...changes,
  };
}

const CLUSTER_FIRST =
  'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n';
const ids = (diagnosis: EventDiagnosis, event = SNAT_RACE) =>
  adviceForEvent(event, diagnosis).remedies.map((r) => r.id);

describe('tailored remedies', () => {
  it('never offers single-request-reopen to a musl pod, and says why', () => {
    const diagnosis = { pod: pod([container('musl', CLUSTER_FIRST)]), node: node() };
    const advice = adviceForEvent(SNAT_RACE, diagnosis);
    expect(ids(diagnosis)).not.toContain('single-request-reopen');
    expect(ids(diagnosis)).toEqual(
      expect.arrayContaining(['random-fully', 'tcp-resolver', 'nodelocal-dns']),
    );
    expect(advice.notes.join(' ')).toContain('musl always sends A and AAAA in parallel');
    const { message } = explainInsertFailure(
      SNAT_RACE,
      { sourceIp: '10.244.0.2', netnsInode: 1 },
      { hostNetwork: false, advice: adviceForEvent(SNAT_RACE, diagnosis) },
    );
    expect(message).not.toContain('single-request-reopen;');
    expect(message).toContain('musl');
  });

  it('offers a glibc pod without the option single-request-reopen with the exact YAML, keeping its dnsConfig options', () => {
    const diagnosis = {
      pod: pod([container('glibc', CLUSTER_FIRST)], {
        hostNetwork: false,
        dnsPolicy: 'ClusterFirst',
        dnsConfig: { options: [{ name: 'ndots', value: '2' }] },
      }),
      node: node(),
    };
    const remedy = adviceForEvent(SNAT_RACE, diagnosis).remedies.find(
      (r) => r.id === 'single-request-reopen',
    );
    expect(remedy?.yaml).toBe(
      'spec:\n  dnsConfig:\n    options:\n      - name: ndots\n        value: "2"\n      - name: single-request-reopen\n',
    );
    expect(remedy?.text).toContain(
      'dnsConfig: {options: [{name: ndots, value: "2"}, {name: single-request-reopen}]}',
    );
  });

  it('quotes dnsConfig option names and values that YAML would misread, so the fragment parses back to the spec', () => {
    const options = [
      { name: '*edns0', value: 'a: b # not a comment' },
      { name: 'ndots', value: '2' },
      { name: 'trust-ad' },
      { name: 'timeout', value: '"1"' },
    ];
    const diagnosis = {
      pod: pod([container('glibc', CLUSTER_FIRST)], {
        hostNetwork: false,
        dnsPolicy: 'ClusterFirst',
        dnsConfig: { options },
      }),
      node: node(),
    };
    const remedy = adviceForEvent(SNAT_RACE, diagnosis).remedies.find(
      (r) => r.id === 'single-request-reopen',
    );
    const expected = { options: [...options, { name: 'single-request-reopen' }] };
    expect(yaml.load(remedy?.yaml ?? '')).toEqual({ spec: { dnsConfig: expected } });
    const flow = /dnsConfig: \{.*\}\]\}/.exec(remedy?.text ?? '')?.[0];
    expect(yaml.load(flow ?? '')).toEqual({ dnsConfig: expected });
  });

  it('tells a glibc pod that has the option that it is set, and why the race still happens', () => {
    const diagnosis = {
      pod: pod([container('glibc', `${CLUSTER_FIRST}options single-request-reopen\n`)]),
      node: node(),
    };
    const advice = adviceForEvent(SNAT_RACE, diagnosis);
    expect(advice.remedies.map((r) => r.id)).not.toContain('single-request-reopen');
    expect(advice.notes.join(' ')).toContain(
      'single-request-reopen is already set for glibc-app (glibc)',
    );
    expect(advice.notes.join(' ')).toContain("another pod's flow taking the same SNAT port");
  });

  it('does not suggest NodeLocal DNSCache to a pod that uses it, but its upstream path', () => {
    const diagnosis = {
      pod: pod([container('glibc', 'nameserver 169.254.20.10\n', 'nodelocal')]),
      node: node(),
    };
    expect(ids(diagnosis)).not.toContain('nodelocal-dns');
    expect(ids(diagnosis)).toContain('nodelocal-upstream-tcp');
  });

  it('says --random-fully is already there instead of suggesting it', () => {
    const rule = { ...node().natRules[0]!, randomFully: true };
    const diagnosis = {
      pod: pod([container('glibc', CLUSTER_FIRST)]),
      node: node({ natRules: [rule] }),
    };
    const advice = adviceForEvent(SNAT_RACE, diagnosis);
    expect(advice.remedies.map((r) => r.id)).not.toContain('random-fully');
    expect(advice.notes.join(' ')).toContain('already use --random-fully');
  });

  it('names the kernel that fixes a DNAT clash on an old kernel, and none on a new one', () => {
    const old = {
      pod: pod([container('glibc', CLUSTER_FIRST)]),
      node: node({ kernel: kernelFactsOf('5.4.0-150-generic') }),
    };
    expect(
      adviceForEvent(DNAT_RACE, old).remedies.find((r) => r.id === 'kernel-nat-clash')?.text,
    ).toContain('kernel 5.6+ (this node runs 5.4.0-150-generic)');
    const ancient = { ...old, node: node({ kernel: kernelFactsOf('4.14.0') }) };
    expect(ids(ancient, DNAT_RACE)).toContain('kernel-matching-clash');
    const current = { ...old, node: node() };
    expect(ids(current, DNAT_RACE).filter((id) => id.startsWith('kernel'))).toEqual([]);
  });

  it('gives the generic remedies, saying the diagnosis is unknown, before the pod is read', () => {
    const diagnosis: EventDiagnosis = {
      pod: { status: 'unknown', reason: 'not read yet' },
      node: { status: 'unknown', reason: 'x' },
    };
    const { message } = explainInsertFailure(
      SNAT_RACE,
      { sourceIp: '10.244.0.2', netnsInode: 1 },
      { hostNetwork: false, advice: adviceForEvent(SNAT_RACE, diagnosis) },
    );
    expect(message).toContain('Diagnosis unknown (not read yet): generic remedies.');
    expect(message).toContain('single-request-reopen (glibc only; musl/Alpine ignores it)');
  });

  it('keeps a fully diagnosed message within the Event limit with its remedies whole', () => {
    const diagnosis = {
      pod: pod([container('glibc', CLUSTER_FIRST), container('musl', CLUSTER_FIRST)], {
        hostNetwork: false,
        dnsConfig: { options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }] },
      }),
      node: node(),
    };
    const { message } = explainInsertFailure(
      insertFailure({ ...DNAT_RACE, race: 'snat_dnat' }),
      { sourceIp: '10.244.0.2', netnsInode: 1 },
      {
        hostNetwork: false,
        advice: adviceForEvent(insertFailure({ ...DNAT_RACE, race: 'snat_dnat' }), diagnosis),
      },
    );
    expect(Buffer.byteLength(message)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(message).toMatch(/Remedies: .*\.$/);
  });
});
