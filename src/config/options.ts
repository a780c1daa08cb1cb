import { Command, InvalidArgumentError, Option } from 'commander';
import { buildDoctorCommand } from './doctor-options.js';
import {
  parseCommandLine,
  positiveInteger,
  secondsUpTo,
  wholeSecondsBetween,
} from './option-parsers.js';
import { canonicalIp, ipFamilyOf } from '../shared/canonical-ip.js';

export const PROBE_MODES = ['auto', 'tracepoint', 'kprobe', 'counters-only'] as const;
export type RequestedProbeMode = (typeof PROBE_MODES)[number];
export const METRICS_AUTH_MODES = ['none', 'kubernetes'] as const;
export type MetricsAuthMode = (typeof METRICS_AUTH_MODES)[number];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_LISTEN = '0.0.0.0:9474';

export interface AgentOptions {
  listen: { host: string; port: number };
  probeMode: RequestedProbeMode;
  kubeconfig?: string;
  nodeName?: string;
  /** Process whose network namespace is the node's; undefined = the agent's own. */
  netnsPid?: number;
  probesDir?: string;
  bpftrace: string;
  tracefs: string;
  logLevel: LogLevel;
  pollIntervalMs: number;
  /**
   * How long a bpftrace process may take to compile and attach before it is killed and started
   * again; a probe that compiles kernel headers keeps its own longer bound if that is larger.
   */
  probeAttachTimeoutMs: number;
  /** NodeLocal DNSCache addresses besides link-local ones (e.g. when it listens on the ClusterIP). */
  nodeLocalDns: string[];
  /** `kubernetes`: /metrics over TLS only, to tokens allowed `get` on it (TokenReview + SubjectAccessReview). */
  metricsAuth: MetricsAuthMode;
  /** PEM files for the TLS of `--metrics-auth kubernetes`; absent: a self-signed certificate. */
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  /**
   * `on`: DNS queries are tracked in the kernel and unanswered ones counted (probe
   * tracepoint/dns-queries). Off by default: it runs on every packet every device sends or
   * receives, which costs busy nodes a share of their packet rate (docs/benchmarks.md).
   */
  dnsQueryTracking: 'on' | 'off';
  /**
   * `on`: once bpftrace has attached, the pages of its compiler (LLVM, Clang) are paged out of
   * it (src/sources/bpftrace/compiler-page-out.ts), most of its memory at rest.
   */
  bpftracePageOut: 'on' | 'off';
}

export type ParsedOptions =
  | { kind: 'run'; options: AgentOptions }
  /** --help or --version: print and exit 0. */
  | { kind: 'exit'; output: string; exitCode: number }
  | { kind: 'error'; message: string };

function listenAddress(value: string): { host: string; port: number } {
  const match = /^(?:\[(?<v6>[^\]]+)\]|(?<host>[^:]*)):(?<port>\d+)$/.exec(value);
  const port = Number(match?.groups?.port);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError('expected HOST:PORT, e.g. 0.0.0.0:9474 or [::]:9474');
  }
  return { host: match.groups?.v6 ?? (match.groups?.host || '0.0.0.0'), port };
}

function buildCommand(env: Readonly<Record<string, string | undefined>>, version: string): Command {
  const command = new Command('conntrack-race-observer')
    .description(
      'Sees the kernel drop packets when flows race through conntrack NAT, and DNS drops; attributes them to pods, exports Prometheus metrics and posts Kubernetes Events.',
    )
    .version(version);
  // Added in this order, which is the order --help lists them in.
  for (const option of [...sourceOptions(env), ...exportOptions(env)]) command.addOption(option);
  return (
    command
      // Listed in --help; main.ts runs it before these options are parsed.
      .addCommand(buildDoctorCommand())
      // With a subcommand listed, commander runs the agent only through an action of its own.
      .action(() => undefined)
      .allowExcessArguments(false)
  );
}

/** Where the agent listens, what it observes and how it finds pods. */
function sourceOptions(env: Readonly<Record<string, string | undefined>>): Option[] {
  return [
    new Option('--listen <host:port>', 'address of /metrics, /healthz and /readyz')
      .default(listenAddress(DEFAULT_LISTEN), DEFAULT_LISTEN)
      .argParser(listenAddress),
    new Option(
      '--probe-mode <mode>',
      'how to observe the kernel; auto picks the most precise available',
    )
      .choices(PROBE_MODES)
      .default('auto'),
    // KUBECONFIG itself is resolved with the in-cluster fallback in
    // attribute/kubernetes/connection.ts.
    new Option(
      '--kubeconfig <file>',
      'kubeconfig to use (else KUBECONFIG, else in-cluster, else standalone)',
    ),
    new Option('--node-name <name>', 'this node, for pod lookups (default: NODE_NAME)').default(
      env.NODE_NAME || undefined,
    ),
    new Option(
      '--netns-pid <pid>',
      "a process in the node's network namespace, whose conntrack counters to read (default: the agent's own)",
    ).argParser(positiveInteger),
    new Option(
      '--probes-dir <dir>',
      'directory of the bpftrace scripts (default: the packaged probes/)',
    ),
    new Option(
      '--dns-query-tracking <on|off>',
      'track DNS queries in the kernel and count those left unanswered (runs on every packet of every device; see docs/benchmarks.md)',
    )
      .choices(['on', 'off'])
      .default('off'),
    new Option('--bpftrace <path>', 'bpftrace executable').default('bpftrace'),
    new Option(
      '--bpftrace-page-out <on|off>',
      'once bpftrace has attached, page its compiler (LLVM, Clang) out of memory; bpftrace never runs it again (see docs/benchmarks.md)',
    )
      .choices(['on', 'off'])
      .default('on'),
    new Option('--tracefs <dir>', 'tracefs mount point').default('/sys/kernel/tracing'),
    new Option('--log-level <level>', 'log level')
      .choices(LOG_LEVELS)
      .default(env.LOG_LEVEL || 'info'),
  ];
}

/** How often it reads the kernel, and who may read what it exports. */
function exportOptions(env: Readonly<Record<string, string | undefined>>): Option[] {
  return [
    new Option('--poll-interval <seconds>', 'how often to read the kernel conntrack counters')
      .default(5_000, '5')
      .argParser(secondsUpTo(3600)),
    // 120 s: four scripts compiling at once on 6.1 under software emulation needed more than 30 s.
    new Option(
      '--probe-attach-timeout <seconds>',
      'how long bpftrace may take to compile and attach the probes before it is restarted (raise it on slow or busy nodes)',
    )
      .default(120_000, '120')
      .argParser(wholeSecondsBetween(10, 3600)),
    new Option(
      '--node-local-dns <addresses>',
      'comma-separated NodeLocal DNSCache addresses (IPv4 or IPv6) besides link-local 169.254.0.0/16 and fe80::/10',
    )
      .default([], 'none')
      .argParser(ipList),
    new Option(
      '--metrics-auth <mode>',
      'who may read /metrics: none (anyone, plain HTTP), or kubernetes (HTTPS only; a bearer token allowed get on /metrics by RBAC)',
    )
      .choices(METRICS_AUTH_MODES)
      .default(env.METRICS_AUTH || 'none'),
    new Option(
      '--tls-cert-file <file>',
      'PEM certificate for --metrics-auth kubernetes (default: self-signed, made at start)',
    ),
    new Option('--tls-private-key-file <file>', 'PEM private key of --tls-cert-file'),
  ];
}

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

/** argument → environment → default, resolved in this one place. Never exits, never throws. */
export function parseOptions(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  version: string,
): ParsedOptions {
  const command = buildCommand(env, version);
  const parsed = parseCommandLine(command, argv);
  if (parsed.kind === 'exit') return { ...parsed, exitCode: 0 };
  if (parsed.kind === 'error') return parsed;
  if (
    env.LOG_LEVEL &&
    !(LOG_LEVELS as readonly string[]).includes(env.LOG_LEVEL) &&
    !argv.includes('--log-level')
  ) {
    return {
      kind: 'error',
      message: `LOG_LEVEL "${env.LOG_LEVEL}" is not one of ${LOG_LEVELS.join(', ')}`,
    };
  }
  if (
    env.METRICS_AUTH &&
    !(METRICS_AUTH_MODES as readonly string[]).includes(env.METRICS_AUTH) &&
    !argv.some((arg) => arg.startsWith('--metrics-auth'))
  ) {
    return {
      kind: 'error',
      message: `METRICS_AUTH "${env.METRICS_AUTH}" is not one of ${METRICS_AUTH_MODES.join(', ')}`,
    };
  }
  const tlsProblem = checkTlsOptions(command.opts());
  if (tlsProblem) return { kind: 'error', message: tlsProblem };
  // Commander names each option after its flag; only the two in seconds differ from the field.
  const { pollInterval, probeAttachTimeout, ...named } = command.opts<
    Omit<AgentOptions, 'pollIntervalMs' | 'probeAttachTimeoutMs'> & {
      pollInterval: number;
      probeAttachTimeout: number;
    }
  >();
  return {
    kind: 'run',
    options: { ...named, pollIntervalMs: pollInterval, probeAttachTimeoutMs: probeAttachTimeout },
  };
}

function checkTlsOptions(opts: {
  metricsAuth?: string;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
}): string | undefined {
  const { metricsAuth, tlsCertFile, tlsPrivateKeyFile } = opts;
  if ((tlsCertFile === undefined) !== (tlsPrivateKeyFile === undefined)) {
    return '--tls-cert-file and --tls-private-key-file go together: give both or neither';
  }
  if (tlsCertFile !== undefined && metricsAuth !== 'kubernetes') {
    return '--tls-cert-file and --tls-private-key-file are used only with --metrics-auth kubernetes';
  }
  return undefined;
}
