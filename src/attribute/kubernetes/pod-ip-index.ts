import type { V1Pod } from '@kubernetes/client-node';
import { canonicalIp } from '../../shared/canonical-ip.js';
import type { PodRef } from '../../events/types.js';

/** One pod's hold on one IP: [startMs, endMs). An open interval has no end yet. */
interface IpHold {
  readonly uid: string;
  readonly pod: PodRef;
  readonly startMs: number;
  endMs?: number;
}

export interface PodIpIndexOptions {
  /** How long the holds of deleted pods (and released IPs) are kept for late events. */
  readonly retentionMs: number;
}

/**
 * Pod IP → pod on this node, as a function of time. Each pod's use of an IP is an interval
 * from when the IP became the pod's to when the pod released it (deleted, finished, or the IP
 * changed). An event is blamed on the interval containing its wall time; where intervals
 * overlap (a newer pod was seen before the older one's end) the newer start wins, because the
 * kernel hands an IP to a new pod only after the old one released it. An IP reused by a new
 * pod is therefore never blamed for an older pod's event.
 *
 * hostNetwork pods are kept out: their IP is the node's, shared by the node and every other
 * hostNetwork pod, so an event from it cannot be blamed on one of them.
 */
export class PodIpIndex {
  private readonly holdsByIp = new Map<string, IpHold[]>();
  private readonly ipsByUid = new Map<string, Set<string>>();
  /** namespace/name → uid: a StatefulSet pod recreated under its name is a new pod. */
  private readonly uidByName = new Map<string, string>();
  private readonly hostNetworkPods = new Map<string, { pod: PodRef; ips: Set<string> }>();
  /** Derived from hostNetworkPods, kept ready because the resolver asks on every event. */
  private hostIps: ReadonlySet<string> = new Set<string>();

  constructor(private readonly options: PodIpIndexOptions) {}

  /**
   * A pod was listed or changed. `observedMs` is when the agent learnt it; it bounds the start
   * of a new hold from above when the pod does not say when its network became ready.
   */
  upsert(pod: V1Pod, observedMs: number): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const ref = podRefOf(pod);
    const nameKey = `${ref.namespace}/${ref.name}`;
    const previousUid = this.uidByName.get(nameKey);
    if (previousUid !== undefined && previousUid !== uid) this.forgetUid(previousUid, observedMs);
    this.uidByName.set(nameKey, uid);
    if (ref.hostNetwork) {
      this.hostNetworkPods.set(uid, { pod: ref, ips: isTerminal(pod) ? new Set() : podIpsOf(pod) });
      this.refreshHostIps();
      this.releaseAll(uid, observedMs);
      return;
    }
    if (this.hostNetworkPods.delete(uid)) this.refreshHostIps();
    const ips = isTerminal(pod) ? new Set<string>() : podIpsOf(pod);
    const previous = this.ipsByUid.get(uid) ?? new Set<string>();
    for (const ip of previous) {
      if (!ips.has(ip)) this.release(uid, ip, observedMs);
    }
    for (const ip of ips) {
      if (!previous.has(ip)) this.take(uid, ref, ip, networkReadyMs(pod, observedMs));
    }
    if (ips.size > 0) this.ipsByUid.set(uid, ips);
    else this.ipsByUid.delete(uid);
    this.prune(observedMs);
  }

  /** A pod is gone: its holds end now but are kept for `retentionMs` for late events. */
  remove(pod: V1Pod, observedMs: number): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const nameKey = `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
    if (this.uidByName.get(nameKey) === uid) this.uidByName.delete(nameKey);
    this.forgetUid(uid, observedMs);
    this.prune(observedMs);
  }

  /** The pod that held `ip` at `atMs`, if any. */
  podAt(ip: string, atMs: number): PodRef | undefined {
    const holds = this.holdsByIp.get(canonicalIp(ip));
    if (!holds) return undefined;
    let best: IpHold | undefined;
    for (const hold of holds) {
      if (hold.startMs > atMs) continue;
      if (hold.endMs !== undefined && atMs >= hold.endMs) continue;
      if (!best || hold.startMs >= best.startMs) best = hold;
    }
    return best?.pod;
  }

  /** The live pod (open hold) with this uid, whatever its IP: for backend pods on this node. */
  currentPodByUid(uid: string): PodRef | undefined {
    const host = this.hostNetworkPods.get(uid);
    if (host) return host.pod;
    for (const ip of this.ipsByUid.get(uid) ?? []) {
      const hold = this.holdsByIp.get(ip)?.find((h) => h.uid === uid && h.endMs === undefined);
      if (hold) return hold.pod;
    }
    return undefined;
  }

  /** IPs of hostNetwork pods: the node's own addresses as the pods report them. */
  hostNetworkIps(): ReadonlySet<string> {
    return this.hostIps;
  }

  hostNetworkPodCount(): number {
    return this.hostNetworkPods.size;
  }

  /** Number of intervals held, live and retained: the index's memory bound. */
  holdCount(): number {
    let count = 0;
    for (const holds of this.holdsByIp.values()) count += holds.length;
    return count;
  }

  private forgetUid(uid: string, atMs: number): void {
    if (this.hostNetworkPods.delete(uid)) this.refreshHostIps();
    this.releaseAll(uid, atMs);
  }

  private refreshHostIps(): void {
    const ips = new Set<string>();
    for (const { ips: podIps } of this.hostNetworkPods.values())
      for (const ip of podIps) ips.add(ip);
    this.hostIps = ips;
  }

  private take(uid: string, pod: PodRef, ip: string, startCandidateMs: number): void {
    const holds = this.holdsByIp.get(ip) ?? [];
    // A new hold never starts before the previous holder's recorded end: the condition times
    // it is derived from have one-second resolution and must not reach back into that hold.
    let startMs = startCandidateMs;
    for (const hold of holds) {
      if (hold.endMs !== undefined && hold.endMs > startMs) startMs = hold.endMs;
    }
    for (const hold of holds) {
      // A holder still open when a newer pod shows the IP released it unseen; close it at
      // the takeover so later events go to the new pod.
      if (hold.endMs === undefined && hold.uid !== uid && hold.startMs <= startMs)
        hold.endMs = startMs;
    }
    holds.push({ uid, pod, startMs });
    this.holdsByIp.set(ip, holds);
  }

  private release(uid: string, ip: string, atMs: number): void {
    for (const hold of this.holdsByIp.get(ip) ?? []) {
      if (hold.uid === uid && hold.endMs === undefined) hold.endMs = Math.max(atMs, hold.startMs);
    }
  }

  private releaseAll(uid: string, atMs: number): void {
    for (const ip of this.ipsByUid.get(uid) ?? []) this.release(uid, ip, atMs);
    this.ipsByUid.delete(uid);
  }

  private prune(nowMs: number): void {
    const horizon = nowMs - this.options.retentionMs;
    for (const [ip, holds] of this.holdsByIp) {
      const kept = holds.filter((hold) => hold.endMs === undefined || hold.endMs > horizon);
      if (kept.length === 0) this.holdsByIp.delete(ip);
      else if (kept.length !== holds.length) this.holdsByIp.set(ip, kept);
    }
  }
}

export function podRefOf(pod: V1Pod): PodRef {
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    hostNetwork: pod.spec?.hostNetwork === true,
  };
}

/** Every address of the pod, of both families on a dual-stack cluster, in canonical form. */
function podIpsOf(pod: V1Pod): Set<string> {
  const ips = new Set<string>();
  for (const entry of pod.status?.podIPs ?? []) if (entry.ip) ips.add(canonicalIp(entry.ip));
  if (pod.status?.podIP) ips.add(canonicalIp(pod.status.podIP));
  return ips;
}

/** A finished pod keeps `status.podIP` in the API, but its sandbox and IP are released. */
function isTerminal(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

/**
 * When the pod's network became ready: the `PodReadyToStartContainers` condition (called
 * `PodHasNetwork` before Kubernetes 1.29) turns True once the sandbox has its IP. Without it,
 * the moment the agent saw the IP: later than the truth, so the gap is unattributed rather
 * than blamed on the IP's previous holder.
 */
function networkReadyMs(pod: V1Pod, observedMs: number): number {
  for (const condition of pod.status?.conditions ?? []) {
    if (
      (condition.type === 'PodReadyToStartContainers' || condition.type === 'PodHasNetwork') &&
      condition.status === 'True' &&
      condition.lastTransitionTime
    ) {
      const ms = toMs(condition.lastTransitionTime);
      if (ms !== undefined && ms <= observedMs) return ms;
    }
  }
  return observedMs;
}

function toMs(value: Date | string): number | undefined {
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}
