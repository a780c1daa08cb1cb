import { Command, InvalidArgumentError, Option } from 'commander';
import { parseCommandLine, positiveInteger, secondsUpTo } from './option-parsers.js';
import { canonicalIp, ipFamilyOf } from '../shared/canonical-ip.js';

/** Bounds of `--reproduce-seconds`, per scenario. */
export const REPRODUCE_SECONDS = { default: 20, min: 1, max: 120 } as const;

function reproduceSeconds(value: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < REPRODUCE_SECONDS.min || number > REPRODUCE_SECONDS.max) {
    throw new InvalidArgumentError(
      `expected whole seconds between ${REPRODUCE_SECONDS.min} and ${REPRODUCE_SECONDS.max}`,
    );
  }
  return number;
}

export interface DoctorOptions {
  json: boolean;
  /** Between the two readings of the kernel counters. */
  intervalMs: number;
  netnsPid?: number;
  bpftrace: string;
  nodeLocalDns: string[];
  clusterDns: string[];
  /** `--reproduce`: race in a throw-away lab for this long per scenario; undefined: no lab. */
  reproduceSeconds?: number;
  /** `--kubeconfig`: resolved with KUBECONFIG and in-cluster as the agent does. */
  kubeconfig?: string;
  /** `--node-name`, else NODE_NAME: whose pods to list. */
  nodeName?: string;
}

/** What the doctor's options read from the environment (the entry point passes it). */
export interface DoctorEnv {
  readonly NODE_NAME?: string;
}

export type ParsedDoctorOptions =
  | { kind: 'run'; options: DoctorOptions }
  | { kind: 'exit'; output: string }
  | { kind: 'error'; message: string };

/** Addresses of either family, comma-separated; kept in canonical form (RFC 5952 for IPv6). */
function ipList(value: string): string[] {
  const addresses = value.split(',').map((part) => part.trim());
  for (const address of addresses) {
    if (ipFamilyOf(address) === undefined)
      throw new InvalidArgumentError(
        `expected IPv4 or IPv6 addresses separated by commas, got "${address}"`,
      );
  }
  return addresses.map(canonicalIp);
}

/** `conntrack-race-observer doctor`: a one-shot report of the node and its pods. */
export function buildDoctorCommand(env: DoctorEnv = {}): Command {
  return new Command('doctor')
    .description(
      'One-shot report: is this node affected by conntrack NAT races, and what should change? Exit 0: nothing at risk; 1: findings; 2: bad usage.',
    )
    .addOption(
      new Option('--json', 'print the report as JSON (schema: doctorReportSchema)').default(false),
    )
    .addOption(
      new Option('--interval <seconds>', 'time between the two readings of the kernel counters')
        .default(3_000, '3')
        .argParser(secondsUpTo(60)),
    )
    .addOption(
      new Option(
        '--netns-pid <pid>',
        "a process in the node's network namespace (default: the doctor's own)",
      ).argParser(positiveInteger),
    )
    .addOption(
      new Option('--bpftrace <path>', 'bpftrace executable, for the probe mode').default(
        'bpftrace',
      ),
    )
    .addOption(
      new Option(
        '--node-local-dns <addresses>',
        'NodeLocal DNSCache addresses besides link-local ones',
      )
        .default([], 'none')
        .argParser(ipList),
    )
    .addOption(
      new Option(
        '--cluster-dns <addresses>',
        "the kube-dns Service's ClusterIP(s), to name them in the report",
      )
        .default([], 'none')
        .argParser(ipList),
    )
    .addOption(
      new Option(
        '--reproduce',
        'also race in a throw-away network-namespace lab on this node (root): does this kernel drop SNAT races, resolve DNAT clashes?',
      ).default(false),
    )
    .addOption(
      new Option('--reproduce-seconds <seconds>', 'time bound of each lab scenario')
        .default(REPRODUCE_SECONDS.default, String(REPRODUCE_SECONDS.default))
        .argParser(reproduceSeconds),
    )
    .addOption(
      new Option(
        '--kubeconfig <file>',
        "kubeconfig to read this node's pods with (else KUBECONFIG, else in-cluster, else none)",
      ),
    )
    .addOption(
      new Option(
        '--node-name <name>',
        'this node, whose pods are listed (default: NODE_NAME)',
      ).default(env.NODE_NAME || undefined),
    )
    .allowExcessArguments(false);
}

/** Parses the arguments after `doctor`. Never exits, never throws. */
export function parseDoctorOptions(
  argv: readonly string[],
  env: DoctorEnv = {},
): ParsedDoctorOptions {
  const command = buildDoctorCommand(env).name('conntrack-race-observer doctor');
  const parsed = parseCommandLine(command, argv);
  if (parsed.kind !== 'parsed') return parsed;
  const { interval, reproduce, reproduceSeconds, ...rest } = command.opts<
    Omit<DoctorOptions, 'intervalMs' | 'reproduceSeconds'> & {
      interval: number;
      reproduce: boolean;
      reproduceSeconds: number;
    }
  >();
  if (rest.kubeconfig === '') return { kind: 'error', message: '--kubeconfig needs a file' };
  if (rest.nodeName === '') return { kind: 'error', message: '--node-name needs a name' };
  if (!reproduce && command.getOptionValueSource('reproduceSeconds') === 'cli') {
    return { kind: 'error', message: '--reproduce-seconds needs --reproduce' };
  }
  return {
    kind: 'run',
    options: { ...rest, intervalMs: interval, ...(reproduce ? { reproduceSeconds } : {}) },
  };
}
