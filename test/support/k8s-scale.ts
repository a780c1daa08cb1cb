/**
 * A large cluster as the API server returns it: Services and EndpointSlices shaped like those a
 * `kubectl apply`-managed Deployment gets (last-applied annotation, managedFields of the
 * controllers), and this node's pods cloned from the real fixture. Used by the lean-informer
 * tests and by bench/kubernetes-scale.ts.
 */
import type { K8sObject } from './fake-apiserver.js';
import { podFrom, stored } from './k8s-fixtures.js';

export interface ScaleShape {
  readonly services: number;
  readonly endpointSlices: number;
  readonly endpointsPerSlice: number;
  readonly podsOnNode: number;
  readonly nodeName: string;
}

export const LARGE_CLUSTER: ScaleShape = {
  services: 5_000,
  endpointSlices: 10_000,
  endpointsPerSlice: 10,
  podsOnNode: 110,
  nodeName: 'lab-node',
};

const MANAGED_AT = '2026-11-01T10:00:00Z';

function managedFields(manager: string, fields: K8sObject): K8sObject[] {
  return [
    {
      manager,
      operation: 'Update',
      apiVersion: 'v1',
      time: MANAGED_AT,
      fieldsType: 'FieldsV1',
      fieldsV1: fields,
    },
  ];
}

function ipOf(base: [number, number], index: number): string {
  return `${base[0]}.${base[1]}.${Math.floor(index / 250) % 250}.${(index % 250) + 2}`;
}

export function scaleService(index: number): K8sObject {
  const name = `svc-${index}`;
  const namespace = `ns-${index % 50}`;
  const clusterIP = ipOf([10, 96], index);
  const spec = {
    type: 'ClusterIP',
    clusterIP,
    clusterIPs: [clusterIP],
    ipFamilies: ['IPv4'],
    ipFamilyPolicy: 'SingleStack',
    internalTrafficPolicy: 'Cluster',
    sessionAffinity: 'None',
    selector: { app: name, tier: 'backend' },
    ports: [
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 },
      { name: 'metrics', port: 9090, protocol: 'TCP', targetPort: 9090 },
    ],
  };
  return {
    metadata: {
      name,
      namespace,
      labels: { app: name, 'app.kubernetes.io/part-of': 'scale', tier: 'backend' },
      annotations: {
        'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name, namespace, labels: { app: name } },
          spec: { selector: spec.selector, ports: spec.ports },
        }),
      },
      managedFields: managedFields('kubectl-client-side-apply', {
        'f:metadata': { 'f:annotations': { '.': {} }, 'f:labels': { '.': {}, 'f:app': {} } },
        'f:spec': { 'f:ports': { '.': {} }, 'f:selector': {}, 'f:sessionAffinity': {} },
      }),
    },
    spec,
    status: { loadBalancer: {} },
  };
}

export function scaleEndpointSlice(index: number, endpoints: number): K8sObject {
  const serviceIndex = index % 5_000;
  const service = `svc-${serviceIndex}`;
  const namespace = `ns-${serviceIndex % 50}`;
  return {
    addressType: 'IPv4',
    metadata: {
      name: `${service}-${index.toString(36).padStart(5, 'x')}`,
      namespace,
      generateName: `${service}-`,
      labels: {
        'kubernetes.io/service-name': service,
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        app: service,
      },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': MANAGED_AT },
      ownerReferences: [
        {
          apiVersion: 'v1',
          kind: 'Service',
          name: service,
          uid: `00000000-0000-4000-8000-${String(serviceIndex).padStart(12, '0')}`,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: managedFields('kube-controller-manager', {
        'f:addressType': {},
        'f:endpoints': {},
        'f:metadata': { 'f:labels': { '.': {} }, 'f:ownerReferences': { '.': {} } },
        'f:ports': {},
      }),
    },
    endpoints: Array.from({ length: endpoints }, (_, e) => {
      const podIndex = index * endpoints + e;
      return {
        addresses: [ipOf([10, 128 + (Math.floor(podIndex / 62_500) % 100)], podIndex)],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: `node-${podIndex % 1000}`,
        zone: `zone-${podIndex % 3}`,
        targetRef: {
          kind: 'Pod',
          name: `${service}-7c9f8d6b54-${podIndex.toString(36)}`,
          namespace,
          uid: `10000000-0000-4000-8000-${String(podIndex).padStart(12, '0')}`,
        },
      };
    }),
    ports: [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'metrics', port: 9090, protocol: 'TCP' },
    ],
  };
}

export function scalePod(index: number, nodeName: string): K8sObject {
  return podFrom('pod-dns-client-a', {
    name: `scale-pod-${index}`,
    namespace: `ns-${index % 50}`,
    uid: `20000000-0000-4000-8000-${String(index).padStart(12, '0')}`,
    ip: ipOf([10, 244], index),
    nodeName,
  });
}

/** The objects of `shape`, for `startFakeApiServer`. */
export function scaleCluster(shape: ScaleShape): {
  pods: K8sObject[];
  services: K8sObject[];
  endpointSlices: K8sObject[];
  nodes: K8sObject[];
} {
  return {
    pods: Array.from({ length: shape.podsOnNode }, (_, i) => scalePod(i, shape.nodeName)),
    services: [
      stored('service-kube-dns'),
      ...Array.from({ length: shape.services }, (_, i) => scaleService(i)),
    ],
    endpointSlices: [
      stored('endpointslice-kube-dns'),
      ...Array.from({ length: shape.endpointSlices }, (_, i) =>
        scaleEndpointSlice(i, shape.endpointsPerSlice),
      ),
    ],
    nodes: [{ ...stored('node-lab-node'), metadata: { name: shape.nodeName } }],
  };
}
