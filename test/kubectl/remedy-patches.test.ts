import { describe, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { patchTargetOf, remedyPatch } from '../../src/kubectl/remedy-patches.js';
import { podStoryLookup } from '../../src/sinks/metrics/pod-story.js';
import { fixture } from '../support/k8s-fixtures.js';

const FRAGMENT = 'spec:\n  dnsConfig:\n    options:\n      - name: single-request-reopen\n';

function podOwnedBy(kind: string | undefined, name = 'owner'): V1Pod {
  const pod = fixture('pod-dns-client-a') as V1Pod;
  pod.metadata!.ownerReferences = kind
    ? [{ apiVersion: 'apps/v1', kind, name, uid: 'u', controller: true }]
    : [];
  return pod;
}

describe('remedy patches', () => {
  it.each<[string, V1Pod, string, string]>([
    [
      'a Deployment through its ReplicaSet',
      podOwnedBy('ReplicaSet', 'dns-client-7c9f8d6b54'),
      'Deployment',
      'dns-client',
    ],
    [
      'a ReplicaSet of its own',
      podOwnedBy('ReplicaSet', 'standalone-rs'),
      'ReplicaSet',
      'standalone-rs',
    ],
    ['a StatefulSet', podOwnedBy('StatefulSet', 'db'), 'StatefulSet', 'db'],
    ['a DaemonSet', podOwnedBy('DaemonSet', 'agent'), 'DaemonSet', 'agent'],
    ['no controller', podOwnedBy(undefined), 'Pod', 'dns-client-7c9f8d6b54-4xq2m'],
  ])('targets %s', (_, pod, kind, name) => {
    expect(patchTargetOf(pod)).toEqual({ kind, name, namespace: 'default' });
  });

  it("patches a workload's template and names the command; a bare pod gets its fragment", () => {
    const workload = remedyPatch(
      { kind: 'StatefulSet', name: 'db', namespace: 'shop' },
      FRAGMENT,
      'single-request-reopen.yaml',
    );
    expect(workload.split('\n')[0]).toBe(
      '# kubectl patch statefulset db -n shop --type strategic --patch-file single-request-reopen.yaml',
    );
    expect(load(workload)).toEqual({
      spec: { template: { spec: { dnsConfig: { options: [{ name: 'single-request-reopen' }] } } } },
    });
    const bare = remedyPatch({ kind: 'Pod', name: 'p', namespace: 'shop' }, FRAGMENT, 'x.yaml');
    expect(bare.split('\n')[0]).toMatch(/immutable/);
    expect(load(bare)).toEqual(load(FRAGMENT));
  });
});

describe("a pod's story", () => {
  const none = { insertFailures: {}, clashesResolved: {}, dnsDrops: {} };

  it('is unknown (404) standalone, where no pod is known by name and none is counted', () => {
    const lookup = podStoryLookup({
      nodeName: 'n',
      counts: () => none,
      diagnosisOf: () => undefined,
    });
    expect(lookup('shop', 'cart')).toBeUndefined();
  });

  it('of a known pod not read yet: generic remedies, saying the diagnosis is unknown', () => {
    const lookup = podStoryLookup({
      nodeName: 'n',
      counts: () => none,
      uidOf: () => 'uid-1',
      diagnosisOf: () => undefined,
    });
    const story = lookup('shop', 'cart');
    expect(story?.diagnosis.status).toBe('unknown');
    expect(story?.remedies.map((r) => r.id)).toContain('single-request-reopen');
    expect(story?.notes.join('\n')).toMatch(/Diagnosis unknown/);
  });
});
