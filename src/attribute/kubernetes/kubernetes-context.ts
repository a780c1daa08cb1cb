import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Clock } from '../../shared/clock.js';
import type { Delay } from '../../shared/timers.js';

/**
 * What every Kubernetes part is built with: the API's configuration, this node, and the agent's
 * shared seams. Declared once, here, the lowest folder that uses it, so that the parts, the
 * informers and the composition root pass one bag rather than restating it.
 */
export interface KubernetesContext {
  readonly kubeConfig: KubeConfig;
  /** This node's name (`--node-name` / `NODE_NAME`). */
  readonly nodeName: string;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly delay: Delay;
}

/** The bag alone, out of options that extend it (their other fields are not passed on). */
export function kubernetesContext(options: KubernetesContext): KubernetesContext {
  const { kubeConfig, nodeName, registry, logger, clock, delay } = options;
  return { kubeConfig, nodeName, registry, logger, clock, delay };
}
