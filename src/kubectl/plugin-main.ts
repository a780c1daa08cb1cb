// The kubectl plugin's entry point: reads the command line and the kubeconfig, exits.
import { KubeConfig } from '@kubernetes/client-node';
import { clusterApi } from './agent-proxy.js';
import { runPlugin } from './run-plugin.js';

function loadKubeConfig(file: string | undefined, context: string | undefined): KubeConfig {
  const kubeConfig = new KubeConfig();
  if (file) kubeConfig.loadFromFile(file);
  else kubeConfig.loadFromDefault();
  if (context) kubeConfig.setCurrentContext(context);
  if (!kubeConfig.getCurrentCluster()) throw new Error('no current cluster in the kubeconfig');
  return kubeConfig;
}

runPlugin(
  process.argv.slice(2),
  {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  },
  { loadKubeConfig, clusterApi },
).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`kubectl conntrack-race: unexpected error: ${String(error)}\n`);
    process.exitCode = 1;
  },
);
