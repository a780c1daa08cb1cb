import { readFileSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from '@jest/globals';
import { createHostFiles } from '../../src/diagnose/host-files.js';
import { detectLibc, elfInterpreter } from '../../src/diagnose/libc.js';
import {
  kubeProxyModeOf,
  parseIptablesSave,
  parseNftRuleset,
} from '../../src/diagnose/nat-rules.js';
import { diagnosePod } from '../../src/diagnose/pod-diagnoser.js';
import { PodDiagnosisCache } from '../../src/diagnose/pod-diagnosis-cache.js';
import {
  localAddressesOfFibTrie,
  localAddressesOfIfInet6,
  NetnsAddressMap,
} from '../../src/diagnose/netns-addresses.js';
import { makeContainerRoot, makeProcTree, type ContainerRoot } from '../support/container-roots.js';
import { ManualClock } from '../support/manual-clock.js';

const files = createHostFiles();
const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((remove) => remove()));

function root(kind: 'musl' | 'glibc', resolvConf: string): ContainerRoot {
  const made = makeContainerRoot(kind, resolvConf);
  cleanup.push(made.remove);
  return made;
}

describe('detectLibc', () => {
  it('names musl from the ld-musl loader of an Alpine-style root', async () => {
    const musl = root('musl', 'nameserver 10.96.0.10\n');
    expect(await detectLibc(files, musl.path, undefined)).toMatchObject({
      kind: 'musl',
      evidence: '/lib/ld-musl-x86_64.so.1',
    });
  });

  it("names glibc and its version from the library's own banner, in Debian's multiarch layout", async () => {
    const glibc = root('glibc', 'nameserver 10.96.0.10\n');
    const banner = /release version (\d+\.\d+)/.exec(
      readFileSync('/lib/x86_64-linux-gnu/libc.so.6', 'latin1'),
    )?.[1];
    expect(await detectLibc(files, glibc.path, undefined)).toEqual({
      kind: 'glibc',
      version: banner,
      evidence: '/lib/x86_64-linux-gnu/libc.so.6',
    });
  });

  it('reads the ELF interpreter of real executables: dynamic glibc, static', async () => {
    expect(await elfInterpreter(files, '/bin/ls')).toBe('/lib64/ld-linux-x86-64.so.2');
    expect(await elfInterpreter(files, '/sbin/ldconfig')).toBe('none');
    expect(await elfInterpreter(files, '/etc/hostname')).toBeUndefined();
  });

  it('calls a container whose executable is static "static", whatever libraries lie around', async () => {
    const glibc = root('glibc', '');
    expect((await detectLibc(files, glibc.path, '/sbin/ldconfig')).kind).toBe('static');
  });

  it('is unknown for a root with no C library', async () => {
    const empty = root('glibc', '');
    rmSync(`${empty.path}/lib`, { recursive: true });
    rmSync(`${empty.path}/lib64`, { recursive: true });
    expect(await detectLibc(files, empty.path, undefined)).toEqual({ kind: 'unknown' });
  });
});

describe('diagnosePod', () => {
  const clock = new ManualClock();
  const context = () => ({
    clusterDnsIps: new Set(['10.96.0.10']),
    nodeLocalDnsIps: new Set<string>(),
  });

  it('finds the containers of a pod by its uid in the cgroup path (systemd driver) and reads each', async () => {
    const app = root(
      'musl',
      'search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n',
    );
    const sidecar = root('glibc', 'nameserver 169.254.20.10\noptions single-request-reopen\n');
    const uid = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';
    const slice = `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replaceAll('-', '_')}.slice`;
    const id = 'a'.repeat(64);
    const proc = makeProcTree([
      {
        pid: 100,
        root: '/',
        netnsInode: 4026532900,
        comm: 'pause',
        cgroup: `${slice}/cri-containerd-${'f'.repeat(64)}.scope\n`,
      },
      {
        pid: 101,
        root: app.path,
        netnsInode: 4026532900,
        comm: 'app',
        cgroup: `${slice}/cri-containerd-${id}.scope\n`,
      },
      {
        pid: 102,
        root: app.path,
        netnsInode: 4026532900,
        comm: 'worker',
        cgroup: `${slice}/cri-containerd-${id}.scope\n`,
      },
      {
        pid: 103,
        root: sidecar.path,
        netnsInode: 4026532900,
        comm: 'envoy',
        cgroup: `${slice}/cri-containerd-${'b'.repeat(64)}.scope\n`,
      },
      {
        pid: 200,
        root: sidecar.path,
        netnsInode: 4026532901,
        comm: 'other',
        cgroup: '0::/kubepods.slice/kubepods-podother.slice\n',
      },
    ]);
    cleanup.push(() => rmSync(proc, { recursive: true, force: true }));
    const diagnosis = await diagnosePod(
      { files, procRoot: proc, clock, nameserverContext: context },
      {
        target: { by: 'pod-uid', uid },
        foundBy: 'pod-uid',
        containerNames: new Map([[id, 'web']]),
      },
    );
    expect(diagnosis?.containers.map((c) => [c.pid, c.name, c.libc.kind])).toEqual([
      [101, 'web', 'musl'],
      [103, 'envoy', 'glibc'],
    ]);
    expect(diagnosis?.containers[0]?.resolvConf?.options.ndots).toBe(5);
    expect(diagnosis?.containers[0]?.nameservers).toEqual([
      { address: '10.96.0.10', kind: 'cluster-dns' },
    ]);
    expect(diagnosis?.containers[1]?.nameservers).toEqual([
      { address: '169.254.20.10', kind: 'nodelocal' },
    ]);
    expect(diagnosis?.containers[1]?.resolvConf?.options.singleRequestReopen).toBe(true);
  });

  it('finds a pod by its network namespace when nothing names its uid (standalone)', async () => {
    const app = root('glibc', 'nameserver 192.0.2.53\n');
    const proc = makeProcTree([{ pid: 300, root: app.path, netnsInode: 4026532950 }]);
    cleanup.push(() => rmSync(proc, { recursive: true, force: true }));
    const diagnosis = await diagnosePod(
      { files, procRoot: proc, clock, nameserverContext: context },
      { target: { by: 'netns', inode: 4026532950 }, foundBy: 'netns' },
    );
    expect(diagnosis?.containers[0]).toMatchObject({
      libc: { kind: 'glibc' },
      nameservers: [{ kind: 'other' }],
    });
    expect(
      await diagnosePod(
        { files, procRoot: proc, clock, nameserverContext: context },
        { target: { by: 'netns', inode: 1 }, foundBy: 'netns' },
      ),
    ).toBeUndefined();
  });
});

describe('PodDiagnosisCache', () => {
  it('answers at once with unknown, reads in the background, then answers from memory; bounded', async () => {
    const clock = new ManualClock();
    let reads = 0;
    const cache = new PodDiagnosisCache({
      clock,
      diagnose: async () => {
        reads += 1;
        return {
          status: 'diagnosed',
          foundBy: 'netns',
          containers: [],
          diagnosedAtMs: clock.nowMs(),
        };
      },
      namespaceOfIp: async () => 7,
      maxEntries: 2,
      refreshMs: 60_000,
      retryMs: 1_000,
      maxPending: 10,
    });
    const attribution = (ip: string) => ({ sourceIp: ip, netnsInode: 1 });
    expect(cache.lookup(attribution('10.244.0.2'))).toMatchObject({ status: 'unknown' });
    await cache.idle();
    expect(cache.lookup(attribution('10.244.0.2'))).toMatchObject({ status: 'diagnosed' });
    expect(reads).toBe(1);
    cache.lookup(attribution('10.244.0.3'));
    cache.lookup(attribution('10.244.0.4'));
    await cache.idle();
    expect(cache.size).toBe(2);
    clock.advance(60_000);
    cache.lookup(attribution('10.244.0.4'));
    await cache.idle();
    expect(reads).toBe(4);
  });
});

describe('NAT rules and kube-proxy mode', () => {
  it('tells MASQUERADE with --random-fully from SNAT without it (iptables-nft)', () => {
    const text = readFileSync(
      new URL('../fixtures/diagnose/iptables-save-nft-lab.txt', import.meta.url),
      'utf8',
    );
    const view = parseIptablesSave(text, 'iptables-nft');
    expect(view.rules.map((r) => [r.target, r.randomFully])).toEqual([
      ['MASQUERADE', true],
      ['SNAT', false],
    ]);
  });

  it('reads ip6tables-save: IPv6 MASQUERADE rules and NOTRACK addresses of the raw table', () => {
    // As ip6tables-nft-save prints a dual-stack node's nat and raw tables (NodeLocal DNSCache
    // leaves NOTRACK rules for its listen address).
    const text = [
      '# Generated by ip6tables-nft-save v1.8.9 (nf_tables) on Sun Dec  6 16:20:01 2026',
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':POSTROUTING ACCEPT [0:0]',
      ':KUBE-POSTROUTING - [0:0]',
      '-A POSTROUTING -s fd00:10:244::/64 -o eth0 -j MASQUERADE --random-fully',
      '-A KUBE-POSTROUTING -j MASQUERADE',
      'COMMIT',
      '*raw',
      ':PREROUTING ACCEPT [0:0]',
      '-A PREROUTING -d fe80:0:0::a/128 -p udp -m udp --dport 53 -j NOTRACK',
      '-A PREROUTING -d fd00:10:96::a/128 -p udp -m udp --dport 53 -j CT --notrack',
      'COMMIT',
    ].join('\n');
    const view = parseIptablesSave(text, 'ip6tables-nft');
    expect(view.rules.map((r) => [r.backend, r.family, r.chain, r.randomFully])).toEqual([
      ['ip6tables-nft', 'ipv6', 'POSTROUTING', true],
      ['ip6tables-nft', 'ipv6', 'KUBE-POSTROUTING', false],
    ]);
    expect([...view.notrackAddresses]).toEqual(['fe80::a', 'fd00:10:96::a']);
    expect(view.chains.has('KUBE-POSTROUTING')).toBe(true);
  });

  it('reads fully-random from native nftables JSON (string or list of flags) and skips xt targets', () => {
    const ruleset = {
      nftables: [
        { metainfo: { version: '1.0.6', json_schema_version: 1 } },
        { table: { family: 'ip', name: 'natx', handle: 2 } },
        {
          rule: {
            family: 'ip',
            table: 'natx',
            chain: 'post',
            handle: 2,
            expr: [{ masquerade: { flags: 'fully-random' } }],
          },
        },
        {
          rule: {
            family: 'ip',
            table: 'natx',
            chain: 'post',
            handle: 3,
            expr: [{ snat: { addr: '192.0.2.1', flags: ['fully-random', 'persistent'] } }],
          },
        },
        {
          rule: {
            family: 'ip',
            table: 'natx',
            chain: 'post',
            handle: 4,
            expr: [{ masquerade: null }],
          },
        },
        {
          rule: {
            family: 'ip',
            table: 'nat',
            chain: 'POSTROUTING',
            handle: 5,
            expr: [{ xt: { type: 'target', name: 'MASQUERADE' } }],
          },
        },
      ],
    };
    const parsed = parseNftRuleset(JSON.stringify(ruleset));
    expect(parsed.ok && parsed.view.rules.map((r) => r.randomFully)).toEqual([true, true, false]);
    const families = ['ip', 'ip6', 'inet'].map((family) => {
      const one = parseNftRuleset(
        JSON.stringify({
          nftables: [
            {
              rule: {
                family,
                table: 't',
                chain: 'c',
                expr: [{ masquerade: { flags: 'fully-random' } }],
              },
            },
          ],
        }),
      );
      return one.ok ? one.view.rules.map((r) => [r.family, r.randomFully]) : [];
    });
    expect(families).toEqual([[['ipv4', true]], [['ipv6', true]], [['both', true]]]);
    expect(parseNftRuleset('not json')).toMatchObject({ ok: false });
    expect(parseNftRuleset('{"x":1}')).toMatchObject({ ok: false });
  });

  it('names kube-proxy modes from what each leaves behind', () => {
    const none = { iptablesChains: new Set<string>(), nftTables: [], interfaces: [] };
    expect(kubeProxyModeOf(none)).toBe('none-visible');
    expect(
      kubeProxyModeOf({ ...none, iptablesChains: new Set(['KUBE-SERVICES', 'KUBE-SVC-ABC']) }),
    ).toBe('iptables');
    expect(kubeProxyModeOf({ ...none, interfaces: ['kube-ipvs0'] })).toBe('ipvs');
    expect(kubeProxyModeOf({ ...none, nftTables: ['ip kube-proxy'] })).toBe('nftables');
  });

  it("finds a namespace's local addresses in its fib_trie", () => {
    const trie = `Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.244.0.0\n        /24 link UNICAST\n     |-- 10.244.0.2\n        /32 host LOCAL\nLocal:\n  +-- 127.0.0.0/8\n     |-- 127.0.0.1\n        /32 host LOCAL\n`;
    expect(localAddressesOfFibTrie(trie)).toEqual(['10.244.0.2']);
  });

  it("finds a namespace's global IPv6 addresses in its if_inet6, in canonical form", () => {
    // As a dual-stack pod's namespace prints it: loopback, link-local, then the pod's address.
    const text = [
      '00000000000000000000000000000001 01 80 10 80       lo',
      'fe800000000000004c1b2afffe3d5e6f 02 40 20 80     eth0',
      'fd000010024400000000000000000004 02 40 00 80     eth0',
      'not a line',
      '',
    ].join('\n');
    expect(localAddressesOfIfInet6(text)).toEqual(['fd00:10:244::4']);
  });

  it('maps addresses of both families to the namespace holding them, however they are written', async () => {
    const proc = makeProcTree([
      { pid: 100, root: '/', netnsInode: 4026532512, addresses: ['10.244.0.4', 'fd00:10:244::4'] },
      { pid: 200, root: '/', netnsInode: 4026532600, addresses: ['fd00:10:244::5'] },
    ]);
    try {
      const map = new NetnsAddressMap({
        files,
        procRoot: proc,
        clock: new ManualClock(0),
        maxAgeMs: 30_000,
      });
      expect(await map.namespaceOf('10.244.0.4')).toBe(4026532512);
      expect(await map.namespaceOf('FD00:10:244:0::4')).toBe(4026532512);
      expect(await map.namespaceOf('fd00:10:244::5')).toBe(4026532600);
      expect(await map.namespaceOf('fe80::2')).toBeUndefined();
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });
});
