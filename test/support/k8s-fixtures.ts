/** Real Kubernetes JSON from test/fixtures/k8s, cloned and adjusted per test. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { K8sObject } from './fake-apiserver.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'k8s');

export function fixture(name: string): K8sObject {
  return JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as K8sObject;
}

export interface PodChanges {
  readonly name?: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly ip?: string;
  readonly nodeName?: string;
  readonly phase?: string;
  /** When the pod's network became ready (PodReadyToStartContainers). */
  readonly networkReadyAt?: string;
}

/** The dns-client pod fixture, renamed and readdressed. */
export function podFrom(base: string, changes: PodChanges = {}): K8sObject {
  const pod = fixture(base);
  if (changes.name) {
    pod.metadata.name = changes.name;
  }
  if (changes.namespace) pod.metadata.namespace = changes.namespace;
  if (changes.uid) pod.metadata.uid = changes.uid;
  if (changes.nodeName) pod.spec.nodeName = changes.nodeName;
  if (changes.phase) pod.status.phase = changes.phase;
  if (changes.ip) {
    pod.status.podIP = changes.ip;
    pod.status.podIPs = [{ ip: changes.ip }];
  }
  if (changes.networkReadyAt) {
    for (const condition of pod.status.conditions) {
      if (condition.type === 'PodReadyToStartContainers')
        condition.lastTransitionTime = changes.networkReadyAt;
    }
  }
  delete pod.metadata.resourceVersion;
  return pod;
}

/** A copy fit for the fake server to store: it assigns resourceVersions itself. */
export function stored(name: string): K8sObject {
  const object = fixture(name);
  delete object.metadata.resourceVersion;
  return object;
}
