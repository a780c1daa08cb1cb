import { ReproduceError } from './errors.js';
import {
  mustRun,
  type LabRunner,
  type LabRunOptions,
  type LabCommandOutcome,
} from './lab-runner.js';
import { LAB_ROLES, labNamespace, parseLabNamespace, type LabRole } from './lab-names.js';

/**
 * Addresses of the lab, valid inside its own namespaces only: pods on 10.244.0.0/24 behind a
 * bridge of the lab's node, a ClusterIP 10.96.0.10 DNATed to two backends, and an upstream on
 * the documentation range 192.0.2.0/24. The lab's node has no route anywhere else, and no
 * interface of the lab is in the root namespace: no packet of it can leave the lab.
 */
export const raceLabAddresses = {
  bridge: '10.244.0.1',
  podSubnet: '10.244.0.0/24',
  pods: ['10.244.0.2', '10.244.0.3'] as const,
  /** The node's address on the upstream link: every pod flow is masqueraded to it. */
  nodeUpstream: '192.0.2.1',
  upstreamHost: '192.0.2.2',
  clusterDns: '10.96.0.10',
  dnsBackends: ['192.0.2.53', '192.0.2.54'] as const,
} as const;

/** kube-proxy's iptables shape: MASQUERADE without --random-fully, DNAT at random over two backends. */
export function raceLabNatRules(a = raceLabAddresses): string {
  return `*nat
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
-A KUBE-SERVICES -d ${a.clusterDns}/32 -p udp --dport 53 -j KUBE-SVC-DNS-UDP
-A KUBE-SVC-DNS-UDP -m statistic --mode random --probability 0.5 -j KUBE-SEP-DNS-A
-A KUBE-SVC-DNS-UDP -j KUBE-SEP-DNS-B
-A KUBE-SEP-DNS-A -p udp -j DNAT --to-destination ${a.dnsBackends[0]}:53
-A KUBE-SEP-DNS-B -p udp -j DNAT --to-destination ${a.dnsBackends[1]}:53
COMMIT
`;
}

export interface RaceLabDependencies {
  readonly run: LabRunner;
  /** The owner's pid, written into every name so that a later run can tell it is gone. */
  readonly pid: number;
  /** 6 lowercase hex digits, different for every lab. */
  readonly labId: () => string;
  readonly kill: (pid: number, signal: NodeJS.Signals) => void;
  /** Whether a process with this pid exists. */
  readonly isAlive: (pid: number) => boolean;
  readonly sleep: (ms: number) => Promise<void>;
}

export interface RaceLab {
  readonly namespaces: Readonly<Record<LabRole, string>>;
  /** Runs a command inside one of the lab's namespaces (`ip netns exec`). */
  exec(
    role: LabRole,
    file: string,
    args: readonly string[],
    options: LabRunOptions,
  ): Promise<LabCommandOutcome>;
  /** Kills what runs in the lab and removes its namespaces. Idempotent; never throws. */
  destroy(): Promise<string[]>;
}

const STEP_TIMEOUT_MS = 10_000;

/** Builds the lab; a failed step removes whatever was already built before it throws. */
export async function createRaceLab(deps: RaceLabDependencies): Promise<RaceLab> {
  const labId = deps.labId();
  const names = Object.fromEntries(
    LAB_ROLES.map((role) => [role, labNamespace(deps.pid, labId, role)]),
  ) as Record<LabRole, string>;
  let destroying: Promise<string[]> | undefined;
  const lab: RaceLab = {
    namespaces: names,
    exec: (role, file, args, options) =>
      deps.run('ip', ['netns', 'exec', names[role], file, ...args], options),
    destroy: () => (destroying ??= removeNamespaces(deps, Object.values(names))),
  };
  const ip = (...args: string[]): Promise<string> =>
    mustRun(deps.run, 'ip', args, { timeoutMs: STEP_TIMEOUT_MS }, (detail) => failure(detail));
  const inside = (role: LabRole, file: string, args: string[], input?: string): Promise<string> =>
    mustRun(
      deps.run,
      'ip',
      ['netns', 'exec', names[role], file, ...args],
      { timeoutMs: STEP_TIMEOUT_MS, input },
      (detail) => failure(detail),
    );
  try {
    for (const role of LAB_ROLES) {
      await ip('netns', 'add', names[role]);
      await ip('-n', names[role], 'link', 'set', 'lo', 'up');
      // IPv4 only: no router solicitations or DAD in the lab (nothing to do where the kernel
      // has IPv6 off altogether).
      await inside(role, 'sh', [
        '-c',
        `[ ! -d /proc/sys/net/ipv6 ] || { ${writeSysctl('net/ipv6/conf/all/disable_ipv6', '1')} && ${writeSysctl('net/ipv6/conf/default/disable_ipv6', '1')}; }`,
      ]);
    }
    const a = raceLabAddresses;
    await ip('-n', names.node, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', names.node, 'addr', 'add', `${a.bridge}/24`, 'dev', 'br0');
    await ip('-n', names.node, 'link', 'set', 'br0', 'up');
    for (const [index, role] of (['pod1', 'pod2'] as const).entries()) {
      const nodeSide = `v${role}`;
      // Both ends are created in lab namespaces: nothing ever appears in the root namespace.
      await ip(...vethPair(names.node, nodeSide, names[role]));
      await ip('-n', names.node, 'link', 'set', nodeSide, 'master', 'br0', 'up');
      await ip('-n', names[role], 'addr', 'add', `${a.pods[index]}/24`, 'dev', 'eth0');
      await ip('-n', names[role], 'link', 'set', 'eth0', 'up');
      await ip('-n', names[role], 'route', 'add', 'default', 'via', a.bridge);
    }
    await ip(...vethPair(names.node, 'up0', names.up));
    await ip('-n', names.node, 'addr', 'add', `${a.nodeUpstream}/24`, 'dev', 'up0');
    await ip('-n', names.node, 'link', 'set', 'up0', 'up');
    for (const address of [a.upstreamHost, ...a.dnsBackends]) {
      await ip('-n', names.up, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    }
    await ip('-n', names.up, 'link', 'set', 'eth0', 'up');
    await ip('-n', names.up, 'route', 'add', 'default', 'via', a.nodeUpstream);
    // The lab's node has no default route: it reaches its pods and its upstream link, nothing else.
    await inside('node', 'sh', ['-c', writeSysctl('net/ipv4/ip_forward', '1')]);
    await inside('node', 'iptables-restore', [], raceLabNatRules(a));
    return lab;
  } catch (error) {
    await lab.destroy();
    throw error;
  }
}

/**
 * A shell command setting a sysctl of the namespace it runs in. /proc/sys/net follows the
 * writer's network namespace; sysctl(8) (procps) is not in the image, a shell is.
 */
function writeSysctl(path: string, value: string): string {
  return `echo ${value} > /proc/sys/${path}`;
}

/** `ip` arguments: a veth pair from `side` in namespace `from` to eth0 in namespace `to`. */
function vethPair(from: string, side: string, to: string): string[] {
  return ['-n', from, 'link', 'add', side, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', to];
}

function failure(detail: string): ReproduceError {
  const denied = /Operation not permitted|Permission denied/i.test(detail);
  return new ReproduceError(
    denied ? 'REPRODUCE_NOT_PERMITTED' : 'REPRODUCE_LAB_FAILED',
    denied
      ? `building the lab needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): ${detail}`
      : /Read-only file system/i.test(detail)
        ? `could not build the lab: ip netns needs a writable /run (/run/netns): ${detail}`
        : `could not build the lab: ${detail}`,
  );
}

async function listNamespaces(run: LabRunner): Promise<string[]> {
  const outcome = await run('ip', ['netns', 'list'], { timeoutMs: STEP_TIMEOUT_MS });
  return outcome.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.length > 0);
}

/** Kills every process in each namespace, waits for them, deletes the namespace. Never throws. */
async function removeNamespaces(
  deps: Pick<RaceLabDependencies, 'run' | 'kill' | 'isAlive' | 'sleep'>,
  namespaces: readonly string[],
): Promise<string[]> {
  const removed: string[] = [];
  const present = new Set(await listNamespaces(deps.run));
  for (const name of namespaces.filter((n) => present.has(n))) {
    const pids = (
      await deps.run('ip', ['netns', 'pids', name], { timeoutMs: STEP_TIMEOUT_MS })
    ).stdout
      .split('\n')
      .map((line) => Number.parseInt(line, 10))
      .filter((pid) => Number.isInteger(pid) && pid > 0);
    for (const pid of pids) {
      try {
        deps.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    // SIGKILL is delivered, not awaited: a namespace outlives its processes' kill() for a while.
    for (let waited = 0; waited < 5_000 && pids.some(deps.isAlive); waited += 20) {
      await deps.sleep(20);
    }
    const outcome = await deps.run('ip', ['netns', 'delete', name], { timeoutMs: STEP_TIMEOUT_MS });
    if (outcome.exitCode === 0) removed.push(name);
  }
  return removed;
}

/**
 * Removes the namespaces of reproduce labs whose owner is gone (a run killed with SIGKILL);
 * labs of a live owner, and every other namespace, are left alone. Returns what it removed.
 */
export async function removeStaleRaceLabs(
  deps: Pick<RaceLabDependencies, 'run' | 'kill' | 'isAlive' | 'sleep'>,
): Promise<string[]> {
  const stale = (await listNamespaces(deps.run)).filter((name) => {
    const parsed = parseLabNamespace(name);
    return parsed !== undefined && !deps.isAlive(parsed.ownerPid);
  });
  return stale.length === 0 ? [] : removeNamespaces(deps, stale.sort());
}
