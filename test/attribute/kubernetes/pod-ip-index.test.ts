import { describe, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import { PodIpIndex } from '../../../src/attribute/kubernetes/pod-ip-index.js';
import { podFrom } from '../../support/k8s-fixtures.js';

const T0 = Date.parse('2025-03-14T10:00:00Z');
const IP = '10.244.0.7';

function pod(
  name: string,
  uid: string,
  changes: { ip?: string; phase?: string; networkReadyAt?: string } = {},
): V1Pod {
  return podFrom('pod-dns-client-a', { name, uid, ip: changes.ip ?? IP, ...changes }) as V1Pod;
}

describe('PodIpIndex', () => {
  it('attributes an IP to the pod that held it at the event’s time, before and after reuse', () => {
    const index = new PodIpIndex({ retentionMs: 600_000 });
    const a = pod('pod-a', 'uid-a', { networkReadyAt: '2025-03-14T09:00:00Z' });
    index.upsert(a, T0);
    index.remove(a, T0 + 60_000);
    // Pod B gets the same IP later; its network became ready after A's deletion was seen.
    index.upsert(pod('pod-b', 'uid-b', { networkReadyAt: '2025-03-14T10:01:30Z' }), T0 + 95_000);
    expect(index.podAt(IP, T0 + 30_000)?.name).toBe('pod-a');
    expect(index.podAt(IP, T0 + 120_000)?.name).toBe('pod-b');
    // Between A's end and B's network readiness nobody held it: unattributed, not blamed.
    expect(index.podAt(IP, T0 + 75_000)).toBeUndefined();
  });

  it('never lets a new pod’s start reach back into the previous holder’s interval', () => {
    const index = new PodIpIndex({ retentionMs: 600_000 });
    const a = pod('pod-a', 'uid-a', { networkReadyAt: '2025-03-14T09:00:00Z' });
    index.upsert(a, T0);
    index.remove(a, T0 + 60_500);
    // Conditions have one-second resolution: B's readiness reads as before A's recorded end.
    index.upsert(pod('pod-b', 'uid-b', { networkReadyAt: '2025-03-14T10:01:00Z' }), T0 + 61_000);
    expect(index.podAt(IP, T0 + 60_200)?.name).toBe('pod-a');
    expect(index.podAt(IP, T0 + 60_500)?.name).toBe('pod-b');
  });

  it('closes the old holder when a newer pod shows the IP before the old one’s deletion arrives', () => {
    const index = new PodIpIndex({ retentionMs: 600_000 });
    index.upsert(pod('pod-a', 'uid-a', { networkReadyAt: '2025-03-14T09:00:00Z' }), T0);
    index.upsert(pod('pod-b', 'uid-b', { networkReadyAt: '2025-03-14T10:02:00Z' }), T0 + 130_000);
    expect(index.podAt(IP, T0 + 100_000)?.name).toBe('pod-a');
    expect(index.podAt(IP, T0 + 140_000)?.name).toBe('pod-b');
    index.remove(pod('pod-a', 'uid-a'), T0 + 150_000);
    expect(index.podAt(IP, T0 + 160_000)?.name).toBe('pod-b');
  });

  it('releases the IP of a finished pod although the API still shows it', () => {
    const index = new PodIpIndex({ retentionMs: 600_000 });
    index.upsert(pod('job-a', 'uid-a', { networkReadyAt: '2025-03-14T09:00:00Z' }), T0);
    index.upsert(pod('job-a', 'uid-a', { phase: 'Succeeded' }), T0 + 10_000);
    expect(index.podAt(IP, T0 + 5_000)?.name).toBe('job-a');
    expect(index.podAt(IP, T0 + 20_000)).toBeUndefined();
  });

  it('uses the moment the IP was seen when the pod does not say when its network became ready', () => {
    const index = new PodIpIndex({ retentionMs: 600_000 });
    const bare = pod('pod-a', 'uid-a');
    bare.status!.conditions = [];
    index.upsert(bare, T0);
    expect(index.podAt(IP, T0 - 1)).toBeUndefined();
    expect(index.podAt(IP, T0)?.name).toBe('pod-a');
  });

  it('treats a pod recreated under the same name as a new pod', () => {
    const index = new PodIpIndex({ retentionMs: 600_000 });
    index.upsert(
      pod('web-0', 'uid-1', { ip: '10.244.0.20', networkReadyAt: '2025-03-14T09:00:00Z' }),
      T0,
    );
    // A relist shows web-0 with another uid and IP: the first one is gone.
    index.upsert(
      pod('web-0', 'uid-2', { ip: '10.244.0.21', networkReadyAt: '2025-03-14T10:01:00Z' }),
      T0 + 70_000,
    );
    expect(index.podAt('10.244.0.20', T0 + 80_000)).toBeUndefined();
    expect(index.podAt('10.244.0.20', T0 + 10_000)?.uid).toBe('uid-1');
    expect(index.podAt('10.244.0.21', T0 + 80_000)?.uid).toBe('uid-2');
  });

  it('keeps hostNetwork pods out of the IP index and reports their addresses as the node’s', () => {
    const index = new PodIpIndex({ retentionMs: 600_000 });
    const proxy = podFrom('pod-kube-proxy-hostnetwork') as V1Pod;
    index.upsert(proxy, T0);
    expect(index.podAt('192.0.2.1', T0 + 1)).toBeUndefined();
    expect(index.hostNetworkIps().has('192.0.2.1')).toBe(true);
    expect(index.currentPodByUid('9c1e3a5b-7d9f-4b0c-a2e4-6f8a0c2e4b35')?.hostNetwork).toBe(true);
    index.remove(proxy, T0 + 1000);
    expect(index.hostNetworkIps().size).toBe(0);
  });

  it('forgets deleted pods after the retention, bounding its memory', () => {
    const index = new PodIpIndex({ retentionMs: 60_000 });
    for (let i = 0; i < 100; i += 1) {
      const p = pod(`pod-${i}`, `uid-${i}`, {
        ip: `10.244.1.${i}`,
        networkReadyAt: '2025-03-14T09:00:00Z',
      });
      index.upsert(p, T0);
      index.remove(p, T0 + 1000);
    }
    expect(index.holdCount()).toBe(100);
    expect(index.podAt('10.244.1.5', T0 + 500)?.name).toBe('pod-5');
    index.upsert(pod('late', 'uid-late', { ip: '10.244.2.1' }), T0 + 1000 + 60_001);
    expect(index.holdCount()).toBe(1);
  });
});
