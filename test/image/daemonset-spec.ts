/**
 * What the DaemonSet asks of the container runtime, read from the manifest itself so that the
 * image test runs the image exactly as deploy/base/daemonset.yaml says.
 */
import { readFileSync } from 'node:fs';
import { dig, isObject, parseDocument } from '../deploy/support/yaml.js';

export type VolumeSource =
  | { readonly kind: 'hostPath'; readonly path: string; readonly type: string }
  | { readonly kind: 'memory'; readonly sizeLimit: string | undefined };

export interface ContainerMount {
  readonly name: string;
  readonly mountPath: string;
  readonly readOnly: boolean;
  readonly source: VolumeSource;
}

export type EnvValue =
  | { readonly name: string; readonly value: string }
  | { readonly name: string; readonly fieldPath: string };

export interface DaemonSetContainer {
  readonly args: readonly string[];
  readonly env: readonly EnvValue[];
  readonly mounts: readonly ContainerMount[];
  readonly privileged: boolean;
  readonly readOnlyRootFilesystem: boolean;
  readonly hostNetwork: boolean;
  readonly hostPID: boolean;
}

function fail(path: string, what: string): never {
  throw new Error(`${path}: ${what}`);
}

function strings(value: unknown, path: string, what: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string'))
    fail(path, `${what} is not a list of strings`);
  return value as string[];
}

function volumeSource(volume: unknown, path: string): VolumeSource {
  const hostPath = dig(volume, 'hostPath');
  if (isObject(hostPath)) {
    if (typeof hostPath['path'] !== 'string') fail(path, 'a hostPath volume has no path');
    return { kind: 'hostPath', path: hostPath['path'], type: String(hostPath['type'] ?? '') };
  }
  const emptyDir = dig(volume, 'emptyDir');
  if (isObject(emptyDir) && emptyDir['medium'] === 'Memory') {
    const sizeLimit = emptyDir['sizeLimit'];
    return { kind: 'memory', sizeLimit: typeof sizeLimit === 'string' ? sizeLimit : undefined };
  }
  return fail(path, `volume ${String(dig(volume, 'name'))}: only hostPath and in-memory emptyDir`);
}

/** The one container of the DaemonSet at `path`, with its volumes resolved. */
export function readDaemonSetContainer(path: string, containerName = 'agent'): DaemonSetContainer {
  const manifest = parseDocument(readFileSync(path, 'utf8'));
  if (manifest['kind'] !== 'DaemonSet') fail(path, 'not a DaemonSet');
  const pod = dig(manifest, 'spec', 'template', 'spec');
  const containers = dig(pod, 'containers');
  const container = Array.isArray(containers)
    ? containers.find((c) => dig(c, 'name') === containerName)
    : undefined;
  if (!isObject(container)) fail(path, `no container named ${containerName}`);

  const volumes = dig(pod, 'volumes');
  const volumeNamed = (name: string): unknown =>
    Array.isArray(volumes) ? volumes.find((v) => dig(v, 'name') === name) : undefined;
  const mountList = container['volumeMounts'] ?? [];
  if (!Array.isArray(mountList)) fail(path, 'volumeMounts is not a list');
  const mounts = mountList.map((mount): ContainerMount => {
    const name = dig(mount, 'name');
    const mountPath = dig(mount, 'mountPath');
    if (typeof name !== 'string' || typeof mountPath !== 'string')
      fail(path, 'a volumeMount lacks name or mountPath');
    const volume = volumeNamed(name);
    if (volume === undefined) fail(path, `volumeMount ${name} has no volume`);
    return {
      name,
      mountPath,
      readOnly: dig(mount, 'readOnly') === true,
      source: volumeSource(volume, path),
    };
  });

  const envList = container['env'] ?? [];
  if (!Array.isArray(envList)) fail(path, 'env is not a list');
  const env = envList.map((entry): EnvValue => {
    const name = dig(entry, 'name');
    const value = dig(entry, 'value');
    const fieldPath = dig(entry, 'valueFrom', 'fieldRef', 'fieldPath');
    if (typeof name !== 'string') fail(path, 'an env entry has no name');
    if (typeof value === 'string') return { name, value };
    if (typeof fieldPath === 'string') return { name, fieldPath };
    return fail(path, `env ${name}: only value and valueFrom.fieldRef`);
  });

  return {
    args: strings(container['args'] ?? [], path, 'args'),
    env,
    mounts,
    privileged: dig(container, 'securityContext', 'privileged') === true,
    readOnlyRootFilesystem: dig(container, 'securityContext', 'readOnlyRootFilesystem') === true,
    hostNetwork: dig(pod, 'hostNetwork') === true,
    hostPID: dig(pod, 'hostPID') === true,
  };
}

/** `16Mi` → `16m`, as tmpfs's size= option reads it. */
export function tmpfsSize(sizeLimit: string): string {
  const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(sizeLimit);
  if (match === null) throw new Error(`unsupported sizeLimit ${sizeLimit}`);
  const unit = { Ki: 'k', Mi: 'm', Gi: 'g' }[match[2] ?? ''] ?? '';
  return `${match[1]}${unit}`;
}
