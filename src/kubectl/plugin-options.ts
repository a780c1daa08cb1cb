import { Command, InvalidArgumentError, Option } from 'commander';
import { parseCommandLine } from '../config/option-parsers.js';

/** Where the agents run, as deploy/base installs them. */
export const AGENT_DEFAULTS = {
  namespace: 'conntrack-race-observer',
  selector: 'app.kubernetes.io/name=conntrack-race-observer,app.kubernetes.io/component=agent',
  port: 9474,
  scheme: 'auto',
} as const;

/** `auto`: https for an agent started with `--metrics-auth kubernetes` (it then serves TLS only). */
export type AgentScheme = 'http' | 'https' | 'auto';

export interface AgentLocation {
  readonly namespace: string;
  readonly selector: string;
  readonly port: number;
  readonly scheme: AgentScheme;
}

export interface PluginCommon {
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly agent: AgentLocation;
}

export type PluginCommand =
  | ({ readonly command: 'why'; readonly pod: string; readonly namespace?: string } & PluginCommon)
  | ({ readonly command: 'nodes' } & PluginCommon);

export type ParsedPluginArgs =
  | { readonly kind: 'run'; readonly options: PluginCommand }
  | { readonly kind: 'exit'; readonly output: string }
  | { readonly kind: 'error'; readonly message: string };

const USAGE = `Usage: kubectl conntrack-race why POD [-n NAMESPACE]
       kubectl conntrack-race nodes

  why POD    the pod's conntrack races and DNS drops, as its node's agent counted them, its
             diagnosis and the remedies as YAML to paste
  nodes      per node, its agent's totals

Options of both: --kubeconfig FILE, --context NAME, --agent-namespace NS (${AGENT_DEFAULTS.namespace}),
  --agent-selector LABELS, --agent-port PORT (${AGENT_DEFAULTS.port}), --agent-scheme http|https|auto (auto: https
  when the agent pod runs with --metrics-auth kubernetes)
`;

function port(value: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < 1 || number > 65535)
    throw new InvalidArgumentError('expected a port between 1 and 65535');
  return number;
}

function common(command: Command): Command {
  return command
    .addOption(new Option('--kubeconfig <file>', 'kubeconfig (else KUBECONFIG, ~/.kube/config)'))
    .addOption(new Option('--context <name>', 'kubeconfig context'))
    .addOption(
      new Option('--agent-namespace <ns>', "the agents' namespace").default(
        AGENT_DEFAULTS.namespace,
      ),
    )
    .addOption(
      new Option('--agent-selector <labels>', "the agents' DaemonSet selector").default(
        AGENT_DEFAULTS.selector,
      ),
    )
    .addOption(
      new Option('--agent-port <port>', "the agents' metrics port")
        .default(AGENT_DEFAULTS.port)
        .argParser(port),
    )
    .addOption(
      new Option('--agent-scheme <scheme>', 'https when the agents serve TLS (--metrics-auth)')
        .choices(['http', 'https', 'auto'])
        .default(AGENT_DEFAULTS.scheme),
    )
    .allowExcessArguments(false);
}

/** Parses the plugin's arguments (after `kubectl conntrack-race`). Never exits, never throws. */
export function parsePluginArgs(argv: readonly string[]): ParsedPluginArgs {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help')
    return sub === undefined
      ? { kind: 'error', message: `a command is needed\n${USAGE}` }
      : { kind: 'exit', output: USAGE };
  if (sub !== 'why' && sub !== 'nodes')
    return { kind: 'error', message: `unknown command "${sub}"\n${USAGE}` };
  const command = common(new Command(`kubectl conntrack-race ${sub}`));
  if (sub === 'why') {
    command
      .argument('<pod>', 'the pod')
      .addOption(new Option('-n, --namespace <ns>', "the pod's namespace"));
  }
  const parsed = parseCommandLine(command, rest);
  if (parsed.kind !== 'parsed') return parsed;
  const opts = command.opts<{
    kubeconfig?: string;
    context?: string;
    namespace?: string;
    agentNamespace: string;
    agentSelector: string;
    agentPort: number;
    agentScheme: AgentScheme;
  }>();
  const base: PluginCommon = {
    ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}),
    ...(opts.context ? { context: opts.context } : {}),
    agent: {
      namespace: opts.agentNamespace,
      selector: opts.agentSelector,
      port: opts.agentPort,
      scheme: opts.agentScheme,
    },
  };
  if (sub === 'nodes') return { kind: 'run', options: { command: 'nodes', ...base } };
  const pod = command.args[0] ?? '';
  return {
    kind: 'run',
    options: {
      command: 'why',
      pod,
      ...(opts.namespace ? { namespace: opts.namespace } : {}),
      ...base,
    },
  };
}
