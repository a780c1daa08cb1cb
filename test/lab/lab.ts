import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ResultPromise } from 'execa';
import { raceLabAddresses } from '../../src/diagnose/reproduce/race-lab.js';
import { generatorPath, defaultBuildDir } from './generators.js';
import { readConntrackStats, type ConntrackStats } from './kernel-counters.js';
import { labIdOf, newLabId } from './lab-names.js';
import { startDnsmasq, type DnsBackend } from './dnsmasq.js';
import {
  listNetns,
  netnsInode,
  pidsIn,
  run,
  runIn,
  spawnIn,
  type CommandResult,
  type RunOptions,
} from './netns.js';

/**
 * Fixed addresses of the lab: the doctor's reproduce lab's (pods, node, ClusterIP, backends),
 * plus two upstream addresses only these tests use.
 */
export const labAddresses = {
  ...raceLabAddresses,
  /** The node's firewall drops UDP/53 to this address (FORWARD and OUTPUT). */
  blockedDns: '192.0.2.66',
  /** Assigned in the upstream namespace, nothing listens on it. */
  silentDns: '192.0.2.99',
} as const;

/**
 * The IPv6 side of a dual-stack lab (`dualStack`): pods on a ULA prefix behind the node's
 * bridge, the upstream on the documentation prefix. Both exist only inside the lab's namespaces.
 */
export const labAddresses6 = {
  podSubnet: 'fd00:10:244::/64',
  bridge: 'fd00:10:244::1',
  /** Pod N (1-based) gets fd00:10:244::(N+1), as its IPv4 address ends in N+1. */
  podPrefix: 'fd00:10:244::',
  nodeUpstream: '2001:db8::1',
  upstreamHost: '2001:db8::53',
  /** The node's ip6tables firewall drops UDP/53 to this address (FORWARD and OUTPUT). */
  blockedDns: '2001:db8::66',
  /** Assigned in the upstream namespace, nothing listens on it. */
  silentDns: '2001:db8::99',
  /** The IPv6 ClusterIP of DNS: the node DNATs it at random to the two backends below. */
  clusterDns: 'fd00:10:96::a',
  /** dnsmasq instances in the upstream namespace, as for IPv4. */
  dnsBackends: ['2001:db8::10', '2001:db8::11'],
} as const;

export const podSearchPath = [
  'default.svc.cluster.local',
  'svc.cluster.local',
  'cluster.local',
] as const;

export interface LabPod {
  readonly netns: string;
  readonly ip: string;
  /** Its IPv6 address, in a dual-stack lab. */
  readonly ip6?: string;
  readonly netnsInode: number;
}

export interface LabNode {
  readonly netns: string;
  readonly netnsInode: number;
  /** A long-lived process inside the node namespace: read /proc/PID/net/… and /proc/PID/ns/net. */
  readonly pid: number;
}

export interface LabUpstream {
  readonly netns: string;
  readonly netnsInode: number;
}

export interface LabOptions {
  /** At least 2. */
  readonly pods?: number;
  readonly buildDir?: string;
  /**
   * IPv6 beside IPv4 (labAddresses6): pods, node and upstream get IPv6 addresses, the node
   * forwards and masquerades IPv6 pod traffic to the upstream (ip6tables) as it does IPv4.
   */
  readonly dualStack?: boolean;
}

export interface Lab {
  readonly id: string;
  readonly node: LabNode;
  readonly pods: readonly LabPod[];
  readonly upstream: LabUpstream;
  readonly dnsBackends: readonly DnsBackend[];
  readonly buildDir: string;
  /** Runs a command inside one of the lab's namespaces. */
  exec(
    netns: string,
    command: string,
    args: readonly string[],
    options?: RunOptions,
  ): Promise<CommandResult>;
  /** Starts a process inside a lab namespace that destroy() will stop. */
  spawn(netns: string, command: string, args: readonly string[]): ResultPromise;
  /** conntrack -S of the node namespace, summed over CPUs. */
  nodeConntrackStats(): Promise<ConntrackStats>;
  /** A port range no earlier scenario of this lab used as a fixed source port. */
  reserveSourcePorts(count: number): { base: number; span: number };
  /** Removes every namespace, process and file the lab created. Idempotent. */
  destroy(): Promise<void>;
}

const nodeRules = (a: typeof labAddresses): string => `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-DNS-UDP - [0:0]
:KUBE-SVC-DNS-TCP - [0:0]
:KUBE-SEP-DNS-A - [0:0]
:KUBE-SEP-DNS-B - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -s ${a.podSubnet} -o up0 -j MASQUERADE
-A KUBE-SERVICES -d ${a.clusterDns}/32 -p udp --dport 53 -j KUBE-SVC-DNS-UDP
-A KUBE-SERVICES -d ${a.clusterDns}/32 -p tcp --dport 53 -j KUBE-SVC-DNS-TCP
-A KUBE-SVC-DNS-UDP -m statistic --mode random --probability 0.5 -j KUBE-SEP-DNS-A
-A KUBE-SVC-DNS-UDP -j KUBE-SEP-DNS-B
-A KUBE-SVC-DNS-TCP -m statistic --mode random --probability 0.5 -j KUBE-SEP-DNS-A
-A KUBE-SVC-DNS-TCP -j KUBE-SEP-DNS-B
-A KUBE-SEP-DNS-A -p udp -j DNAT --to-destination ${a.dnsBackends[0]}:53
-A KUBE-SEP-DNS-A -p tcp -j DNAT --to-destination ${a.dnsBackends[0]}:53
-A KUBE-SEP-DNS-B -p udp -j DNAT --to-destination ${a.dnsBackends[1]}:53
-A KUBE-SEP-DNS-B -p tcp -j DNAT --to-destination ${a.dnsBackends[1]}:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d ${a.blockedDns}/32 -p udp --dport 53 -j DROP
-A OUTPUT -d ${a.blockedDns}/32 -p udp --dport 53 -j DROP
COMMIT
`;

/**
 * The node's IPv6 NAT and firewall: pod traffic to the upstream masqueraded, the DNS ClusterIP
 * DNATed at random over two backends as kube-proxy does for a dual-stack Service, UDP/53 to
 * the blocked address dropped, as for IPv4.
 */
const nodeRules6 = (a: typeof labAddresses6): string => `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-DNS-UDP - [0:0]
:KUBE-SEP-DNS-A - [0:0]
:KUBE-SEP-DNS-B - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -s ${a.podSubnet} -o up0 -j MASQUERADE
-A KUBE-SERVICES -d ${a.clusterDns}/128 -p udp --dport 53 -j KUBE-SVC-DNS-UDP
-A KUBE-SVC-DNS-UDP -m statistic --mode random --probability 0.5 -j KUBE-SEP-DNS-A
-A KUBE-SVC-DNS-UDP -j KUBE-SEP-DNS-B
-A KUBE-SEP-DNS-A -p udp -j DNAT --to-destination [${a.dnsBackends[0]}]:53
-A KUBE-SEP-DNS-B -p udp -j DNAT --to-destination [${a.dnsBackends[1]}]:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d ${a.blockedDns}/128 -p udp --dport 53 -j DROP
-A OUTPUT -d ${a.blockedDns}/128 -p udp --dport 53 -j DROP
COMMIT
`;

/**
 * IPv6 without autoconfiguration: no router solicitations or advertisements accepted, and
 * addresses added `nodad` so that they work at once and send no duplicate-address probes.
 */
const quietIpv6 = [
  'net.ipv6.conf.all.accept_ra=0',
  'net.ipv6.conf.default.accept_ra=0',
  'net.ipv6.conf.all.router_solicitations=0',
  'net.ipv6.conf.default.router_solicitations=0',
];

const podResolvConf = `nameserver ${labAddresses.clusterDns}
search ${podSearchPath.join(' ')}
options ndots:5
`;

// Shadows the machine's /etc/hosts inside pods, so every name goes to DNS.
const podHosts = '127.0.0.1 localhost\n';

async function waitUntilAnswering(
  upstreamNetns: string,
  address: string,
  buildDir: string,
): Promise<void> {
  const query = await generatorPath('dns-query', buildDir);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const { stdout } = await runIn(
      upstreamNetns,
      query,
      [address, '53', '1', 'kubernetes.default.svc.cluster.local', '200'],
      {
        check: false,
      },
    );
    if (stdout.includes('"answered":1')) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`dnsmasq on ${address} did not answer within 10 s`);
}

/**
 * A veth pair from the node namespace (named `nodeSide`) to `eth0` of another lab namespace.
 * Both ends are created directly in lab namespaces: nothing appears in the root namespace.
 */
async function addVeth(nodeNs: string, nodeSide: string, peerNs: string): Promise<void> {
  await run('ip', [
    '-n',
    nodeNs,
    'link',
    'add',
    nodeSide,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    peerNs,
  ]);
}

/** Builds a lab: node, pods, upstream with two dnsmasq backends. Tears down what it built if a step fails. */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  const podCount = options.pods ?? 2;
  if (podCount < 2 || podCount > 200) throw new Error('a lab has 2 to 200 pods');
  const id = newLabId();
  const buildDir = options.buildDir ?? defaultBuildDir;
  const nodeNs = `${id}-node`;
  const upstreamNs = `${id}-up`;
  const podNs = Array.from({ length: podCount }, (_, index) => `${id}-pod${index + 1}`);
  const allNs = [nodeNs, upstreamNs, ...podNs];
  // The owner's pid in the name tells removeStaleLabs() whether this lab is still in use.
  const workDir = mkdtempSync(join(tmpdir(), `${id}-${process.pid}-`));
  const processes: ResultPromise[] = [];
  let destroyed = false;
  let nextSourcePort = 10_000;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    for (const child of processes) child.kill('SIGKILL');
    await Promise.all(processes.map((child) => child.catch(() => undefined)));
    await removeLabResources(allNs);
    rmSync(workDir, { recursive: true, force: true });
  };

  try {
    for (const name of allNs) {
      await run('ip', ['netns', 'add', name]);
      await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      // No IPv6 inside an IPv4 lab: no router solicitations or DAD noise in the probes' view.
      await runIn(
        name,
        'sysctl',
        options.dualStack
          ? ['-qw', ...quietIpv6]
          : ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'],
      );
    }
    const a = labAddresses;
    await run('ip', ['-n', nodeNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await run('ip', ['-n', nodeNs, 'addr', 'add', `${a.bridge}/24`, 'dev', 'br0']);
    await run('ip', ['-n', nodeNs, 'link', 'set', 'br0', 'up']);
    const a6 = labAddresses6;
    if (options.dualStack) {
      await run('ip', ['-n', nodeNs, 'addr', 'add', `${a6.bridge}/64`, 'dev', 'br0', 'nodad']);
    }
    const pods: LabPod[] = [];
    for (const [index, name] of podNs.entries()) {
      const ip = `10.244.0.${index + 2}`;
      const nodeSide = `vpod${index + 1}`;
      await addVeth(nodeNs, nodeSide, name);
      await run('ip', ['-n', nodeNs, 'link', 'set', nodeSide, 'master', 'br0', 'up']);
      await run('ip', ['-n', name, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', name, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', name, 'route', 'add', 'default', 'via', a.bridge]);
      const ip6 = options.dualStack ? `${a6.podPrefix}${(index + 2).toString(16)}` : undefined;
      if (ip6 !== undefined) {
        await run('ip', ['-n', name, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
        await run('ip', ['-n', name, '-6', 'route', 'add', 'default', 'via', a6.bridge]);
      }
      mkdirSync(`/etc/netns/${name}`, { recursive: true });
      writeFileSync(`/etc/netns/${name}/resolv.conf`, podResolvConf);
      writeFileSync(`/etc/netns/${name}/hosts`, podHosts);
      pods.push({ netns: name, ip, ...(ip6 && { ip6 }), netnsInode: netnsInode(name) });
    }
    await addVeth(nodeNs, 'up0', upstreamNs);
    await run('ip', ['-n', nodeNs, 'addr', 'add', `${a.nodeUpstream}/24`, 'dev', 'up0']);
    await run('ip', ['-n', nodeNs, 'link', 'set', 'up0', 'up']);
    for (const address of [a.upstreamHost, ...a.dnsBackends, a.blockedDns, a.silentDns]) {
      await run('ip', ['-n', upstreamNs, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    }
    await run('ip', ['-n', upstreamNs, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', upstreamNs, 'route', 'add', 'default', 'via', a.nodeUpstream]);
    // The node has no default route: it reaches the pods and the upstream link, nothing else.
    await runIn(nodeNs, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await runIn(nodeNs, 'iptables-restore', [], { input: nodeRules(a) });
    if (options.dualStack) {
      await run('ip', [
        '-n',
        nodeNs,
        'addr',
        'add',
        `${a6.nodeUpstream}/64`,
        'dev',
        'up0',
        'nodad',
      ]);
      for (const address of [a6.upstreamHost, ...a6.dnsBackends, a6.blockedDns, a6.silentDns]) {
        await run('ip', ['-n', upstreamNs, 'addr', 'add', `${address}/64`, 'dev', 'eth0', 'nodad']);
      }
      await run('ip', ['-n', upstreamNs, '-6', 'route', 'add', 'default', 'via', a6.nodeUpstream]);
      await runIn(nodeNs, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
      await runIn(nodeNs, 'ip6tables-restore', [], { input: nodeRules6(a6) });
    }

    const sleeper = spawnIn(nodeNs, 'sleep', ['infinity']);
    processes.push(sleeper);
    if (sleeper.pid === undefined) throw new Error('could not start the node sleeper');
    const nodePid = sleeper.pid;

    const dnsBackends = a.dnsBackends.map((address) => startDnsmasq(upstreamNs, address, workDir));
    processes.push(...dnsBackends.map((backend) => backend.process));
    // The IPv6 ClusterIP's backends answer as the IPv4 ones do; kept apart from dnsBackends,
    // whose indexes the IPv4 scenarios use.
    if (options.dualStack)
      for (const address of a6.dnsBackends)
        processes.push(startDnsmasq(upstreamNs, address, workDir).process);
    for (const backend of dnsBackends) {
      await waitUntilAnswering(upstreamNs, backend.address, buildDir);
    }

    const lab: Lab = {
      id,
      node: { netns: nodeNs, netnsInode: netnsInode(nodeNs), pid: nodePid },
      pods,
      upstream: { netns: upstreamNs, netnsInode: netnsInode(upstreamNs) },
      dnsBackends,
      buildDir,
      exec: (netns, command, args, runOptions) => {
        if (!allNs.includes(netns)) throw new Error(`${netns} is not a namespace of lab ${id}`);
        return runIn(netns, command, args, runOptions);
      },
      spawn: (netns, command, args) => {
        if (!allNs.includes(netns)) throw new Error(`${netns} is not a namespace of lab ${id}`);
        const child = spawnIn(netns, command, args);
        processes.push(child);
        return child;
      },
      nodeConntrackStats: () => readConntrackStats(nodeNs),
      reserveSourcePorts: (count) => {
        if (nextSourcePort + count > 30_000) nextSourcePort = 10_000;
        const base = nextSourcePort;
        nextSourcePort += count;
        return { base, span: count };
      },
      destroy,
    };
    return lab;
  } catch (error) {
    await destroy();
    throw error;
  }
}

/** Kills every process in the namespaces, deletes them and their /etc/netns entries. */
async function removeLabResources(namespaces: readonly string[]): Promise<void> {
  const present = new Set(await listNetns());
  for (const name of namespaces) {
    if (present.has(name)) {
      const pids = await pidsIn(name);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      // SIGKILL is delivered, not awaited: a process can outlive kill() for a while on a busy
      // machine, and its namespace with it. Removal is done once they are gone.
      await waitUntilGone(pids, 10_000);
      await run('ip', ['netns', 'delete', name], { check: false });
    }
    rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
  }
}

/** Waits until none of `pids` runs any more (exited or a zombie), at most `timeoutMs`. */
async function waitUntilGone(pids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isRunning) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z';
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Lab work directories in the temp dir, named `<lab id>-<owner pid>-<random>`. */
function labWorkDirs(): { path: string; id: string; ownerPid: number }[] {
  const dirs: { path: string; id: string; ownerPid: number }[] = [];
  for (const entry of readdirSync(tmpdir())) {
    const match = /^([a-z]+[0-9a-f]{6})-(\d+)-/.exec(entry);
    if (match?.[1] && match[2] && labIdOf(`${match[1]}-x`) === match[1]) {
      dirs.push({ path: join(tmpdir(), entry), id: match[1], ownerPid: Number(match[2]) });
    }
  }
  return dirs;
}

/**
 * Removes what labs whose owning process has died left behind: namespaces, their processes,
 * /etc/netns entries and work directories. Labs of live processes (a running demo, another
 * test run) are left alone. Returns the namespaces removed.
 */
export async function removeStaleLabs(): Promise<string[]> {
  const workDirs = labWorkDirs();
  const liveIds = new Set(workDirs.filter((dir) => isAlive(dir.ownerPid)).map((dir) => dir.id));
  const isStale = (name: string): boolean => {
    const id = labIdOf(name);
    return id !== undefined && !liveIds.has(id);
  };
  let etcEntries: string[] = [];
  try {
    etcEntries = readdirSync('/etc/netns');
  } catch {
    // No /etc/netns at all.
  }
  const stale = [...new Set([...(await listNetns()), ...etcEntries])].filter(isStale).sort();
  await removeLabResources(stale);
  for (const dir of workDirs) {
    if (!liveIds.has(dir.id)) rmSync(dir.path, { recursive: true, force: true });
  }
  return stale;
}

/** The network-namespace inode of a process, as the agent reads it. */
export function netnsInodeOfPid(pid: number): number {
  const link = readlinkSync(`/proc/${pid}/ns/net`);
  const match = /^net:\[(\d+)\]$/.exec(link);
  if (!match?.[1]) throw new Error(`unexpected ns link ${link}`);
  return Number(match[1]);
}
