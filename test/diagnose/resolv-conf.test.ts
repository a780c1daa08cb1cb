import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { parseResolvConf } from '../../src/diagnose/resolv-conf.js';
import { classifyNameserver } from '../../src/diagnose/nameserver-kind.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../fixtures/diagnose/${name}`, import.meta.url), 'utf8');

describe('parseResolvConf', () => {
  it("reads the kubelet's ClusterFirst file: the search list, one nameserver, ndots:5 and the defaults", () => {
    const conf = parseResolvConf(fixture('resolv.conf-kubernetes-clusterfirst'));
    expect(conf.nameservers).toEqual(['10.96.0.10']);
    expect(conf.search).toEqual([
      'default.svc.cluster.local',
      'svc.cluster.local',
      'cluster.local',
      'corp.test',
    ]);
    expect(conf.options).toMatchObject({
      ndots: 5,
      timeout: 5,
      attempts: 2,
      singleRequestReopen: false,
    });
    expect(conf.warnings).toEqual([]);
  });

  it('applies glibc rules: comments, the last of search/domain, three nameservers, capped numbers, flags', () => {
    const conf = parseResolvConf(fixture('resolv.conf-edge-cases'));
    expect(conf.search).toEqual(['a.test', 'b.test']);
    expect(conf.nameservers).toEqual(['169.254.20.10', '10.96.0.10', '192.0.2.53']);
    expect(conf.options).toEqual({
      ndots: 15,
      timeout: 1,
      attempts: 5,
      singleRequest: false,
      singleRequestReopen: true,
      useVc: true,
      rotate: true,
      edns0: true,
    });
    expect(conf.warnings).toEqual(
      expect.arrayContaining([
        expect.stringContaining('nameserver 192.0.2.54 ignored'),
        expect.stringContaining('ndots:20 is capped at 15'),
        expect.stringContaining('unknown option bogus-option'),
        expect.stringContaining('unknown keyword frobnicate'),
      ]),
    );
  });

  it("reads this machine's own /etc/resolv.conf without a warning about its syntax", () => {
    const conf = parseResolvConf(readFileSync('/etc/resolv.conf', 'utf8'));
    expect(conf.nameservers.length).toBeGreaterThan(0);
    expect(conf.warnings.filter((w) => w.includes('unknown'))).toEqual([]);
  });

  it('says so when there is no nameserver at all, and never throws on garbage', () => {
    expect(parseResolvConf('').warnings).toEqual(['no nameserver: the resolver uses 127.0.0.1']);
    expect(() => parseResolvConf('\u0000\u0001 options ndots:\nnameserver\n')).not.toThrow();
  });
});

describe('nameservers of either family', () => {
  it('keeps IPv6 nameservers in canonical form and skips what is no address, as glibc does', () => {
    const conf = parseResolvConf(
      'nameserver FD00:10:96:0::A\nnameserver dns.example\nnameserver fe80::1%eth0\nnameserver 10.96.0.10\n',
    );
    expect(conf.nameservers).toEqual(['fd00:10:96::a', 'fe80::1%eth0', '10.96.0.10']);
    expect(conf.warnings).toEqual([
      'line 2: nameserver dns.example ignored (not an IPv4 or IPv6 address)',
    ]);
  });

  it('names the kind of an IPv6 nameserver: cluster DNS, NodeLocal DNSCache, link-local, loopback', () => {
    const context = {
      clusterDnsIps: new Set(['10.96.0.10', 'fd00:10:96::a']),
      nodeLocalDnsIps: new Set(['fd00:0:0::10']),
    };
    const kinds = ['fd00:10:96:0:0:0:0:a', 'fd00::10', 'fe80::1%eth0', '::1', '2001:db8::53'].map(
      (address) => classifyNameserver(address, context),
    );
    expect(kinds).toEqual([
      { address: 'fd00:10:96::a', kind: 'cluster-dns' },
      { address: 'fd00::10', kind: 'nodelocal' },
      { address: 'fe80::1%eth0', kind: 'nodelocal' },
      { address: '::1', kind: 'loopback' },
      { address: '2001:db8::53', kind: 'other' },
    ]);
  });
});
